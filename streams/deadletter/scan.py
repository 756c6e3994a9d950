"""Reading Kafka by time range and by offset, for the DLQ and redeliver.

Scans use offsets-for-times to start at ``since`` and stop at the end
offsets seen when the scan began (or at ``until``), so a scan is bounded by
the data in its range and by nothing else: no arbitrary cap beyond the
topic's retention. These are synchronous (confluent-kafka); the API runs
them in a thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.errors import NotFoundError, StreamsError


@dataclass(frozen=True, slots=True)
class Located:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    from streams.kafka.security import librdkafka_config

    return Consumer(
        {
            **librdkafka_config(settings),
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.app_id}-scan-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )


def scan(
    settings: Settings,
    topic: str,
    *,
    since: float | None = None,
    until: float | None = None,
    key: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
) -> Iterator[Located]:
    """Every record of ``topic`` with since <= timestamp < until (seconds), oldest first
    per partition. ``key`` limits the scan to that key's partition (murmur2)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings)
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise StreamsError(f"topic {topic} does not exist: run `streams topics create`")
        partitions = sorted(meta.topics[topic].partitions)
        if key is not None:
            partitions = [_partition_for(key, len(partitions))]
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        since_ms = int(since * 1000) if since is not None else None
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
            starts[p] = low
        if since_ms is not None:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in partitions], timeout=10
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
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
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


def read_at(settings: Settings, topic: str, partition: int, offset: int) -> Located:
    """The record at ``topic[partition]@offset``; NotFoundError when past retention."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if not low <= offset < high:
            raise NotFoundError(
                f"{topic}[{partition}]@{offset} is no longer in Kafka (retention); it cannot be "
                "read back"
            )
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
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
