"""Offsets of the pipeline's topics and of its consumer groups: lag and depth.

Both the worker's metrics (:mod:`streams.metrics`) and ``streams monitor``
(:mod:`streams.monitor`) read Kafka directly through :class:`OffsetReader`:
per partition, the low and high watermarks and the offset the worker's
consumer groups committed (:func:`consumer_groups`: Faust's, named
``STREAMS_APP_ID``, and the retry tiers' own, ``<app id>-retry-tiers``; per
partition the furthest commit of either counts). Three numbers follow:

- **lag** of a stage (``events``, ``ops``, ``deliveries``, a retry tier): high
  watermark minus the committed offset. A partition the group never committed
  is read from the beginning (``auto_offset_reset=earliest``), so its lag is
  everything still retained (high minus low).
- **depth** of a retry tier: its lag. Records wait there until they are due, so
  a tier's lag is the number of retries scheduled, not a sign of trouble.
- **depth** of the dead-letter topic: its message count (high minus low,
  summed over partitions). No consumer group reads it, so there is no
  committed offset to subtract; letters already replayed stay counted until
  retention removes them (``deliveries.dlq.replayed`` says which were).

The functions on offsets are pure and unit-tested; only
:meth:`OffsetReader.read` talks to Kafka (batched AdminClient requests: one
metadata, two ListOffsets and one OffsetFetch per group per read). It blocks, so the
worker calls it from a thread and never from its event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.retry.schedule import format_duration
from streams.topics import TopicNames, admin_config, retry_tiers

log = logging.getLogger(__name__)

_QUIET = logging.getLogger("streams.kafka.offsets")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    topic: str
    partition: int
    low: int
    high: int
    committed: int | None = None  # None: the group has no committed offset here

    @property
    def messages(self) -> int:
        """Records retained in this partition."""
        return max(0, self.high - self.low)

    @property
    def lag(self) -> int:
        """Records the group has not consumed yet (all retained ones if it never committed)."""
        if self.committed is None or self.committed < self.low:
            return self.messages
        return max(0, self.high - self.committed)


@dataclass(frozen=True, slots=True)
class Stage:
    """One topic the worker consumes, with a short name for people (``retry 5s``)."""

    name: str
    topic: str
    kind: str  # "stage" (events, ops, deliveries) or "retry"


#: The retry tiers' consumer group is ``STREAMS_APP_ID`` + this (see :mod:`streams.retry.agent`).
RETRY_GROUP_SUFFIX = "-retry-tiers"


def consumer_groups(settings: Settings) -> tuple[str, ...]:
    """The consumer groups that commit the stages' offsets."""
    return (settings.app_id, settings.app_id + RETRY_GROUP_SUFFIX)


def stages(settings: Settings) -> list[Stage]:
    """Every topic the worker's consumer group reads, in pipeline order."""
    names = TopicNames(settings.topic_prefix)
    out = [
        Stage("events", names.events, "stage"),
        Stage("ops", names.ops, "stage"),
        Stage("deliveries", names.deliveries, "stage"),
    ]
    for tier in retry_tiers(settings):
        out.append(Stage(f"retry {format_duration(tier)}", names.retry(tier), "retry"))
    return out


def sum_by_topic(
    offsets: Iterable[PartitionOffsets],
) -> dict[str, dict[str, int]]:
    """Per topic: ``high`` (sum of end offsets), ``lag`` and ``messages``."""
    out: dict[str, dict[str, int]] = {}
    for p in offsets:
        row = out.setdefault(p.topic, {"high": 0, "lag": 0, "messages": 0, "partitions": 0})
        row["high"] += p.high
        row["lag"] += p.lag
        row["messages"] += p.messages
        row["partitions"] += 1
    return out


def rate(before: int | None, after: int | None, seconds: float) -> float | None:
    """Records per second between two end-offset sums; None without two samples."""
    if before is None or after is None or seconds <= 0:
        return None
    return max(0, after - before) / seconds


class OffsetReader:
    """Reads watermarks and the group's committed offsets with one AdminClient."""

    def __init__(self, settings: Settings, *, timeout_s: float = 5.0) -> None:
        from confluent_kafka.admin import AdminClient

        config: dict[str, Any] = {**admin_config(settings), "logger": _QUIET}
        self.admin: Any = AdminClient(config)
        self.timeout_s = timeout_s

    def read(self, topics: Iterable[str], groups: Iterable[str] = ()) -> list[PartitionOffsets]:
        """Offsets of every partition of ``topics`` (missing topics are skipped).

        ``committed`` is the furthest offset any of ``groups`` committed there.

        Raises the client's exception when Kafka does not answer in time.
        """
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        wanted = list(dict.fromkeys(topics))
        meta = self.admin.list_topics(timeout=self.timeout_s)
        tps = [
            TopicPartition(t, p)
            for t in wanted
            if t in meta.topics and meta.topics[t].error is None
            for p in sorted(meta.topics[t].partitions)
        ]
        if not tps:
            return []
        timeout = self.timeout_s
        spec: Any = OffsetSpec
        lows = self.admin.list_offsets({tp: spec.earliest() for tp in tps}, request_timeout=timeout)
        highs = self.admin.list_offsets({tp: spec.latest() for tp in tps}, request_timeout=timeout)
        committed: dict[tuple[str, int], int] = {}
        for group in dict.fromkeys(groups):  # the API answers one group per request
            request = [ConsumerGroupTopicPartitions(group, tps)]
            futures = self.admin.list_consumer_group_offsets(request, request_timeout=timeout)
            for fut in futures.values():
                for tp in fut.result(timeout=timeout).topic_partitions or []:
                    key = (tp.topic, tp.partition)
                    if tp.error is None and tp.offset >= 0:
                        committed[key] = max(tp.offset, committed.get(key, -1))
        low_by = {
            (tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in lows.items()
        }
        high_by = {
            (tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in highs.items()
        }
        return [
            PartitionOffsets(
                topic=tp.topic,
                partition=tp.partition,
                low=max(0, low_by[(tp.topic, tp.partition)]),
                high=max(0, high_by[(tp.topic, tp.partition)]),
                committed=committed.get((tp.topic, tp.partition)),
            )
            for tp in tps
        ]

    def close(self) -> None:
        """AdminClient has no close; dropping the reference frees librdkafka's handle."""
        self.admin = None
