"""The worker: one Faust app that runs every stage of the pipeline.

``streams worker`` builds the app with :func:`build_app` and runs it. More
processes started the same way share the partitions through Kafka's consumer
group; each keeps its own replica of the subscriptions (see
:mod:`streams.subscriptions.store`).

:class:`~streams.pipeline.Pipeline` is what the stages share: settings, topic
names, the subscription index and its reader, the schema registry, the secret
box. The stages themselves live in their own modules and are registered here:

- :mod:`streams.fanout.agent`     events joined with subscriptions -> deliveries
- :mod:`streams.delivery.agent`   deliveries -> signed HTTP POSTs, attempts, retries, DLQ
- :mod:`streams.retry.agent`      retry tiers: wait until due, then the same engine
- :mod:`streams.ops.metrics`      ``/metrics`` and the offsets sampler
- :mod:`streams.log.service`      the delivery log: indexer thread and store (log nodes)

A worker's role (:data:`ROLES`) picks the stages: a log node (``--role log``)
runs the delivery log and the API alone.

The management API (:mod:`streams.api`) is a face: ``streams worker`` registers
it on the built app, so nothing here imports it.
"""

from __future__ import annotations

import logging
from typing import Any

import mode

from streams.config import Settings
from streams.errors import ConfigError
from streams.kafka import headers as kafka_headers
from streams.kafka.faust_consumer import App
from streams.kafka.output import KafkaOutput
from streams.kafka.topics import TopicNames, parked_record_bytes
from streams.ops.logs import dict_config, register_secret
from streams.pipeline import Pipeline
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.secrets import SecretBox
from streams.subscriptions.store import CompactedReader, start_readers

log = logging.getLogger(__name__)


class _Readers(mode.Service):
    """Starts the compacted-topic readers with the app and stops them with it."""

    def __init__(self, readers: list[CompactedReader]) -> None:
        super().__init__()
        self.readers = readers

    async def on_start(self) -> None:
        await start_readers(self.readers)  # alike ones share a consumer

    async def on_stop(self) -> None:
        for reader in self.readers:
            await reader.stop()


def prepare_state_dir(settings: Settings) -> None:
    """Create ``STREAMS_STATE_DIR`` and Faust's directory in it, or fail with what to fix.

    Faust does not create its ``datadir``: given one under a state directory that
    did not exist yet, it logged a ``FileNotFoundError`` traceback at start (in
    production, where no development key had created the directory first).
    """
    datadir = settings.state_dir / "faust"
    try:
        datadir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the worker's state directory {datadir} "
            f"({exc.strerror or exc}): set STREAMS_STATE_DIR (now {settings.state_dir}) "
            "to a directory this user can create and write"
        ) from None


def faust_settings(settings: Settings) -> dict[str, Any]:
    brokers = [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",") if h.strip()]
    from streams.kafka.security import faust_credentials

    return {
        "broker": brokers,
        "broker_credentials": faust_credentials(settings),
        "store": "rocksdb://",
        "datadir": str(settings.state_dir / "faust"),
        "web_enabled": True,
        "web_bind": settings.api_bind,
        "web_port": settings.api_port,
        "web_host": settings.api_bind,
        # Faust's built-in pages would list table contents: never expose them.
        "web_tables_enabled": False,
        # Faust's monitor without its 1 s sampler: nothing here reads its rates.
        "Monitor": "streams.kafka.faust_consumer:QuietMonitor",
        "web_router_enabled": False,
        # Our topics are created by `streams topics create`; the leader topic is unused.
        "topic_disable_leader": True,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        # A killed worker's partitions move to the others after 10 s, not 60 s.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 3.0,
        # Commit acked offsets every second: after a crash, at most about a second
        # of work per partition is repeated (duplicates keep their webhook-id).
        "broker_commit_interval": 1.0,
        # Bounded polls keep one slow agent's buffer from stalling the others
        # (0.2 x stream_buffer_maxsize must exceed the poll size; see docs/design.md).
        "broker_max_poll_records": 500,
        "stream_buffer_maxsize": 4096,
        # Agents ack by hand, in offset order, once outputs are confirmed; a rebalance
        # must not wait for deliveries in flight or for records a retry tier holds
        # back (un-acked records are read again by the partition's next owner).
        "stream_wait_empty": False,
        # Surface a broker that does not acknowledge within 30 s (default 1200 s).
        "producer_request_timeout": 30.0,
        "producer_acks": -1,
        "producer_linger_ms": 1,
        "producer_max_request_size": parked_record_bytes(settings),
        "consumer_max_fetch_size": 4 * 1_048_576,
        # `streams worker` logs JSON lines (streams.ops.logs), Faust's own lines included.
        "logging_config": dict_config(settings.log_level),
        "loghandlers": [],
    }


