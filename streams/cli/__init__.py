"""The ``streams`` command line.

Each command is a thin shell over a module of the package. Errors of the
package (:class:`~streams.errors.StreamsError`) print one line saying what to
fix and exit with status 1; usage errors exit with click's status 2.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
import orjson

from streams import __version__
from streams.config import Settings
from streams.errors import StreamsError

F = TypeVar("F", bound=Callable[..., Any])


def settings_from_env() -> Settings:
    return Settings.from_env()


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def fail_cleanly(fn: F) -> F:
    """Turn package errors into one line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StreamsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streams")
def cli() -> None:
    """Kafka-native webhook delivery: events in, signed HTTP POSTs out."""


# -- configuration -------------------------------------------------------------


@cli.command("config")
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


# -- the local broker ------------------------------------------------------------


@cli.group()
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


# -- topics ----------------------------------------------------------------------


@cli.group()
def topics() -> None:
    """Topics of the pipeline."""


@topics.command("create")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def topics_create(as_json: bool) -> None:
    """Create every topic the pipeline uses; existing ones are left alone."""
    from streams.kafka.topics import create_topics

    result = create_topics(settings_from_env())
    if as_json:
        print_json(result)
        return
    for name, state in sorted(result.items()):
        click.echo(f"{state:8} {name}")


@topics.command("list")
@fail_cleanly
def topics_list() -> None:
    """List the topics the pipeline uses, with partitions and configuration."""
    from streams.kafka.topics import topic_specs

    for spec in topic_specs(settings_from_env()):
        conf = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        click.echo(f"{spec.name}  partitions={spec.partitions}  {conf}")


# -- publishing ------------------------------------------------------------------


@cli.command("publish")
@click.option("--type", "event_type", required=True, help="Event type, e.g. prospect.added.")
@click.option("--tenant", required=True, help="Tenant id (the Kafka key).")
@click.option("--data", required=True, help="The event's data: JSON text, or @file.json.")
@click.option("--id", "event_id", default=None, help="Event id (default: a new one).")
@click.option("--tenant-name", default=None, help="Tenant display name (keyed body shape).")
@click.option("--occurred-at", default=None, help="RFC 3339 time (default: now).")
@fail_cleanly
def publish_cmd(
    event_type: str,
    tenant: str,
    data: str,
    event_id: str | None,
    tenant_name: str | None,
    occurred_at: str | None,
) -> None:
    """Validate one event against schemas/ and publish it; print where it landed."""
    from streams.errors import InvalidEventError
    from streams.publish import EventPublisher, load_json_arg

    payload = load_json_arg(data)
    if not isinstance(payload, dict):
        raise InvalidEventError("--data must be a JSON object (the event's `data`)")
    settings = settings_from_env()
    with EventPublisher(settings) as publisher:
        published = publisher.publish(
            event_type,
            tenant,
            payload,
            event_id=event_id,
            tenant_name=tenant_name,
            occurred_at=occurred_at,
        )
    print_json(
        {
            "id": published.event.id,
            "type": published.event.type,
            "topic": published.topic,
            "partition": published.partition,
            "offset": published.offset,
        }
    )


# -- dead letters -----------------------------------------------------------------------


