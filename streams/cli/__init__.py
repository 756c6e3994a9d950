"""The ``streams`` command line.

Each command is a thin shell over a module of the package; this package has
one module per command group (:mod:`.subscriptions`, :mod:`.dlq`, ...), which
import :mod:`.common` and never each other. Heavy libraries are imported inside
the commands, so ``streams --help`` stays fast. Errors of the
package (:class:`~streams.errors.StreamsError`) print one line saying what to
fix and exit with status 1; usage errors exit with click's status 2.
"""

from __future__ import annotations

import click

from streams import __version__
from streams.cli import (
    config,
    console,
    deliveries,
    dlq,
    kafka,
    log,
    monitor,
    publish,
    subscriptions,
    tokens,
    tools,
    topics,
    worker,
)
from streams.tools.bench.cli import bench_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streams")
def cli() -> None:
    """Kafka-native webhook delivery: events in, signed HTTP POSTs out."""


for command in (
    config.config_cmd,
    kafka.kafka,
    topics.topics,
    publish.publish_cmd,
    dlq.dlq,
    deliveries.deliveries,
    log.log_group,
    monitor.monitor_cmd,
    tools.demo_cmd,
    tools.receiver_cmd,
    worker.worker_cmd,
    subscriptions.subscriptions,
    tokens.tokens,
    console.console,
    bench_cmd,  # benchmarks and fault injection, beside their harness
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="streams")


if __name__ == "__main__":  # pragma: no cover
    main()
