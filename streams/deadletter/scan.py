"""Reading Kafka by time range and by offset, for the DLQ and redeliver.

Scans use offsets-for-times to start at ``since`` and stop at the end
offsets seen when the scan began (or at ``until``), so a scan is bounded by
the data in its range and by nothing else: no arbitrary cap beyond the
topic's retention. These are synchronous (confluent-kafka); the API runs
them in a thread.

A thread cannot be cancelled from outside, so every read takes a :class:`Stop`
and checks it between fetches (at least every half second): the worker sets
its own when it shuts down, a replay's is set when it is cancelled. Measured
before: a worker asked to stop while its API scanned a DLQ of 10^6 letters
waited 7.7 s for the scan (aiohttp waits for requests in progress, and the
interpreter joins the thread), longer on a busy broker or a larger DLQ.

A broker that does not answer is one :class:`~streams.errors.KafkaUnavailableError`
(:class:`~streams.kafka.topics.Connectivity`), not librdkafka's log lines.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.errors import NotFoundError, StreamsError, UnavailableError
from streams.kafka.topics import Connectivity, unreachable

#: A scan gives up when every broker has been down and nothing was read for this long.
BROKER_GONE_S = 10.0
#: How long an offsets request is retried while Kafka answers with a passing error.
ANSWER_WITHIN_S = 10.0


class Stopped(UnavailableError):
    """A read or a replay was asked to stop (:class:`Stop`); ``reason`` says why. The API
    answers 503: the worker is stopping."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "this worker is stopping: ask another one, or again once it has restarted"
            if reason == "interrupted"
            else f"stopped: {reason}"
        )
        self.reason = reason


class Stop:
    """A request to stop, set from another thread, with the reason (``cancelled``,
    ``interrupted``: the worker is shutting down). Setting it twice keeps the first."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when the stop is or becomes set."""
        return self._event.wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise :class:`Stopped` when set."""
        if self._event.is_set():
            raise Stopped(self.reason)


@dataclass(frozen=True, slots=True)
class Located:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def _consumer(settings: Settings, link: Connectivity) -> Any:
    from confluent_kafka import Consumer

    from streams.kafka.security import librdkafka_config

    return Consumer(
        {
            **librdkafka_config(settings),
            **link.config(),
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.app_id}-scan-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )


def _answered(
    settings: Settings, link: Connectivity, call: Callable[..., Any], *args: Any, **kw: Any
) -> Any:
    """``call(*args, **kw)`` (an offsets request), retried while Kafka says to (a partition
    whose leader is moving, a topic created a moment ago), at most :data:`ANSWER_WITHIN_S`;
    then its KafkaException as one clear error."""
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        try:
            return call(*args, **kw)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            gone = link.fatal is not None or code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT)
            if gone and link.fatal is not None:
                raise unreachable(settings, ANSWER_WITHIN_S, _text(link.detail or exc)) from exc
            retriable = (
                gone
                or (isinstance(err, KafkaError) and err.retriable())
                or code
                in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                )
            )
            if not retriable or time.monotonic() >= deadline:
                if gone:
                    raise unreachable(settings, ANSWER_WITHIN_S, _text(exc)) from exc
                raise StreamsError(f"Kafka did not answer a read: {_text(exc)}") from exc
            time.sleep(0.2)


def _text(err: Any) -> Exception:
    inner = err.args[0] if isinstance(err, Exception) and err.args else err
    return Exception(inner.str() if hasattr(inner, "str") else str(err))


def scan(
    settings: Settings,
    topic: str,
    *,
    since: float | None = None,
    until: float | None = None,
    key: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
    stop: Stop | None = None,
) -> Iterator[Located]:
    """Every record of ``topic`` with since <= timestamp < until (seconds), oldest first
    per partition. ``key`` limits the scan to that key's partition (murmur2).

    Raises :class:`Stopped` soon after ``stop`` is set, and
    :class:`~streams.errors.KafkaUnavailableError` when no broker answers."""
    from confluent_kafka import TopicPartition

    link = Connectivity()
    consumer = _consumer(settings, link)
    try:
        meta = link.metadata(consumer, settings, topic=topic)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise StreamsError(f"topic {topic} does not exist: run `streams topics create`")
        partitions = sorted(meta.topics[topic].partitions)
        if key is not None:
            partitions = [_partition_for(key, len(partitions))]
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        since_ms = int(since * 1000) if since is not None else None
        for p in partitions:
            low, high = _answered(
                settings,
                link,
                consumer.get_watermark_offsets,
                TopicPartition(topic, p),
                timeout=10,
            )
            ends[p] = high
            starts[p] = low
        if since_ms is not None:
            found = _answered(
                settings,
                link,
                consumer.offsets_for_times,
                [TopicPartition(topic, p, since_ms) for p in partitions],
                timeout=10,
            )
            for tp in found:
                starts[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
        todo = {p for p in partitions if starts[p] < ends[p]}
        total = sum(ends[p] - starts[p] for p in todo)
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        done = 0
        deadline = time.monotonic() + timeout_s
        until_ms = int(until * 1000) if until is not None else None
        heard = time.monotonic()
        while todo and time.monotonic() < deadline:
            if stop is not None:
                stop.check()
            batch = consumer.consume(1000, timeout=0.5)
            if batch:
                heard, link.fatal = time.monotonic(), None
            elif link.fatal is not None and time.monotonic() - heard > BROKER_GONE_S:
                # Every broker down and nothing read since: it went away mid-scan.
                raise unreachable(settings, BROKER_GONE_S, _text(link.detail or link.fatal))
            for msg in batch:
                if msg.error() is not None:
                    continue
                p, offset = msg.partition(), msg.offset()
                if p not in todo:
                    continue
                done += 1
                if offset >= ends[p] - 1:
                    todo.discard(p)
                _, ts = msg.timestamp()
                if until_ms is not None and ts >= until_ms:
                    todo.discard(p)
                    continue
                if key is not None and msg.key() != key:
                    continue
                yield Located(p, offset, ts, msg.key(), msg.value())
            if progress is not None:
                progress(done, total)
        if todo:
            raise StreamsError(f"scan of {topic} did not finish within {timeout_s:g}s")
    finally:
        consumer.close()


def read_at(
    settings: Settings, topic: str, partition: int, offset: int, *, stop: Stop | None = None
) -> Located:
    """The record at ``topic[partition]@offset``; NotFoundError when past retention."""
    from confluent_kafka import TopicPartition

    link = Connectivity()
    consumer = _consumer(settings, link)
    try:
        low, high = _answered(
            settings,
            link,
            consumer.get_watermark_offsets,
            TopicPartition(topic, partition),
            timeout=10,
        )
        if not low <= offset < high:
            raise NotFoundError(
                f"{topic}[{partition}]@{offset} is no longer in Kafka (retention); it cannot be "
                "read back"
            )
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if stop is not None:
                stop.check()
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if msg.offset() == offset:
                return Located(partition, offset, msg.timestamp()[1], msg.key(), msg.value())
        raise StreamsError(f"could not read {topic}[{partition}]@{offset} within 15s")
    finally:
        consumer.close()


def _partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` under Kafka's default (murmur2) partitioner."""
    from aiokafka.partitioner import murmur2

    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions
