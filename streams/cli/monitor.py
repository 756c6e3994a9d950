"""``streams monitor``: starts the monitor face (:mod:`streams.monitor`)."""

from __future__ import annotations

import sys

import click

from streams.cli.common import Duration, fail_cleanly, settings_from_env


@click.command("monitor")
@click.option("--once", is_flag=True, help="Print one snapshot (two samples --interval apart).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per refresh).")
@click.option(
    "--interval",
    type=Duration(0.2, 60),
    default=1.0,
    show_default=True,
    help="Time between refreshes, e.g. 2s or 2 (and between the two samples of --once).",
)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=0,
    help="Stop after this many refreshes (default: until Ctrl-C).",
)
@click.option("--no-api", is_flag=True, help="Read Kafka only; do not ask the management API.")
@fail_cleanly
def monitor_cmd(once: bool, as_json: bool, interval: float, count: int, no_api: bool) -> None:
    """Watch the pipeline: throughput, lag per stage, DLQ depth, the endpoints failing most."""
    import logging

    from streams.monitor import run

    # aiokafka logs every refused connection on stderr, over the view; the view says it once.
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(logging.NullHandler())
    aiokafka_log.propagate = False

    status = run(
        settings_from_env(),
        once=once,
        as_json=as_json,
        interval=interval,
        count=count,
        use_api=not no_api,
    )
    sys.exit(status)
