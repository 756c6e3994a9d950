"""Retry tiers: one agent per delay topic, each waiting for its records' due time.

Every record in one tier was delayed by the same amount, so the head of each
partition is always the next one due. When the head is not due yet, the agent
pauses that partition, seeks it back to the head, and resumes it at the due
time; meanwhile the other partitions (and every other agent) keep flowing,
and the consumer stays alive. A record is never sent before its ``due_at``.

Why not ``await asyncio.sleep()``: an agent holding an un-acked event blocks
rebalances and shutdown. Why the seek: Faust drops records of a paused
partition that are already fetched, so the agent rewinds to the head and
ignores stale buffered records of that partition until the head comes back
(measured on faust-streaming 0.15.3; see docs/design.md).

A record whose delay is longer than its tier (a schedule mapped onto fewer
tiers, or ``Retry-After`` beyond the largest tier) is handed on to the tier
covering the remaining time when it reaches the head ("hop"), so it is never
early and never blocks the tier for longer than the tier's own delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import mode
from faust.types import TP

from streams.commits import OrderedAcks
from streams.delivery.agent import MAX_PENDING, crash_handler
from streams.errors import DecodeError
from streams.records import Delivery
from streams.retry.schedule import tier_for_delay

if TYPE_CHECKING:
    from streams.app import Pipeline
    from streams.delivery.engine import DeliveryEngine

log = logging.getLogger(__name__)


class PartitionGate:
    """Pause/rewind/resume bookkeeping of one tier agent."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.rewound: dict[TP, int] = {}  # partition -> the head offset we seeked back to
        self.timers: dict[TP, asyncio.TimerHandle] = {}

    def stale(self, tp: TP, offset: int) -> bool:
        """True for buffered records of a rewound partition other than its head."""
        head = self.rewound.get(tp)
        if head is None:
            return False
        if offset != head:
            return True
        del self.rewound[tp]
        return False

    async def hold(self, tp: TP, offset: int, due_at: float) -> None:
        consumer = self.p.app.consumer
        consumer.pause_partitions({tp})
        await consumer.seek_wait({tp: offset})
        self.rewound[tp] = offset
        delay = max(0.0, due_at - time.time())
        old = self.timers.pop(tp, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.timers[tp] = loop.call_later(delay, self._resume, tp)

    def _resume(self, tp: TP) -> None:
        self.timers.pop(tp, None)
        try:
            self.p.app.consumer.resume_partitions({tp})
        except Exception as exc:  # revoked meanwhile: the new owner reads it from the commit
            log.info("resume of %s skipped: %s", tp, exc)


def register_retry_tiers(pipeline: Pipeline, engine: DeliveryEngine) -> None:
    for tier in engine.tiers:
        _register_tier(pipeline, engine, tier)


def _register_tier(pipeline: Pipeline, engine: DeliveryEngine, tier: float) -> None:
    name = pipeline.names.retry(tier)
    topic = pipeline.topic(name)

    async def wait_for_due(stream: Any) -> None:
        await pipeline.ready()
        gate = PartitionGate(pipeline)
        acks = OrderedAcks(max_pending=MAX_PENDING, on_fatal=crash_handler(pipeline))
        async for event in stream.noack().events():
            message = event.message
            tp = TP(message.topic, message.partition)
            if gate.stale(tp, message.offset):
                continue  # not acked: it is fetched again after the rewind
            try:
                due = Delivery.from_bytes(event.value).due_at
            except DecodeError:
                due = 0.0  # the engine parks it
            now = time.time()
            # A tier never holds a record longer than its own delay after it was
            # appended, which keeps the partition head the next one due.
            expiry = float(message.timestamp or now) + tier
            release = min(due, expiry)
            if release > now:
                await gate.hold(tp, message.offset, release)
                continue
            if due > now:
                # Not due but this tier's time is used up: hop to the tier covering the rest.
                ticket = await acks.track(event)
                delivery = Delivery.from_bytes(event.value)
                target = pipeline.names.retry(tier_for_delay(engine.tiers, due - now))
                fut = await pipeline.send(target, delivery.subscription_id, event.value)
                acks.finish_when(ticket, fut)
                continue
            ticket = await acks.track(event)
            await engine.handle(event.value, message, ticket, acks)

    wait_for_due.__name__ = f"retry_{name.replace('.', '_')}"
    pipeline.app.agent(topic, name=f"retry-{name}", supervisor_strategy=mode.CrashingSupervisor)(
        wait_for_due
    )