#: What a worker runs: ``all`` (every stage, and the delivery log unless
#: STREAMS_DELIVERY_LOG=off), ``delivery`` (every stage, no log) or ``log`` (the log
#: and the API alone: a log node, which delivers nothing).
ROLES = ("all", "delivery", "log")


def keeps_log(role: str, settings: Settings) -> bool:
    """Whether a worker of ``role`` is a log node: it reads the attempts topic into its
    store and serves the log. A delivery-only worker never reads that topic."""
    return role == "log" or (role == "all" and settings.delivery_log)


def build_app(
    settings: Settings, *, registry: SchemaRegistry | None = None, role: str = "all"
) -> Pipeline:
    """Build the worker's Faust app with the stages of ``role`` registered."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    for secret in (
        settings.admin_token,
        settings.api_token,
        settings.secrets_key,
        settings.kafka_sasl_password,
        settings.kafka_ssl_key_password,
        settings.egress_proxy,
    ):
        register_secret(secret.reveal())
    prepare_state_dir(settings)
    # Every consumer below is aiokafka's: a header name that is not UTF-8 must not stop them.
    kafka_headers.install()
    app = App(settings.app_id, **faust_settings(settings))
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    app.fetch_min_bytes = settings.kafka_fetch_min_bytes
    app.idle_fetch_max_wait_ms = settings.kafka_idle_fetch_max_wait_ms
    names = TopicNames(settings.topic_prefix)
    index = SubscriptionIndex()
    pipeline = Pipeline(
        settings=settings,
        app=app,
        names=names,
        registry=registry or SchemaRegistry.from_settings(settings),
        box=SecretBox.from_settings(settings),
        subscriptions=index,
        output=KafkaOutput(settings),
    )
    pipeline.readers.append(
        CompactedReader(settings, names.subscriptions, index.apply, name="subscriptions")
    )
    from streams.log.service import DeliveryLog, DeliveryLogService

    # Only a log node reads the attempts topic: delivery-only workers never do.
    delivery_log = DeliveryLog(settings, names.attempts, enabled=keeps_log(role, settings))
    pipeline.extras["delivery_log"] = delivery_log
    app.service(DeliveryLogService(delivery_log))  # type: ignore[arg-type]
    if role == "log":
        # No agent, so no consumer group: Faust's web server and services alone (its
        # consumer would refuse to subscribe to nothing).
        app.producer_only = True
        app.closers += [pipeline.output.close]  # once every service has stopped
        app.service(_Readers(pipeline.readers))  # type: ignore[arg-type]
        return pipeline

    from streams.delivery.agent import register_delivery
    from streams.delivery.engine import DeliveryEngine
    from streams.delivery.transport import HttpSender
    from streams.fanout.agent import register_fanout
    from streams.health import HealthMonitor
    from streams.ops.metrics import register_metrics
    from streams.retry.agent import register_retry_tiers

    sender = HttpSender(settings)
    engine = DeliveryEngine(pipeline, sender)
    pipeline.extras["engine"] = engine
    health = HealthMonitor(pipeline)
    engine.on_outcome.append(health.on_attempt)
    pipeline.extras["health"] = health
    register_fanout(pipeline)
    register_delivery(pipeline, engine)
    register_retry_tiers(pipeline, engine)
    register_metrics(pipeline, engine)
    # Once every stage has stopped: flush and close the output (what still comes, from
    # requests in flight, stays un-acked: re-read after the restart), then the connections.
    app.closers += [pipeline.output.close, sender.close]

    app.service(_Readers(pipeline.readers))  # type: ignore[arg-type]
    return pipeline
