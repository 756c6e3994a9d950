"""``streams worker``: the pipeline and the management API in one process."""

from __future__ import annotations

import click

from streams.cli.common import fail_cleanly, settings_from_env


@click.command("worker")
@click.option(
    "--role",
    type=click.Choice(["all", "delivery", "log"]),
    default="all",
    show_default=True,
    help="all: every stage, and the delivery log unless STREAMS_DELIVERY_LOG=off. "
    "delivery: every stage, no delivery log (never reads the attempts topic). "
    "log: a log node: the delivery log and the API, no delivery.",
)
@fail_cleanly
def worker_cmd(role: str) -> None:
    """Run the pipeline (every agent and the API) in this process.

    Start more processes the same way to share the work through Kafka's
    consumer group. Log nodes (`--role log`) each index the whole attempts
    topic into a store of their own, so any of them answers the log API:
    put several behind a load balancer to scale reads. Stops cleanly on
    SIGTERM/SIGINT.
    """
    import asyncio

    import uvloop
    from faust import Worker

    from streams.api import register_api
    from streams.app import build_app, keeps_log
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
    pipeline = build_app(settings, role=role)
    # The API is a face: it is served by the worker but registered here, not by the app.
    register_api(pipeline)
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
    log_node = keeps_log(role, settings)
    click.echo(
        f"worker ({role}): API on http://{settings.api_bind}:{settings.api_port}, "
        f"Kafka at {settings.kafka_bootstrap}, "
        + (f"delivery log in {settings.log_path}" if log_node else "no delivery log"),
        err=True,
    )
    worker = Worker(pipeline.app, loglevel=settings.log_level, quiet=True, loop=loop)
    worker.execute_from_commandline()
