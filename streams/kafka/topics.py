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
    def dlq_replays(self) -> str:
        """One summary per replay (key: replay id): where it stands or where it stopped."""
        return self._n("deliveries.dlq.replays")

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


#: Room a parked record (``events.invalid``) or a dead letter (``deliveries.dlq``)
#: has beyond the largest record the pipeline reads: a parked copy adds its reason
#: and source in headers to the original's bytes, a dead letter wraps a delivery
#: record in its own fields (the last error among them).
PARKED_HEADROOM = 65_536


def parked_record_bytes(settings: Settings) -> int:
    """The record limit of ``events.invalid`` and ``deliveries.dlq``, and of the worker's
    producer: any record the pipeline reads, parked with its reason, fits."""
    return settings.max_record_bytes + PARKED_HEADROOM


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic with its partitions and configuration."""
    names = TopicNames(settings.topic_prefix)
    p = settings.partitions
    data = {"retention.ms": _ms(settings.retention_s), "cleanup.policy": "delete"}
    log = {"retention.ms": _ms(settings.log_retention_s), "cleanup.policy": "delete"}
    max_message = str(settings.max_record_bytes)
    max_parked = str(parked_record_bytes(settings))
    specs = [
        TopicSpec(names.events, p, {**data, "max.message.bytes": max_message}),
        TopicSpec(names.events_invalid, p, {**data, "max.message.bytes": max_parked}),
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
        TopicSpec(names.dlq, p, {**log, "max.message.bytes": max_parked}),
        TopicSpec(
            names.dlq_replayed,
            p,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        # The latest summary of each replay, kept as long as the DLQ it replays from.
        TopicSpec(
            names.dlq_replays,
            p,
            {**log, "cleanup.policy": "compact,delete", "min.compaction.lag.ms": "0"},
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

    link = Connectivity()
    admin = AdminClient({**admin_config(settings), **link.config()})
    link.metadata(admin, settings, timeout_s=timeout_s)


def unreachable(settings: Settings, timeout_s: float, exc: BaseException) -> KafkaUnavailableError:
    """The error for a broker that did not answer, naming the settings to check."""
    return KafkaUnavailableError(
        f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout_s:g}s "
        f"({exc}): start one with `streams kafka start` or set STREAMS_KAFKA_BOOTSTRAP "
        "(and STREAMS_KAFKA_SECURITY_PROTOCOL / STREAMS_KAFKA_SASL_* if it needs TLS or SASL)"
    )


class Connectivity:
    """librdkafka's client-wide errors, kept off the terminal and remembered.

    librdkafka prints every failed connection attempt on stderr: against a
    stopped broker, ``streams dlq list`` printed some 200 such lines before its
    traceback. A client built with :meth:`config` logs to a silent logger
    instead, and remembers the errors after which no answer can come (every
    bootstrap broker refused or unreachable, authentication refused), so that
    :meth:`metadata` gives up at once with one error that says what to check,
    rather than at the end of its timeout.
    """

    def __init__(self) -> None:
        self.fatal: Any = None  # the KafkaError that means no broker will answer
        self.detail: Any = None  # the latest transport or authentication error (the why)

    def config(self) -> dict[str, Any]:
        """What to add to a confluent-kafka client's configuration."""
        return {"logger": _QUIET, "error_cb": self._on_error}

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        code = err.code()
        if code in (KafkaError._TRANSPORT, KafkaError._AUTHENTICATION, KafkaError._SSL):
            self.detail = err
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION):
            self.fatal = err

    def check(self, client: Any, settings: Settings, started: float) -> None:
        """Raise when the client has reported that no broker can answer (serves callbacks)."""
        client.poll(0)
        if self.fatal is not None:
            why = self.detail if self.detail is not None else self.fatal
            raise unreachable(settings, round(time.monotonic() - started, 1), _Why(why))

    def metadata(
        self, client: Any, settings: Settings, *, topic: str | None = None, timeout_s: float = 10.0
    ) -> Any:
        """``client.list_topics(topic)``, or :class:`KafkaUnavailableError` as soon as it is
        clear that no broker will answer (at the latest after ``timeout_s``)."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                return client.list_topics(topic, timeout=max(0.05, min(0.5, remaining)))
            except Exception as exc:  # KafkaException: transport failure, timeout
                self.check(client, settings, started)
                if time.monotonic() >= deadline:
                    why = self.detail if self.detail is not None else exc
                    raise unreachable(settings, timeout_s, _Why(why)) from exc


class _Why(Exception):
    """A KafkaError shown by its text alone (its repr is a wall of fields)."""

    def __init__(self, err: Any) -> None:
        inner = err.args[0] if isinstance(err, Exception) and err.args else err
        super().__init__(inner.str() if hasattr(inner, "str") else str(err))


def missing_topics(settings: Settings, timeout_s: float = 10.0) -> list[str]:
    """Topics of the pipeline that do not exist on the cluster."""
    from confluent_kafka.admin import AdminClient

    check_reachable(settings)
    existing = AdminClient(admin_config(settings)).list_topics(timeout=timeout_s).topics
    return [s.name for s in topic_specs(settings) if s.name not in existing]


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every missing topic; existing ones are left as they are, except that a
    ``max.message.bytes`` below the one this version needs is raised to it.

    Returns topic → ``created``, ``exists`` or ``raised`` (its record limit was
    raised: ``events.invalid`` and ``deliveries.dlq`` of a cluster set up by a
    version that parked less). Idempotent: running it twice changes nothing
    the second time.
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
    existing = {s.name: s for s in specs if result.get(s.name) == "exists"}
    for name in _raise_limits(admin, existing, timeout_s):
        result[name] = "raised"
    return result


def _raise_limits(admin: Any, specs: dict[str, TopicSpec], timeout_s: float) -> list[str]:
    """Raise ``max.message.bytes`` of existing topics whose limit is below their spec's.

    Without it, a parked record that fits the limit this version creates topics
    with would be refused by a topic created earlier with a smaller one, and
    stop the worker. Topics with a larger limit are left as they are.
    """
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    key = "max.message.bytes"
    wanted = {n: int(s.config[key]) for n, s in specs.items() if key in s.config}
    if not wanted:
        return []

    def below(names: list[str]) -> list[str]:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
        out = []
        for resource, future in admin.describe_configs(
            resources, request_timeout=timeout_s
        ).items():
            entry = future.result(timeout=timeout_s).get(key)
            if entry is not None and int(entry.value) < wanted[resource.name]:
                out.append(resource.name)
        return sorted(out)

    low = below(sorted(wanted))
    if not low:
        return []
    changes = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, str(wanted[name]), incremental_operation=AlterConfigOpType.SET)
            ],
        )
        for name in low
    ]
    for resource, future in admin.incremental_alter_configs(
        changes, request_timeout=timeout_s
    ).items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            raise StreamsError(
                f"could not raise {key} of topic {resource.name} to {wanted[resource.name]}: "
                f"{exc}; raise it with your Kafka tools"
            ) from exc
    # As for new topics (_wait_visible): the broker answering may apply it a moment later.
    deadline = time.monotonic() + timeout_s
    pending = low
    while pending:
        pending = below(pending)
        if pending and time.monotonic() > deadline:
            raise StreamsError(
                f"{key} of {pending[0]} not yet raised after {timeout_s:g}s: check the "
                "broker's health and run again"
            )
        if pending:
            time.sleep(0.1)
    return low


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
