"""Offsets of the pipeline's topics and of its consumer groups: lag and depth.

Both the worker's metrics (:mod:`streams.ops.metrics`) and ``streams monitor``
(:mod:`streams.monitor`) read Kafka directly through :class:`OffsetReader`:
per partition, the low and high watermarks and the offset the worker's
consumer groups committed (:func:`consumer_groups`: Faust's, named
``STREAMS_APP_ID``, the retry tiers' own, ``<app id>-retry-tiers``, and the
delivery consumer's, ``<app id>-deliver``; per partition the furthest commit of
any counts). Three numbers follow:

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
:meth:`OffsetReader.read` talks to Kafka, through aiokafka on a private event
loop (one metadata, two ListOffsets and one OffsetFetch per group per read). It
blocks, so the worker calls it from a thread and never from its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.kafka.topics import TopicNames, retry_tiers
from streams.retry.schedule import format_duration

#: How long the reader reuses the cluster's topic and partition layout.
LAYOUT_TTL_S = 60.0

log = logging.getLogger(__name__)


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
#: The delivery consumer's group with ``STREAMS_DELIVERY_CONSUMER=librdkafka``
#: (see :mod:`streams.kafka.batched`).
DELIVER_GROUP_SUFFIX = "-deliver"


def consumer_groups(settings: Settings) -> tuple[str, ...]:
    """The consumer groups that commit the stages' offsets."""
    return (
        settings.app_id,
        settings.app_id + RETRY_GROUP_SUFFIX,
        settings.app_id + DELIVER_GROUP_SUFFIX,
    )


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


def assemble(
    partitions: Iterable[tuple[str, int]],
    lows: dict[tuple[str, int], int],
    highs: dict[tuple[str, int], int],
    commits: Iterable[dict[tuple[str, int], int]],
) -> list[PartitionOffsets]:
    """One :class:`PartitionOffsets` per partition from the broker's answers.

    ``commits`` holds one mapping per consumer group; the furthest valid commit
    of any group counts. Negative offsets (Kafka's "none") read as no commit,
    and a missing watermark reads as 0.
    """
    furthest: dict[tuple[str, int], int] = {}
    for group in commits:
        for key, offset in group.items():
            if offset >= 0:
                furthest[key] = max(offset, furthest.get(key, -1))
    return [
        PartitionOffsets(
            topic=key[0],
            partition=key[1],
            low=max(0, lows.get(key, 0)),
            high=max(0, highs.get(key, 0)),
            committed=furthest.get(key),
        )
        for key in partitions
    ]


class OffsetReader:
    """Reads watermarks and the groups' committed offsets with aiokafka.

    The reader owns a private event loop and is used from one thread: the
    worker's sampler thread, or ``streams monitor``'s main thread. aiokafka is
    pure Python on purpose. The first version used confluent-kafka's
    AdminClient, and librdkafka 2.16.0 aborted the whole worker process
    (``rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0'``,
    in the admin client's coordinator request) when the broker restarted
    under it. A metrics read must never be able to take the worker down; a
    Python exception here is caught and counted by the sampler.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout_s: float = 5.0,
        layout_ttl_s: float = LAYOUT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.layout_ttl_s = layout_ttl_s
        self._clock = clock
        # topic -> its partition numbers (topics without error), and when that was read.
        self._layout: dict[str, list[int]] | None = None
        self._layout_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop()
        self._consumer: Any = None
        self._admin: Any = None

    def read(self, topics: Iterable[str], groups: Iterable[str] = ()) -> list[PartitionOffsets]:
        """Offsets of every partition of ``topics`` (missing topics are skipped).

        ``committed`` is the furthest offset any of ``groups`` committed there.

        Raises :class:`KafkaUnavailableError` when Kafka does not answer within
        ``timeout_s``; the clients are rebuilt at the next read.
        """
        if self._loop is None:
            raise RuntimeError("this OffsetReader is closed")
        wanted = list(dict.fromkeys(topics))
        work = asyncio.wait_for(self._read(wanted, list(dict.fromkeys(groups))), self.timeout_s)
        try:
            return self._loop.run_until_complete(work)
        except Exception as exc:
            self._layout = None  # a topic deleted meanwhile, say: read the layout again
            self._loop.run_until_complete(self._stop_clients())
            what = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise KafkaUnavailableError(
                f"could not read offsets from Kafka at {self.settings.kafka_bootstrap} "
                f"within {self.timeout_s:g}s ({what}); check that the broker is up and "
                "STREAMS_KAFKA_BOOTSTRAP / STREAMS_KAFKA_SECURITY_PROTOCOL are right"
            ) from exc

    async def _start_clients(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        from streams.kafka.security import aiokafka_kwargs

        common: dict[str, Any] = {
            "bootstrap_servers": self.settings.kafka_bootstrap,
            "client_id": self.settings.app_id + "-offsets",
            "request_timeout_ms": int(self.timeout_s * 1000),
            **aiokafka_kwargs(self.settings),
        }
        if self._consumer is None:
            consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **common)
            self._consumer = consumer  # stopped by _stop_clients even if start fails
            await consumer.start()
        if self._admin is None:
            admin = AIOKafkaAdminClient(**common)
            self._admin = admin
            await admin.start()

    async def _stop_clients(self) -> None:
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _read(self, topics: list[str], groups: list[str]) -> list[PartitionOffsets]:
        from aiokafka.structs import TopicPartition

        await self._start_clients()
        consumer, admin = self._consumer, self._admin
        layout = await self._partitions(admin)
        tps = [TopicPartition(t, p) for t in topics for p in layout.get(t, ())]
        if not tps:
            return []
        lows = await consumer.beginning_offsets(tps)
        highs = await consumer.end_offsets(tps)
        commits = []
        for group in groups:
            answer = await admin.list_consumer_group_offsets(group, partitions=tps)
            commits.append({(tp.topic, tp.partition): meta.offset for tp, meta in answer.items()})
        return assemble(
            [(tp.topic, tp.partition) for tp in tps],
            {(tp.topic, tp.partition): off for tp, off in lows.items()},
            {(tp.topic, tp.partition): off for tp, off in highs.items()},
            commits,
        )

    async def _partitions(self, admin: Any) -> dict[str, list[int]]:
        """Every topic's partitions, read again only every ``layout_ttl_s``.

        All topics, not just ours: a metadata request that names a missing topic
        creates it on a broker with auto.create.topics.enable (aiokafka asks so).
        On a shared cluster that answer is large: decoding it every 5 s was a third
        of an idle worker's CPU (docs/benchmarks.md, issue 22), while partition
        counts change only when an operator adds partitions.
        """
        now = self._clock()
        if self._layout is None or now - self._layout_at >= self.layout_ttl_s:
            self._layout = {
                row["topic"]: sorted(part["partition"] for part in row["partitions"])
                for row in await admin.describe_topics(None)
                if row["error_code"] == 0
            }
            self._layout_at = now
        return self._layout

    def close(self) -> None:
        """Stop the clients and close the private loop."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._stop_clients())
        self._loop.close()
        self._loop = None
