"""Every topic the pipeline uses: names, layout, and idempotent creation.

Names come from :class:`TopicNames` (``STREAMS_TOPIC_PREFIX`` + a fixed name),
so nothing else in the package spells a topic name. All partitioned topics
share one partition count: the fan-out's table and the delivery stage rely on
``events``/``deliveries``/retry tiers being co-partitioned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.errors import KafkaUnavailableError, StreamsError
from streams.retry.schedule import format_duration, parse_schedule, tiers_for


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str = ""

    def _n(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def events(self) -> str:
        return self._n("events")

    @property
    def events_invalid(self) -> str:
        return self._n("events.invalid")

    @property
    def subscriptions(self) -> str:
        return self._n("subscriptions")

    @property
    def health(self) -> str:
        return self._n("endpoint.health")

    @property
    def tokens(self) -> str:
        return self._n("tokens")

    @property
    def deliveries(self) -> str:
        return self._n("deliveries")

    @property
    def dlq(self) -> str:
        return self._n("deliveries.dlq")

    @property
    def dlq_replayed(self) -> str:
        return self._n("deliveries.dlq.replayed")

    @property
    def attempts(self) -> str:
        return self._n("attempts")

    @property
    def ops(self) -> str:
        return self._n("ops")

    def retry(self, delay_s: float) -> str:
        """The delay topic of one tier, e.g. ``deliveries.retry.5m``."""
        return self._n(f"deliveries.retry.{format_duration(delay_s)}")


def retry_tiers(
    settings: Settings, extra_schedules: Iterable[tuple[float, ...]] = ()
) -> tuple[float, ...]:
    """The delay of every retry tier: the default schedule's, plus any extra ones."""
    return tiers_for([parse_schedule(settings.retry_schedule), *extra_schedules])


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic with its partitions and configuration."""
    names = TopicNames(settings.topic_prefix)
    p = settings.partitions
    data = {"retention.ms": _ms(settings.retention_s), "cleanup.policy": "delete"}
    log = {"retention.ms": _ms(settings.log_retention_s), "cleanup.policy": "delete"}
    max_message = str(settings.max_record_bytes)
    specs = [
        TopicSpec(names.events, p, {**data, "max.message.bytes": max_message}),
        TopicSpec(names.events_invalid, p, {**data, "max.message.bytes": max_message}),
        TopicSpec(
            names.subscriptions,
            p,
            {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": "0",
                "segment.ms": _ms(3600),
            },
        ),
        TopicSpec(names.tokens, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(names.health, p, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(names.deliveries, p, {**data, "max.message.bytes": max_message}),
        TopicSpec(names.dlq, p, {**log, "max.message.bytes": max_message}),
        TopicSpec(
            names.dlq_replayed,
            p,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        TopicSpec(names.attempts, p, log),
        TopicSpec(names.ops, p, log),
    ]
    for delay in retry_tiers(settings):
        # A tier must hold a message at least as long as its delay plus the
        # retention of ordinary data, or a backlog could expire unsent.
        retention = max(settings.retention_s, delay * 2 + 86_400)
        specs.append(
            TopicSpec(
                names.retry(delay),
                p,
                {"retention.ms": _ms(retention), "max.message.bytes": max_message},
            )
        )
    return specs


def admin_config(settings: Settings) -> dict[str, str | int | float | bool]:
    from streams.kafka.security import librdkafka_config

    return {
        **librdkafka_config(settings),
        "bootstrap.servers": settings.kafka_bootstrap,
        "socket.timeout.ms": 10_000,
    }


def check_reachable(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise :class:`KafkaUnavailableError` unless a broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    # librdkafka logs every failed connection; the one error raised here is enough.
    config: dict[str, object] = {**admin_config(settings), "logger": _QUIET}
    admin = AdminClient(config)  # type: ignore[arg-type]
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception as exc:  # KafkaException: transport failure, timeout
        raise unreachable(settings, timeout_s, exc) from exc


def unreachable(settings: Settings, timeout_s: float, exc: BaseException) -> KafkaUnavailableError:
    """The error for a broker that did not answer, naming the settings to check."""
    return KafkaUnavailableError(
        f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout_s:g}s "
        f"({exc}): start one with `streams kafka start` or set STREAMS_KAFKA_BOOTSTRAP "
        "(and STREAMS_KAFKA_SECURITY_PROTOCOL / STREAMS_KAFKA_SASL_* if it needs TLS or SASL)"
    )


def missing_topics(settings: Settings, timeout_s: float = 10.0) -> list[str]:
    """Topics of the pipeline that do not exist on the cluster."""
    from confluent_kafka.admin import AdminClient

    check_reachable(settings)
    existing = AdminClient(admin_config(settings)).list_topics(timeout=timeout_s).topics
    return [s.name for s in topic_specs(settings) if s.name not in existing]


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every missing topic; existing ones are left as they are.

    Returns topic → ``created`` or ``exists``. Idempotent: running it twice
    creates nothing the second time.
    """
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    check_reachable(settings)
    admin = AdminClient(admin_config(settings))
    specs = topic_specs(settings)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.replication_factor,
            config=s.config,
        )
        for s in specs
    ]
    futures = admin.create_topics(new, request_timeout=timeout_s)
    result: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
            result[name] = "created"
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise StreamsError(f"could not create topic {name}: {exc}") from exc
    _wait_visible(admin, [n for n, r in result.items() if r == "created"], timeout_s)
    return result


def _wait_visible(admin: Any, names: list[str], timeout_s: float) -> None:
    """Wait until the broker's metadata lists every new topic (bounded).

    A create is acknowledged once the controller has committed it; the broker
    answering metadata requests may learn of it a moment later. Without this
    wait, a worker started right after ``streams topics create`` could find
    its topics "missing" (seen in about 1 of 4 test starts).
    """
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        pending -= set(admin.list_topics(timeout=max(1.0, timeout_s)).topics)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StreamsError(
                f"{len(pending)} created topic(s) not yet visible after {timeout_s:g}s, "
                f"e.g. {sorted(pending)[0]}: check the broker's health and run again"
            )
        time.sleep(0.1)


_QUIET = logging.getLogger("streams.kafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
