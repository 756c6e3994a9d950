"""``streams config``: the effective settings."""

from __future__ import annotations

import click

from streams.cli.common import fail_cleanly, print_json, settings_from_env


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def config_cmd(as_json: bool) -> None:
    """Show the effective settings (secrets masked) or the first configuration error."""
    view = settings_from_env().public_view()
    if as_json:
        print_json(view)
        return
    for var, value in view.items():
        click.echo(f"{var}={value}")
