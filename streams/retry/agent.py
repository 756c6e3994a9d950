"""Retry tiers: wait for each record's due time, then hand it to the delivery engine.

Every record in one tier topic was delayed by the same amount, so the head of
each partition is always the next one due there. A tier partition whose head
is not due is *paused*; every other partition (and every other stage) keeps
flowing, and the consumer stays alive. A record is never sent before its
``due_at``.

Why not a Faust agent: pausing a Faust-managed partition is not safe on
faust-streaming 0.15.3. Its fetch loop drops records of paused partitions
that were already fetched (the client position has moved past them), and
seeking back races with its read-offset and gap bookkeeping, which can skip
those records or even commit past them (reproduced here: after pausing at
offset 21 and seeking back, the partition resumed at 25). So the tiers are
read by one plain aiokafka consumer per worker, whose own pause/resume only
advances the position for records it actually returned, with offsets
committed by hand in the same order contract as every agent
(:mod:`streams.kafka.commits`): a record's offset is committed only after the
outputs of its attempt are acknowledged by Kafka.

Partitions follow the assignment of ``deliveries`` (Faust's, or the delivery
consumer's with ``STREAMS_DELIVERY_CONSUMER=librdkafka``): when the worker owns
``deliveries`` partition *p*, it reads partition *p* of every tier, so all
records of a subscription (keyed by its id) are handled by one worker, which
is what per-subscription lanes and ordered holds rely on.

A record whose delay is longer than its tier (a schedule mapped onto fewer
tiers, or ``Retry-After`` beyond the largest tier) is released when the tier's
own delay has passed and handed on to the tier covering the rest ("hop"), so
it is never early and never holds its partition longer than the tier's delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.delivery.agent import MAX_PENDING, MAX_UNACKED, crash_handler
from streams.errors import DecodeError
from streams.kafka.commits import OrderedAcks
from streams.kafka.fetch_wait import adapt_fetch_wait
from streams.kafka.security import aiokafka_kwargs
from streams.records import Delivery
from streams.retry.schedule import tier_for_delay

if TYPE_CHECKING:
    from streams.delivery.engine import DeliveryEngine
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Records fetched per poll across all tier partitions (bounds what waits in memory).
MAX_POLL_RECORDS = 500


@dataclass(frozen=True, slots=True)
class TierMessage:
    topic: str
    partition: int
    offset: int
    timestamp: float  # seconds
    tp: TopicPartition
    key: bytes | None = None  # kept for parking a record the engine cannot handle
    headers: Any = None


class TierEvent:
    """What :class:`~streams.kafka.commits.OrderedAcks` acks: marks the offset committable."""

    __slots__ = ("_consumer", "message")

    def __init__(self, consumer: TierConsumer, message: TierMessage) -> None:
        self.message = message
        self._consumer = consumer

    def ack(self) -> bool:
        self._consumer.committable[self.message.tp] = self.message.offset + 1
        return True


#: A record due at most this long after its tier's delay is used up waits for its
#: due time in place rather than hopping to another tier.
HOP_TOLERANCE_S = 0.1


def release_time(due_at: float, appended_at: float, tier: float) -> float:
    """When a tier lets go of a record: at its due time, or when the tier's delay is used up.

    Record timestamps are whole milliseconds, while ``due_at`` is exact, so a
    record queued for exactly one tier delay can look due a fraction of a
    millisecond *after* the tier lets go of it. Hopping it then would append
    it to the end of a tier, behind records that were queued after it: an
    ordered subscription's followers would be reordered (the ordered
    integration test saw followers out of order in 5 of 6 runs before this).
    Within :data:`HOP_TOLERANCE_S` the record therefore waits for its due time.
    """
    limit = appended_at + tier
    return due_at if due_at <= limit + HOP_TOLERANCE_S else limit


class TierConsumer(mode.Service):
    def __init__(self, pipeline: Pipeline, engine: DeliveryEngine) -> None:
        super().__init__()
        self.p = pipeline
        self.engine = engine
        self.tier_of = {pipeline.names.retry(t): t for t in engine.tiers}
        self.partitions: set[int] = set()
        self.waiting: dict[TopicPartition, deque[Any]] = {}
        self.committable: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._acks: OrderedAcks | None = None
        self._reassign = asyncio.Event()
        #: How long a poll waits when no record is held (records arriving end it at once):
        #: an idle worker's loop wakes this often. A new assignment is applied after it.
        self._idle_poll_ms = max(500, min(2000, pipeline.settings.kafka_idle_fetch_max_wait_ms))

    # -- lifecycle ------------------------------------------------------------------

    async def on_start(self) -> None:
        settings = self.p.settings
        self._consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings),
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            group_id=f"{settings.app_id}-retry-tiers",
            client_id=f"{settings.app_id}-retry-tiers",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
        )
        await self._consumer.start()
        adapt_fetch_wait(self._consumer, settings.kafka_idle_fetch_max_wait_ms)
        self._acks = OrderedAcks(
            max_pending=MAX_PENDING, max_unacked=MAX_UNACKED, on_fatal=crash_handler(self.p)
        )
        self.add_future(self._run())
        self.add_future(self._commit_loop())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._commit()
            await self._consumer.stop()

    # -- assignment follows Faust's `deliveries` partitions ----------------------------

    async def on_assigned(self, assigned: set[Any]) -> None:
        numbers = {tp.partition for tp in assigned if tp.topic == self.p.names.deliveries}
        if numbers != self.partitions:
            await self._commit()
            self.partitions = numbers
            self._reassign.set()

    async def on_revoked(self, revoked: set[Any]) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == self.p.names.deliveries}
        if gone & self.partitions:
            await self._commit()
            self.partitions -= gone
            self._reassign.set()

    async def _apply_assignment(self) -> None:
        assert self._consumer is not None
        self._reassign.clear()
        tps = {TopicPartition(topic, p) for topic in self.tier_of for p in self.partitions}
        for tp in list(self.waiting):
            if tp not in tps:
                del self.waiting[tp]  # un-acked: re-read by the partition's next owner
        for tp in list(self.committable):
            if tp not in tps:
                self.committable.pop(tp, None)
                self._committed.pop(tp, None)
        self._consumer.assign(list(tps))
        fresh = []
        for tp in tps:
            committed = await self._consumer.committed(tp)
            if committed is None:
                fresh.append(tp)
            else:
                self._consumer.seek(tp, committed)
                self._committed[tp] = committed
        if fresh:
            # In one call: each seek_to_beginning waits for the fetch in flight (one per
            # partition took 54 x 500 ms for 6 partitions of 9 tiers).
            await self._consumer.seek_to_beginning(*fresh)
        log.info(
            "retry tiers: reading partitions %s of %d tiers",
            sorted(self.partitions),
            len(self.tier_of),
        )

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        await self.p.ready()
        consumer = self._consumer
        assert consumer is not None
        wake_at = 0.0
        while not self.should_stop:
            if self._reassign.is_set():
                await self._apply_assignment()
            if not self.partitions:
                await self.sleep(0.5)
                continue
            timeout_ms = (
                int(max(10.0, min(500.0, (wake_at - time.time()) * 1000)))
                if wake_at
                else self._idle_poll_ms
            )
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=MAX_POLL_RECORDS)
            for tp, records in batch.items():
                if records and not self._reassign.is_set():
                    self.waiting.setdefault(tp, deque()).extend(records)
            wake_at = await self._release_due()

    async def _release_due(self) -> float:
        """Hand on every head that is due; pause partitions whose head is not. Next wake-up."""
        consumer = self._consumer
        assert consumer is not None
        assert self._acks is not None
        now = time.time()
        next_wake = 0.0
        for tp, queue in self.waiting.items():
            tier = self.tier_of[tp.topic]
            while queue:
                record = queue[0]
                try:
                    due = Delivery.from_bytes(record.value).due_at
                except DecodeError:
                    due = 0.0  # the engine parks it (a null value too: not JSON)
                appended = record.timestamp / 1000.0
                release = release_time(due, appended, tier)
                if release > now:
                    next_wake = release if not next_wake else min(next_wake, release)
                    break
                queue.popleft()
                await self._hand_on(tp, record, due, now)
            if queue:
                if tp not in consumer.paused():
                    consumer.pause(tp)
            elif tp in consumer.paused():
                consumer.resume(tp)
        return next_wake

    async def _hand_on(self, tp: TopicPartition, record: Any, due: float, now: float) -> None:
        assert self._acks is not None
        message = TierMessage(
            tp.topic,
            tp.partition,
            record.offset,
            record.timestamp / 1000.0,
            tp,
            record.key,
            record.headers,
        )
        ticket = await self._acks.track(TierEvent(self, message))
        if due > now:
            # This tier's delay is used up but the record is not due: the tier covering the rest.
            delivery = Delivery.from_bytes(record.value)
            target = self.p.names.retry(tier_for_delay(self.engine.tiers, due - now))
            self._acks.finish_when(
                ticket, await self.p.send(target, delivery.subscription_id, record.value)
            )
            return
        await self.engine.handle(record.value, message, ticket, self._acks)

    # -- commits ------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while not self.should_stop:
            await self.sleep(1.0)
            try:
                await self._commit()
            except Exception as exc:  # a failed commit only repeats work later
                log.warning("retry tiers: commit failed: %s", exc)

    async def _commit(self) -> None:
        if self._consumer is None:
            return
        offsets = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self.committable.items()
            if self._committed.get(tp) != offset
        }
        if offsets:
            await self._consumer.commit(offsets)
            for tp, meta in offsets.items():
                self._committed[tp] = meta.offset


def register_retry_tiers(pipeline: Pipeline, engine: DeliveryEngine) -> TierConsumer:
    tiers = TierConsumer(pipeline, engine)
    pipeline.app.service(tiers)  # type: ignore[arg-type]
    stage = pipeline.extras.get("delivery_consumer")
    if stage is not None:
        # STREAMS_DELIVERY_CONSUMER=librdkafka: `deliveries` is not Faust's, follow its reader.
        stage.consumer.on_assigned.append(tiers.on_assigned)
        stage.consumer.on_revoked.append(tiers.on_revoked)
        return tiers

    @pipeline.app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: Any, assigned: set[Any], **kwargs: Any) -> None:
        await tiers.on_assigned(assigned)

    @pipeline.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app: Any, revoked: set[Any], **kwargs: Any) -> None:
        await tiers.on_revoked(revoked)

    return tiers
