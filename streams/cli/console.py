"""``streams console``: sign-in links to the web console, through the management API."""

from __future__ import annotations

from typing import Any

import click

from streams.cli.common import _client, _iso, _json_option, fail_cleanly, print_json, printable
from streams.errors import AuthError


@click.group("console")
def console() -> None:
    """The web console served by every worker at /console/."""


def describe_link(link: dict[str, Any]) -> list[str]:
    """The lines ``streams console link`` prints for the API's answer: who the link
    signs in, how long it lasts, then the URL alone on its line (easy to copy)."""
    tenant = link.get("tenant_id")
    who = "the operator's console" if link.get("operator") else f"the console of tenant {tenant}"
    minutes = float(link.get("valid_for_s") or 0) / 60
    lines = [
        f"Sign-in link to {printable(who)}: it opens once, within {minutes:g} minutes "
        f"(until {_iso(link.get('expires_at'))}).",
        printable(str(link.get("url", ""))),
    ]
    if link.get("embed"):
        lines.append(
            "For an iframe on your own site: the worker must allow that site in "
            "STREAMS_CONSOLE_FRAME_ANCESTORS."
        )
    return lines


@console.command("link")
@click.option("--tenant", default=None, help="The tenant whose console the link opens.")
@click.option(
    "--operator",
    is_flag=True,
    help="The operator's console: every tenant, the live view (admin token only).",
)
@click.option("--embed", is_flag=True, help="A link for an iframe in another site's page.")
@_json_option
@fail_cleanly
def link_cmd(tenant: str | None, operator: bool, embed: bool, as_json: bool) -> None:
    """Print a single-use sign-in link to the web console, valid 10 minutes.

    Give --tenant ID (a tenant token may name only its own tenant) or --operator.
    Whoever opens the link first is signed in: send it only to its user.
    """
    if operator == (tenant is not None):
        raise click.UsageError("give either --tenant ID or --operator (one of them)")
    with _client() as client:
        link = client.console_link(tenant_id=tenant, embed=embed)
    if operator and not link.get("operator"):
        # A tenant token without tenant_id gets its own tenant's link: not what was asked.
        raise AuthError(
            "the operator's link needs the admin token (STREAMS_ADMIN_TOKEN); this token is "
            f"tenant {printable(str(link.get('tenant_id')))}'s: use --tenant for its link"
        )
    if as_json:
        print_json(link)
        return
    for line in describe_link(link):
        click.echo(line)
