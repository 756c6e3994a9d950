"""``streams kafka``: a real Apache Kafka broker on this machine."""

from __future__ import annotations

import sys

import click

from streams.cli.common import fail_cleanly, print_json, settings_from_env


@click.group()
def kafka() -> None:
    """Run a real Apache Kafka broker locally (development and tests)."""


@kafka.command("start")
@fail_cleanly
def kafka_start() -> None:
    """Resolve the jars (once), format storage (once), start, and wait until ready."""
    from streams.kafka.local import LocalKafka

    local = LocalKafka(settings_from_env())
    status, started = local.start()
    if started:
        click.echo(f"started: {status.describe()}")
    else:
        click.echo(f"already running: {status.describe()}")


@kafka.command("stop")
@fail_cleanly
def kafka_stop() -> None:
    """Stop the broker started by `streams kafka start`."""
    from streams.kafka.local import LocalKafka

    local = LocalKafka(settings_from_env())
    if local.stop():
        click.echo("stopped")
    else:
        click.echo("not running")


@kafka.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def kafka_status(as_json: bool) -> None:
    """Say whether the local broker runs, where, and which version. Exit 3 if stopped."""
    from streams.kafka.local import LocalKafka

    status = LocalKafka(settings_from_env()).status()
    if as_json:
        print_json(
            {
                "running": status.running,
                "pid": status.pid,
                "bootstrap": status.bootstrap,
                "version": status.version,
                "log_file": str(status.log_file),
            }
        )
    else:
        click.echo(status.describe())
    if not status.running:
        sys.exit(3)
