"""The delivery stage: reads ``deliveries`` and hands each record to the engine.

Manual acks under a crashing supervisor (see :mod:`streams.kafka.commits`): the
loop only tracks and submits, the engine acks once the attempt's follow-ups
are acknowledged by Kafka.

What reads the topic is ``STREAMS_DELIVERY_CONSUMER``: a Faust agent (``faust``)
or a librdkafka consumer on a thread of its own (``librdkafka``,
:mod:`streams.kafka.batched`), in the group ``<STREAMS_APP_ID>-deliver``. Both
feed every record to the same :class:`OrderedAcks` and ``engine.handle``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import mode

from streams.kafka.batched import BatchedConsumer, BatchedEvent
from streams.kafka.commits import OrderedAcks
from streams.kafka.offsets import DELIVER_GROUP_SUFFIX

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
    if pipeline.settings.delivery_consumer == "librdkafka":
        stage = DeliveryConsumer(pipeline, engine)
        pipeline.extras["delivery_consumer"] = stage
        pipeline.app.service(stage)  # type: ignore[arg-type]
        return
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


class DeliveryConsumer(mode.Service):
    """The delivery stage on :class:`~streams.kafka.batched.BatchedConsumer`.

    The consumer's thread hands batches over; one task here takes them in order
    and runs each record exactly as the Faust agent does: ``await acks.track``
    (which waits while OrderedAcks is full: the thread then pauses its
    partitions) and ``await engine.handle``. Records of a partition revoked
    since they were read are skipped (the next owner reads them again).
    """

    def __init__(self, pipeline: Pipeline, engine: DeliveryEngine) -> None:
        super().__init__()
        self.p = pipeline
        self.engine = engine
        self._batches: deque[list[BatchedEvent]] = deque()
        self._wake = asyncio.Event()
        self.acks: OrderedAcks | None = None
        settings = pipeline.settings
        self.consumer = BatchedConsumer(
            settings,
            pipeline.names.deliveries,
            settings.app_id + DELIVER_GROUP_SUFFIX,
            on_batch=self._take,
            on_fatal=crash_handler(pipeline),
            # Where the Faust agent (STREAMS_DELIVERY_CONSUMER=faust) left off.
            also_from_group=settings.app_id,
        )

    async def on_start(self) -> None:
        self.acks = OrderedAcks(
            max_pending=MAX_PENDING, max_unacked=MAX_UNACKED, on_fatal=crash_handler(self.p)
        )
        self.add_future(self._run())

    async def on_stop(self) -> None:
        await self.consumer.stop()

    def _take(self, events: list[BatchedEvent]) -> None:
        self._batches.append(events)
        self._wake.set()

    async def _run(self) -> None:
        await self.p.ready()  # as the agent: no record before the subscriptions are read
        self.consumer.start(asyncio.get_running_loop())
        acks = self.acks
        assert acks is not None
        engine = self.engine
        owns = self.consumer.book.owns
        taken = self.consumer.taken
        metrics = self.p.extras.get("metrics")
        batches = self._batches
        while not self.should_stop:
            if not batches:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = batches.popleft()
            for event in batch:
                message = event.message
                taken(1)
                if not owns(message.tp, event.generation):
                    continue
                if metrics is not None:
                    metrics.observe_wait("deliver", message.timestamp)
                ticket = await acks.track(event)
                await engine.handle(event.value, message, ticket, acks)
                # Let what became ready run between records (HTTP answers freeing lane room),
                # as between the agent's records: a batch handed over at once must not fill
                # lanes in one go and defer what a moment later would have fitted.
                await asyncio.sleep(0)
