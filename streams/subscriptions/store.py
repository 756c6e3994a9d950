"""Reading and writing the compacted topics (subscriptions, tokens).

Every worker reads each compacted topic from the beginning into an
in-process index and then follows it: a plain consumer with no group,
assigned every partition, one for all the worker's state topics
(:func:`start_readers`). The worker is *ready* once it has read up to the
end offsets it saw at start; the fan-out does not process an event before
then, so no event is joined against a partial view.

Why not a Faust ``GlobalTable``: on faust-streaming 0.15.3 with Kafka 4.4 we
measured (see docs/design.md) that a rocksdb GlobalTable stops seeing other
workers' updates for keys it wrote itself and asserts when written outside an
agent, and that a memory GlobalTable only shows other workers' updates live
with ``recovery_buffer_size=1``. Reading the topic ourselves is the same
mechanism (a replica of a compacted changelog in every process) without
those failure modes, and the topic stays the only source of truth.

Writes go to the topic and then wait until this worker's own reader has
applied them, so an API response reflects what every worker will see.

A record that cannot be applied (no key, a key that is not UTF-8, a value its
apply function refuses) is skipped with its position and reason logged and
counted (``skipped``); it stays in the topic. Every worker reads these topics
whole at every start, so they are not parked from (see
:mod:`streams.deadletter.parking`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from streams.config import Settings
from streams.errors import StreamsError
from streams.records import MAX_REASON_CHARS, bounded

log = logging.getLogger(__name__)

#: Applies one record; returns None, or why the record could not be used (it is then
#: skipped: logged with its position and counted by the reader).
Apply = Callable[[str, bytes | None], str | None]


#: Skipped records logged one by one per reader (after that, counted only).
MAX_SKIP_LOGS = 100

#: The least a batched fetch waits for (see ``batch_wait_ms``).
BATCH_MIN_BYTES = 256 * 1024


class CompactedReader:
    """Replicate one compacted topic into ``apply(key, value)`` calls, then follow it."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        apply: Apply,
        *,
        name: str,
        since_s: float | None = None,
        gates_readiness: bool = True,
        batch_wait_ms: int = 0,
    ) -> None:
        """``since_s``: start at records newer than this many seconds ago instead of the
        beginning (for logs, not compacted state). ``gates_readiness``: the worker is
        not ready until this reader has caught up. ``batch_wait_ms``: let the broker
        hold each fetch until 256 KiB have arrived or this long has passed, for a busy
        topic whose readers can lag a little (the delivery log)."""
        self.settings = settings
        self.topic = topic
        self.apply = apply
        self.name = name
        self.since_s = since_s
        self.gates_readiness = gates_readiness
        self.batch_wait_ms = batch_wait_ms
        self.ready = asyncio.Event()
        self.records = 0
        self.skipped = 0  # records that could not be applied (see _apply_record)
        self._group: _ReaderGroup | None = None

    async def start(self) -> None:
        """Start reading with a consumer of this reader's own (:func:`start_readers`
        shares one between readers)."""
        await start_readers([self])

    async def stop(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            await group.release(self)

    def _apply_record(self, record: Any) -> None:
        """Apply one record, or skip it with the reason logged; never raise.

        A record that cannot be applied must not stop the reader: it would
        reconnect, read the topic from the start, and stop at the same record
        again, and a worker whose readers never catch up is never ready.
        """
        if record.key is None:
            self._skip(record, "the record has no key")
            return
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            self._skip(record, "its key is not UTF-8")
            return
        if not key:
            self._skip(record, "its key is empty")
            return
        try:
            problem = self.apply(key, record.value)
        except Exception as exc:  # a record the apply function did not expect
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            self._skip(record, problem)
            return
        self.records += 1

    def _skip(self, record: Any, reason: str) -> None:
        self.skipped += 1
        if self.skipped <= MAX_SKIP_LOGS:
            log.error(
                "%s reader: skipped the record at %s[%d]@%d (%s); it stays in the topic",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                bounded(reason, MAX_REASON_CHARS),
            )
        elif self.skipped == MAX_SKIP_LOGS + 1:
            log.error("%s reader: more records skipped; not logging each any more", self.name)

    async def _partitions(self, consumer: Any) -> list[int]:
        for _ in range(50):
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                return sorted(partitions)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        raise StreamsError(
            f"topic {self.topic} does not exist: run `streams topics create` (same "
            "STREAMS_TOPIC_PREFIX) before starting the worker"
        )

    def _mark_ready(self) -> None:
        if not self.ready.is_set():
            log.info("%s: read %d records from %s; ready", self.name, self.records, self.topic)
            self.ready.set()


async def start_readers(readers: list[CompactedReader]) -> None:
    """Start ``readers``, those alike sharing one consumer.

    Readers read from the beginning without a batch wait (the worker's state
    topics: subscriptions, endpoint health, tokens) share one aiokafka
    consumer: each consumer of an idle worker sends a fetch every 500 ms
    (``STREAMS_KAFKA_READER_FETCH_MAX_WAIT_MS``; every 2 s once idle,
    ``STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS``, :mod:`streams.kafka.fetch_wait`) and
    wakes the event loop for it, so three of them cost three times the idle
    CPU of one (docs/benchmarks.md, issue 22). A write is applied as soon as a
    fetch returns it, shared or not. Any other reader gets a consumer of its own.
    """
    shared = [r for r in readers if r.since_s is None and not r.batch_wait_ms]
    groups = [shared] if shared else []
    groups += [[r] for r in readers if r not in shared]
    for members in groups:
        group = _ReaderGroup(members)
        for reader in members:
            reader._group = group
        group.start()


#: How long one ``getmany`` waits for records: the reader loop wakes this often when
#: nothing arrives (records arriving end the wait at once).
POLL_TIMEOUT_MS = 2000


class _ReaderGroup:
    """One consumer assigned every partition of its readers' topics."""

    def __init__(self, readers: list[CompactedReader]) -> None:
        self.readers = list(readers)
        self.first = readers[0]
        self.active = set(readers)
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return "+".join(r.name for r in self.readers)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"reader:{self.label}")

    async def release(self, reader: CompactedReader) -> None:
        """``reader`` stops; the consumer stops with the last of its readers."""
        self.active.discard(reader)
        if self.active or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _run(self) -> None:
        # Reconnect forever: a broker restart must not leave a worker without its view.
        while self.active:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s reader: %s; reconnecting in 2s", self.label, exc)
                await asyncio.sleep(2)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from streams.kafka.fetch_wait import adapt_fetch_wait
        from streams.kafka.security import aiokafka_kwargs

        first = self.first
        settings = first.settings
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings),
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{settings.app_id}-{first.name}-reader",
            # A batched reader waits for bytes; the others answer at the first record and
            # otherwise ask again every STREAMS_KAFKA_READER_FETCH_MAX_WAIT_MS (idle cost).
            **(
                {"fetch_min_bytes": BATCH_MIN_BYTES, "fetch_max_wait_ms": first.batch_wait_ms}
                if first.batch_wait_ms
                else {"fetch_max_wait_ms": settings.kafka_reader_fetch_max_wait_ms}
            ),
        )
        await consumer.start()
        adapt_fetch_wait(consumer, settings.kafka_idle_fetch_max_wait_ms)
        try:
            owned: dict[CompactedReader, list[Any]] = {}
            for reader in self.readers:
                partitions = await reader._partitions(consumer)
                owned[reader] = [TopicPartition(reader.topic, p) for p in partitions]
            by_topic = {reader.topic: reader for reader in self.readers}
            tps = [tp for reader_tps in owned.values() for tp in reader_tps]
            consumer.assign(tps)
            end: dict[Any, int] = await consumer.end_offsets(tps)
            for reader, reader_tps in owned.items():
                if reader.since_s is None:
                    await consumer.seek_to_beginning(*reader_tps)
                else:
                    since_ms = int((time.time() - reader.since_s) * 1000)
                    found = await consumer.offsets_for_times({tp: since_ms for tp in reader_tps})
                    for tp in reader_tps:
                        start = found.get(tp)
                        consumer.seek(tp, start.offset if start is not None else end[tp])
                if all(end[tp] == 0 for tp in reader_tps):
                    reader._mark_ready()
            while self.active:
                batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=5000)
                for tp, records in batch.items():
                    reader = by_topic[tp.topic]
                    for record in records:
                        reader._apply_record(record)
                for reader, reader_tps in owned.items():
                    if not reader.ready.is_set():
                        positions = {tp: await consumer.position(tp) for tp in reader_tps}
                        if all(positions[tp] >= end[tp] for tp in reader_tps):
                            reader._mark_ready()
        finally:
            await consumer.stop()
