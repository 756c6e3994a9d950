"""``streams tokens``: tenant API tokens, through the management API."""

from __future__ import annotations

from typing import Any

import click

from streams.cli.common import (
    _client,
    _iso,
    _json_option,
    _print_once,
    _table,
    fail_cleanly,
    print_json,
)


@click.group("tokens")
def tokens() -> None:
    """Tenant API tokens (admin token only)."""


@tokens.command("create")
@click.option("--tenant", required=True, help="The tenant the token acts for.")
@click.option("--description", default=None, help="What the token is for.")
@_json_option
@fail_cleanly
def token_create(tenant: str, description: str | None, as_json: bool) -> None:
    """Create a tenant token; it is printed once."""
    with _client() as client:
        created = client.create_token(tenant, description)
    if as_json:
        print_json(created)
        return
    click.echo(f"created token {created.get('id')} for tenant {created.get('tenant_id')}")
    _print_once("token", str(created.get("token")))


@tokens.command("list")
@click.option("--tenant", default=None, help="Only this tenant's tokens.")
@_json_option
@fail_cleanly
def token_list(tenant: str | None, as_json: bool) -> None:
    """List tenant tokens (never the tokens themselves)."""
    with _client() as client:
        listing = client.list_tokens(tenant)
    if as_json:
        print_json(listing)
        return
    records: list[dict[str, Any]] = listing.get("data") or []
    if not records:
        click.echo("no tokens")
        return
    rows = [
        [
            str(r.get("id", "")),
            str(r.get("tenant_id", "")),
            _iso(r.get("created_at")),
            str(r.get("description") or ""),
        ]
        for r in records
    ]
    _table(["ID", "TENANT", "CREATED", "DESCRIPTION"], rows)


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@fail_cleanly
def token_revoke(token_id: str) -> None:
    """Revoke a tenant token at once."""
    with _client() as client:
        client.revoke_token(token_id)
    click.echo(f"revoked {token_id}")
