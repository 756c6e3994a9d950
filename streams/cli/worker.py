"""``streams worker``: the pipeline and the management API in one process."""

from __future__ import annotations

import sys

import click

from streams.cli.common import fail_cleanly, settings_from_env
from streams.config import Settings


def banner(
    settings: Settings, dev_token: str | None, *, ready: bool, role: str = "all"
) -> list[str]:
    """What a person starting ``streams worker`` needs, in a few plain lines on stderr.

    Printed before the JSON log lines start and again once the worker is ready
    (``ready``), so that it is the last thing on the screen after the start-up's burst.
    The token appears only when it is a generated development token; a configured
    ``STREAMS_ADMIN_TOKEN`` is a secret and is only named.
    """
    from streams.app import keeps_log  # with the worker: the app imports Faust

    rule = "-" * 72
    api = f"http://{settings.api_bind}:{settings.api_port}"
    if dev_token is not None:
        where = f"{dev_token}  (development; in {settings.state_dir / 'dev-admin-token'})"
    else:
        where = "from STREAMS_ADMIN_TOKEN (not shown)"
    topics = f"{settings.topic_prefix}*" if settings.topic_prefix else "(no prefix)"
    head = "streams worker ready" if ready else "streams worker starting (JSON logs follow)"
    lines = [
        rule,
        head,
        f"  API          {api}   (/healthz, /openapi.json, /metrics)",
        f"  admin token  {where}",
        f"  Kafka        {settings.kafka_bootstrap}, topics {topics}",
        f"  role         {role}; "
        + (
            f"delivery log in {settings.log_path}"
            if keeps_log(role, settings)
            else "no delivery log (ask a log node)"
        ),
    ]
    if ready:
        lines.append("  next         streams subscriptions create ... | streams monitor")
    return [*lines, rule]


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

    import mode
    import uvloop
    from faust import Worker

    from streams.api import register_api
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
    pipeline = build_app(settings, role=role)
    # The API is a face: it is served by the worker but registered here, not by the app.
    register_api(pipeline)
    # Fewer, shorter collector pauses (streams.ops.gc_tuning); after the app is built.
    gc_tuning.tune(settings.gc_threshold)
    pipeline.app.service(gc_tuning.SettleWhenReady(pipeline.ready))  # type: ignore[arg-type]
    dev_token: str | None = None
    if settings.development and not settings.admin_token.reveal():
        from streams.api.auth import resolve_admin_token

        dev_token, _ = resolve_admin_token(settings)
    for line in banner(settings, dev_token, ready=False, role=role):
        click.echo(line, err=True)

    class ReadyBanner(mode.Service):
        """The banner again once the state topics are read: the start-up's JSON log
        lines (about 60) have scrolled the first one, and its admin token, away."""

        async def on_started(self) -> None:
            self.add_future(self._when_ready())

        async def _when_ready(self) -> None:
            await pipeline.ready()
            # The real stderr: once running, Faust redirects sys.stderr into the log.
            real = sys.__stderr__ or sys.stderr
            for line in banner(settings, dev_token, ready=True, role=role):
                click.echo(line, file=real)
            real.flush()

    pipeline.app.service(ReadyBanner())  # type: ignore[arg-type]
    worker = Worker(pipeline.app, loglevel=settings.log_level, quiet=True, loop=loop)
    worker.execute_from_commandline()
