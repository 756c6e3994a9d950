"""Ingest: the event publisher upstream services use to put events on Kafka.

:class:`EventPublisher` wraps a confluent-kafka producer configured for
durability (idempotent, ``acks=all``) and for co-partitioning with the
pipeline (``murmur2_random``, the partitioner of the Java client and of
aiokafka, so a tenant's events land where the Faust tables expect them).

Every event is validated against ``schemas/`` and bounded in size *before*
it is sent; every send is confirmed by the broker or raises
:class:`~streams.errors.PublishError`. Nothing is dropped silently.

    with EventPublisher(Settings.from_env()) as publisher:
        publisher.publish("prospect.added", tenant_id="t_1", data={...})
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

from streams.config import Settings
from streams.errors import KafkaUnavailableError, PublishError
from streams.kafka.output import producer_config
from streams.kafka.topics import TopicNames, check_reachable, unreachable
from streams.records import EventEnvelope
from streams.schemas import SchemaRegistry
from streams.tenants import RESERVED_REASON, is_reserved


@dataclass(frozen=True, slots=True)
class Published:
    """Where the broker stored an event."""

    event: EventEnvelope
    topic: str
    partition: int
    offset: int


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def utc_now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventPublisher:
    """Validate, bound and publish events; confirm every one or raise.

    Thread-safety: one publisher per thread (confluent-kafka's producer is
    thread-safe, but the confirmation loop here polls it from the caller).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: SchemaRegistry | None = None,
        extra_config: Mapping[str, Any] | None = None,
        check_broker: bool = True,
    ) -> None:
        from confluent_kafka import Producer

        self._settings = settings
        self._registry = registry or SchemaRegistry.from_settings(settings)
        self._topic = TopicNames(settings.topic_prefix).events
        if check_broker:
            check_reachable(settings)
        self._producer = Producer({**producer_config(settings), **(extra_config or {})})
        self._closed = False

    # -- building -------------------------------------------------------------

    def build(
        self,
        event_type: str,
        tenant_id: str,
        data: Mapping[str, Any],
        *,
        event_id: str | None = None,
        occurred_at: str | None = None,
        tenant_name: str | None = None,
        traceparent: str | None = None,
    ) -> EventEnvelope:
        """Make a validated envelope (raises InvalidEventError naming the field)."""
        obj: dict[str, Any] = {
            "id": event_id or new_event_id(),
            "type": event_type,
            "tenant_id": tenant_id,
            "occurred_at": occurred_at or utc_now_rfc3339(),
            "data": dict(data),
        }
        if tenant_name is not None:
            obj["tenant_name"] = tenant_name
        if traceparent is not None:
            obj["traceparent"] = traceparent
        return _customer_event(self._registry.validate(obj))

    def encode(self, event: EventEnvelope | Mapping[str, Any]) -> tuple[EventEnvelope, bytes]:
        """Validate and encode; raises PayloadTooLargeError over the size limit."""
        if not isinstance(event, EventEnvelope):
            event = self._registry.validate(dict(event))
        else:
            event = self._registry.validate(event.to_dict())
        _customer_event(event)
        raw = event.to_bytes()
        # decode() applies the size bound with the same message the fan-out uses.
        self._registry.decode(raw, max_bytes=self._settings.max_payload_bytes)
        return event, raw

    # -- sending --------------------------------------------------------------

    def send(self, event: EventEnvelope | Mapping[str, Any]) -> Future[Published]:
        """Validate and enqueue one event; the future resolves when the broker confirms."""
        if self._closed:
            raise PublishError("the publisher is closed")
        env, raw = self.encode(event)
        future: Future[Published] = Future()

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                future.set_exception(
                    PublishError(f"event {env.id} was not confirmed by Kafka: {err.str()}")
                )
            else:
                future.set_result(Published(env, msg.topic(), msg.partition(), msg.offset()))

        deadline = time.monotonic() + 30
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=env.tenant_id.encode(),
                    value=raw,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports, then try again.
                if time.monotonic() > deadline:
                    raise PublishError(
                        "the producer's local queue stayed full for 30s: is Kafka reachable?"
                    ) from None
                self._producer.poll(0.05)
        self._producer.poll(0)
        return future

    def publish(
        self, event_type: str, tenant_id: str, data: Mapping[str, Any], **fields: Any
    ) -> Published:
        """Build, validate, send and wait for the broker's confirmation of one event."""
        future = self.send(self.build(event_type, tenant_id, data, **fields))
        return self._wait([future])[0]

    def publish_many(self, events: Iterable[EventEnvelope | Mapping[str, Any]]) -> list[Published]:
        """Send a batch and wait for all confirmations.

        Every event is validated before the first is sent, so a bad event in the
        batch sends nothing. Results are in input order. If any send is not
        confirmed, :class:`PublishError` lists how many and the first reason.
        """
        encoded = [self.encode(e)[0] for e in events]
        futures = [self.send(e) for e in encoded]
        return self._wait(futures)

    def _wait(self, futures: list[Future[Published]], timeout_s: float = 60.0) -> list[Published]:
        deadline = time.monotonic() + timeout_s
        while not all(f.done() for f in futures):
            if time.monotonic() > deadline:
                raise PublishError(
                    f"{sum(not f.done() for f in futures)} event(s) not confirmed within "
                    f"{timeout_s:g}s: is Kafka at {self._settings.kafka_bootstrap} reachable?"
                )
            self._producer.poll(0.05)
        failed = [f.exception() for f in futures if f.exception() is not None]
        if failed:
            raise PublishError(
                f"{len(failed)} of {len(futures)} event(s) were not confirmed; first: {failed[0]}"
            )
        return [f.result() for f in futures]

    # -- lifecycle ------------------------------------------------------------

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and learn the events topic's partitions now, not at the first publish.

        librdkafka connects and fetches the topic's metadata lazily, so the first
        publish waits for both: about half a second against a local broker
        (``streams bench latency``, docs/benchmarks.md). A service that publishes
        on a latency-sensitive path can pay that at start instead.
        """
        try:
            metadata = self._producer.list_topics(self._topic, timeout=timeout_s)
        except Exception as exc:  # KafkaException: no broker answered in time
            raise unreachable(self._settings, timeout_s, exc) from exc
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            reason = topic.error.str() if topic is not None and topic.error else "not listed"
            raise KafkaUnavailableError(
                f"the events topic {self._topic} is not available ({reason}): create the "
                "topics with `streams topics create` (same STREAMS_TOPIC_PREFIX)"
            )

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise PublishError(f"{remaining} event(s) still unconfirmed after {timeout_s:g}s")

    def close(self, timeout_s: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self.flush(timeout_s)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _customer_event(event: EventEnvelope) -> EventEnvelope:
    """Refuse an event under a tenant id the platform keeps (:mod:`streams.tenants`):
    published as ``_platform``, it would reach whoever holds that id."""
    if is_reserved(event.tenant_id):
        from streams.errors import InvalidEventError

        raise InvalidEventError(
            f"envelope field `tenant_id`: `{event.tenant_id}`: {RESERVED_REASON}",
            field="tenant_id",
        )
    return event


def load_json_arg(text: str) -> Any:
    """``@path`` reads a file; anything else is JSON text. Clear errors for both."""
    from streams.errors import InvalidEventError

    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise InvalidEventError(f"cannot read {path}: {exc.strerror}") from None
        source = path
    else:
        raw = text.encode()
        source = "--data"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"{source} is not valid JSON: {exc}") from None