def _dlq_filter(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> Any:
    from streams.api.deliveries import parse_time
    from streams.deadletter.replay import DlqFilter

    return DlqFilter(
        subscription_id=subscription,
        tenant_id=tenant,
        event_type=event_type,
        reason=reason,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )


def dlq_filters(fn: F) -> F:
    for decorator in reversed(
        [
            click.option("--subscription", default=None, help="Only this subscription id."),
            click.option("--tenant", default=None, help="Only this tenant."),
            click.option("--event-type", default=None, help="Only this event type."),
            click.option(
                "--reason",
                default=None,
                type=click.Choice(
                    [
                        "exhausted",
                        "not_retryable",
                        "subscription_disabled",
                        "subscription_deleted",
                        "gone",
                    ]
                ),
                help="Only dead letters parked for this reason.",
            ),
            click.option(
                "--since", default=None, help="From this time (RFC 3339 or unix seconds)."
            ),
            click.option(
                "--until", default=None, help="Before this time (RFC 3339 or unix seconds)."
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


@cli.group()
def dlq() -> None:
    """The dead-letter topic: list and replay parked deliveries."""


@dlq.command("list")
@dlq_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def dlq_list(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dead letters matching the filters (oldest first per partition)."""
    from streams.deadletter.replay import find, letter_view

    flt = _dlq_filter(subscription, tenant, event_type, reason, since, until)
    rows = []
    for found, letter in find(settings_from_env(), flt):
        rows.append(letter_view(found, letter))
        if len(rows) >= limit:
            break
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no dead letters match")
        return
    for row in rows:
        click.echo(
            f"{row['position']:>10}  {row['reason']:<22} {row['subscription_id']}  "
            f"{row['event_type']}  attempts={row['attempts']}  "
            f"last={row['last_status'] or row['last_error']}"
        )


def _finite(value: float | None, option: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a number", param_hint=f"'{option}'")
    return value


@dlq.command("replay")
@dlq_filters
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01, max=1e9),  # nan passes both bounds: _finite refuses it
    callback=lambda ctx, param, value: _finite(value, "--rate"),
    default=None,
    help="Replays per second at most.",
)
@click.option("--force", is_flag=True, help="Replay dead letters already replayed before, again.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@fail_cleanly
def dlq_replay(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    rate: float | None,
    force: bool,
    as_json: bool,
) -> None:
    """Re-send matching dead letters with their original webhook-id, marked as replays."""
    from streams.deadletter.replay import replay

    flt = _dlq_filter(subscription, tenant, event_type, reason, since, until)
    with click.progressbar(length=1, label="scanning", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        summary = replay(
            settings_from_env(), flt, dry_run=dry_run, force=force, rate=rate, progress=progress
        )
    if as_json:
        print_json(summary.as_dict())
        return
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"{summary.replay_id}: matched {summary.matched}, {verb} "
        f"{summary.matched - summary.skipped if dry_run else summary.replayed}, "
        f"skipped {summary.skipped} already replayed"
        + (" (use --force to send them again)" if summary.skipped else "")
    )


# -- monitoring ------------------------------------------------------------------------


@cli.command("monitor")
@click.option("--once", is_flag=True, help="Print one snapshot (two samples --interval apart).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per refresh).")
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 60),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes (and between the two samples of --once).",
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
    from streams.monitor import run

    status = run(
        settings_from_env(),
        once=once,
        as_json=as_json,
        interval=interval,
        count=count,
        use_api=not no_api,
    )
    sys.exit(status)


# -- the demo ---------------------------------------------------------------------------


@cli.command("demo")
@click.option(
    "--events", type=click.IntRange(min=1), default=None, help="Stop after this many events."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds between events.",
)
@fail_cleanly
def demo_cmd(events: int | None, interval: float) -> None:
    """Run everything locally: broker, worker, receiver, sample events; watch it work."""
    from streams.tools.demo import run_demo

    run_demo(events, interval)


# -- the test receiver ---------------------------------------------------------------


@cli.command("receiver")
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


# -- the worker --------------------------------------------------------------------


@cli.command("worker")
@fail_cleanly
def worker_cmd() -> None:
    """Run the whole pipeline (every agent and the API) in this process.

    Start more processes the same way to share the work through Kafka's
    consumer group. Stops cleanly on SIGTERM/SIGINT.
    """
    import asyncio

    import uvloop
    from faust import Worker

    from streams.app import build_app
    from streams.errors import ConfigError
    from streams.kafka.topics import missing_topics
    from streams.ops import gc_tuning

    settings = settings_from_env()
    # uvloop: the worker's event loop does all the HTTP and Kafka I/O.
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    missing = missing_topics(settings)
    if missing:
        raise ConfigError(
            f"{len(missing)} topic(s) missing, e.g. {missing[0]}: run `streams topics create` "
            "with the same STREAMS_TOPIC_PREFIX and STREAMS_RETRY_SCHEDULE"
        )
    pipeline = build_app(settings)
    # Fewer, shorter collector pauses (streams.ops.gc_tuning); after the app is built.
    gc_tuning.tune()
    pipeline.app.service(gc_tuning.SettleWhenReady(pipeline.ready))  # type: ignore[arg-type]
    if settings.development and not settings.admin_token.reveal():
        from streams.api.auth import resolve_admin_token

        token, _ = resolve_admin_token(settings)
        click.echo(
            f"development admin token: {token}  (from {settings.state_dir / 'dev-admin-token'})",
            err=True,
        )
    click.echo(
        f"worker: API on http://{settings.api_bind}:{settings.api_port}, "
        f"Kafka at {settings.kafka_bootstrap}",
        err=True,
    )
    worker = Worker(pipeline.app, loglevel=settings.log_level, quiet=True, loop=loop)
    worker.execute_from_commandline()


from streams.cli.subscriptions import register  # noqa: E402 - needs the helpers above

register(cli)

from streams.tools.bench.cli import bench_cmd  # noqa: E402 - benchmarks and fault injection

cli.add_command(bench_cmd)


def main() -> None:
    cli(prog_name="streams")


if __name__ == "__main__":  # pragma: no cover
    main()
