"""The delivery agent: reads ``deliveries`` and hands each record to the engine.

Manual acks under a crashing supervisor (see :mod:`streams.kafka.commits`): the
loop only tracks and submits, the engine acks once the attempt's follow-ups
are acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import mode

from streams.kafka.commits import OrderedAcks

if TYPE_CHECKING:
    from streams.delivery.engine import DeliveryEngine
    from streams.pipeline import Pipeline

#: Records being worked on (not yet done), per agent: bounds requests and memory.
MAX_PENDING = 5000
#: Records read but not yet acked, done or not, per agent (see streams.kafka.commits).
MAX_UNACKED = 50_000


def crash_handler(pipeline: Pipeline) -> Any:
    crashing: set[asyncio.Future[None]] = set()

    def stop_worker(exc: BaseException) -> None:
        crashing.add(asyncio.ensure_future(pipeline.app.crash(exc)))

    return stop_worker


def register_delivery(pipeline: Pipeline, engine: DeliveryEngine) -> None:
    topic = pipeline.topic(pipeline.names.deliveries)

    @pipeline.app.agent(topic, name="deliver", supervisor_strategy=mode.CrashingSupervisor)
    async def deliver(stream: Any) -> None:
        await pipeline.ready()
        acks = OrderedAcks(
            max_pending=MAX_PENDING, max_unacked=MAX_UNACKED, on_fatal=crash_handler(pipeline)
        )
        metrics = pipeline.extras.get("metrics")
        async for event in stream.noack().events():
            if metrics is not None:
                metrics.observe_wait("deliver", event.message.timestamp)
            ticket = await acks.track(event)
            await engine.handle(event.value, event.message, ticket, acks)
