"""``streams demo`` and ``streams receiver``: the tools (``streams bench`` lives with
its harness, :mod:`streams.tools.bench.cli`)."""

from __future__ import annotations

import click

from streams.cli.common import Duration, fail_cleanly


@click.command("demo")
@click.option(
    "--events", type=click.IntRange(min=1), default=None, help="Stop after this many events."
)
@click.option(
    "--interval",
    type=Duration(0.01),
    default=0.5,
    show_default=True,
    help="Time between events, e.g. 500ms or 0.5.",
)
@fail_cleanly
def demo_cmd(events: int | None, interval: float) -> None:
    """Run everything locally: broker, worker, receiver, sample events; watch it work."""
    from streams.tools.demo import run_demo

    run_demo(events, interval)


@click.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=9100, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append every request to this JSON-lines file.",
)
def receiver_cmd(host: str, port: int, ledger: str | None) -> None:
    """Run the sample receiver: verifies signatures, records a ledger, fails on request."""
    from pathlib import Path

    from streams.tools.receiver import run

    click.echo(
        f"receiver on http://{host}:{port}/hooks/<name> (control: /_control/endpoints/<name>)",
        err=True,
    )
    run(host, port, Path(ledger) if ledger else None)
