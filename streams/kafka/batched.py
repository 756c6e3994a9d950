"""A stage consumer on librdkafka: batched ``consume()`` on a thread, records handed to the loop.

The delivery stage may read ``deliveries`` with this instead of a Faust agent
(``STREAMS_DELIVERY_CONSUMER=librdkafka``; docs/design.md). The commit contract
of :mod:`streams.kafka.commits` holds unchanged: every record goes through the
same :class:`~streams.kafka.commits.OrderedAcks`, which acks it only when
everything it caused is acknowledged by Kafka and only in offset order per
partition; an ack here marks ``offset + 1`` committable, and only committable
positions are ever committed (every :data:`COMMIT_INTERVAL_S`, on revoke, at
close). librdkafka never commits on its own (``enable.auto.commit=false``).

How records reach the loop, the way :class:`~streams.kafka.output.KafkaOutput`
hands over confirmations: a daemon thread calls ``consume()``, wraps each
record in a :class:`BatchedEvent`, and hands the whole batch to the loop with
one ``call_soon_threadsafe``. Every call into the librdkafka consumer (consume,
pause, commit, close, and so the rebalance callbacks) happens on that thread.

Back-pressure: the loop counts the records it has taken. When the records handed
over but not yet taken reach :data:`PAUSE_AT` (the stage's ``await
acks.track`` is blocked on OrderedAcks' bounds), the thread pauses its
partitions and keeps calling ``consume()``, so the group's rebalances and
``max.poll.interval.ms`` are served while the loop catches up; below
:data:`RESUME_AT` it resumes them. A record ``consume()`` returned is never dropped
while its partition is owned.

Rebalances (eager assignment, the full set each time): on revoke, the
partitions' generation ends (:class:`CommitBook`): records of it still waiting
for the loop are skipped, later acks of its records in flight are ignored, and
what was acked is committed at once; the next owner reads the rest again
(at-least-once, repeated deliveries keep their ``webhook-id``). On assign, each
partition starts at the furthest offset committed by this group or by the
worker's Faust group (:func:`start_offset`), so switching the setting neither
loses nor re-sends what the other consumer finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiokafka import TopicPartition

from streams.config import Settings

log = logging.getLogger(__name__)

#: Records per ``consume()`` call (one hand-over to the loop at most this big).
MAX_BATCH = 500
#: How long an idle ``consume()`` blocks for the first record (also how quickly a stop
#: is noticed); it returns as soon as one arrives.
IDLE_WAIT_S = 0.25
#: How long ``consume()`` blocks while the partitions are paused.
PAUSED_WAIT_S = 0.02
#: Records handed to the loop and not yet taken at which the partitions are paused...
PAUSE_AT = 4000
#: ... and at which they are resumed.
RESUME_AT = 1000
#: How often acked positions are committed (Faust's ``broker_commit_interval``).
COMMIT_INTERVAL_S = 1.0
#: How long a rebalance callback waits for the loop's listeners (the retry tiers).
LISTENER_TIMEOUT_S = 10.0
#: How long an offset lookup may take before the consumer falls back to its own commit.
LOOKUP_TIMEOUT_S = 10.0


class BatchedMessage:
    """What a stage reads of a record: the fields of Faust's ``Message`` that the engine and
    the parking code use. ``key`` and ``headers`` are read from the record only when asked
    (only parking a record does)."""

    __slots__ = ("_record", "offset", "partition", "timestamp", "topic", "tp")

    def __init__(self, tp: TopicPartition, offset: int, timestamp: float, record: Any) -> None:
        self.topic = tp.topic
        self.partition = tp.partition
        self.offset = offset
        self.timestamp = timestamp  # seconds, as Faust gives it
        self.tp = tp
        self._record = record

    @property
    def key(self) -> bytes | None:
        key: bytes | None = self._record.key()
        return key

    @property
    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return read_headers(self._record)


class _Check:
    """Calling it goes through CPython's check for a pending exception (``tp_call``)."""

    __slots__ = ()


def read_headers(record: Any) -> list[tuple[str, bytes | None]] | None:
    """A record's headers, or None when confluent-kafka cannot read them.

    confluent-kafka decodes header names as strict UTF-8. For a name that is not
    (Kafka never checks), ``headers()`` returns with a ``UnicodeDecodeError``
    left set, and the next C call that checks raises it as ``SystemError``,
    wherever that is. ``_Check()`` is such a call, made here inside the ``try``.
    Such a record is parked without its original headers rather than stopping the
    worker (tests/integration/test_poison.py).
    """
    try:
        headers = record.headers()
        _Check()
    except (UnicodeDecodeError, SystemError) as exc:
        log.warning(
            "a record at %s[%d]@%d has headers that cannot be read (%s); they are left out",
            record.topic(),
            record.partition(),
            record.offset(),
            type(exc).__name__,
        )
        return None
    return list(headers) if headers is not None else None


class BatchedEvent:
    """One record handed to the loop; :meth:`ack` (from OrderedAcks) marks it committable."""

    __slots__ = ("_book", "generation", "message", "value")

    def __init__(
        self, book: CommitBook, message: BatchedMessage, value: bytes | None, generation: int
    ) -> None:
        self.message = message
        self.value = value
        self.generation = generation
        self._book = book

    def ack(self) -> bool:
        return self._book.acked(self.message.tp, self.generation, self.message.offset + 1)


class CommitBook:
    """Which partitions are owned (each assignment a new generation) and what is committable.

    Shared by the loop (``acked``, ``owns``) and the consumer thread (the rest),
    under one lock. Pure bookkeeping: no Kafka here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._owned: dict[TopicPartition, int] = {}
        self._committable: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def assign(self, tps: Iterable[TopicPartition], committed: dict[TopicPartition, int]) -> None:
        """Own ``tps`` from now, in a new generation; ``committed``: where each starts."""
        with self._lock:
            self._generation += 1
            for tp in tps:
                self._owned[tp] = self._generation
                self._committable.pop(tp, None)
                if tp in committed:
                    self._committed[tp] = committed[tp]
                else:
                    self._committed.pop(tp, None)

    def generation(self, tp: TopicPartition) -> int | None:
        return self._owned.get(tp)

    def owns(self, tp: TopicPartition, generation: int) -> bool:
        return self._owned.get(tp) == generation

    def acked(self, tp: TopicPartition, generation: int, position: int) -> bool:
        """Mark ``position`` (an offset + 1) committable, if the generation still owns ``tp``."""
        with self._lock:
            if self._owned.get(tp) != generation:
                return False  # revoked meanwhile: its next owner reads it again
            if position > self._committable.get(tp, -1):
                self._committable[tp] = position
            return True

    def due(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Committable positions not committed yet (of ``tps``, or of every owned partition)."""
        with self._lock:
            wanted = self._committable if tps is None else {tp: None for tp in tps}
            return {
                tp: self._committable[tp]
                for tp in wanted
                if tp in self._committable
                and self._committable[tp] != self._committed.get(tp)
                and tp in self._owned
            }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            for tp, position in offsets.items():
                if tp in self._owned:
                    self._committed[tp] = position

    def revoke(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Stop owning ``tps``; return what of them is still to commit."""
        tps = list(tps)
        due = self.due(tps)
        with self._lock:
            for tp in tps:
                self._owned.pop(tp, None)
                self._committable.pop(tp, None)
                self._committed.pop(tp, None)
        return due

    @property
    def owned(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._owned)


def start_offset(*committed: int | None) -> int | None:
    """Where a newly assigned partition starts: the furthest valid commit, or None.

    Each argument is one group's committed offset (``None`` or negative: none).
    Every group's commit means "everything before it is done", so the furthest
    of them is safe.
    """
    valid = [c for c in committed if c is not None and c >= 0]
    return max(valid) if valid else None


def flow(backlog: int, paused: bool, pause_at: int = PAUSE_AT, resume_at: int = RESUME_AT) -> bool:
    """Whether the partitions should be paused, given the records the loop has not taken."""
    if paused:
        return backlog > resume_at
    return backlog >= pause_at


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    from streams.kafka.security import librdkafka_config

    return {
        **librdkafka_config(settings),
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group_id,
        "client.id": group_id,
        # Commits only of what OrderedAcks acked, by hand (COMMIT_INTERVAL_S, revoke, close).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # As aiokafka's (librdkafka's default is read_committed); nothing here is transactional.
        "isolation.level": "read_uncommitted",
        # As the Faust worker's: a killed worker's partitions move after 10 s.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
        # The same fetch wait and size as the Faust consumer's (STREAMS_KAFKA_FETCH_*).
        "fetch.wait.max.ms": settings.kafka_fetch_max_wait_ms,
        "fetch.min.bytes": settings.kafka_fetch_min_bytes,
        "max.partition.fetch.bytes": max(settings.max_record_bytes, 1_048_576),
        # librdkafka prefetches up to 100,000 records per partition by default: bound it.
        "queued.min.messages": 2 * MAX_BATCH,
        "queued.max.messages.kbytes": 16_384,
    }


Listener = Callable[[set[TopicPartition]], Coroutine[Any, Any, Any]]


def _faust_lookup(settings: Settings, group_id: str) -> Any:
    from confluent_kafka import Consumer

    config = consumer_config(settings, group_id)
    config["client.id"] = f"{group_id}-offsets"
    return Consumer(config)  # never subscribes: only asks for the group's commits


class BatchedConsumer:
    """One topic read by a librdkafka consumer on a thread; batches of events to ``on_batch``.

    ``on_batch`` runs on the loop with a list of :class:`BatchedEvent`; the loop
    calls :meth:`taken` with how many it has handled (the back-pressure count).
    ``on_assigned``/``on_revoked`` listeners run on the loop with the full set of
    partitions assigned, or the ones revoked (the retry tiers follow them).
    ``on_fatal`` runs on the loop with an error that must stop the worker.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        *,
        on_batch: Callable[[list[BatchedEvent]], Any],
        on_fatal: Callable[[BaseException], Any],
        also_from_group: str | None = None,
        consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.also_from_group = also_from_group
        self.book = CommitBook()
        self.on_batch = on_batch
        self.on_fatal = on_fatal
        self.on_assigned: list[Listener] = []
        self.on_revoked: list[Listener] = []
        self._factory = consumer_factory or _confluent_consumer
        self._consumer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = False
        self._paused = False
        self._handed = 0  # written by the thread only
        self._taken = 0  # written by the loop only
        self._tps: dict[int, TopicPartition] = {}
        self.batches = 0
        self.commits = 0

    # -- lifecycle (loop side) -----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._consumer = self._factory(consumer_config(self.settings, self.group_id))
        self._thread = threading.Thread(target=self._run, name="kafka-deliver", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop consuming, commit what is acked, leave the group (its partitions move now)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            if self._thread.is_alive():
                log.error("the delivery consumer's thread did not stop within %gs", timeout_s)

    def taken(self, count: int) -> None:
        self._taken += count

    @property
    def backlog(self) -> int:
        return self._handed - self._taken

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        try:
            consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            next_commit = time.monotonic() + COMMIT_INTERVAL_S
            while not self._stop.is_set():
                paused = flow(self.backlog, self._paused)
                if paused != self._paused:
                    assignment = consumer.assignment()
                    if assignment:
                        (consumer.pause if paused else consumer.resume)(assignment)
                    self._paused = paused
                if paused:
                    records = consumer.consume(MAX_BATCH, PAUSED_WAIT_S)
                else:
                    records = consumer.consume(MAX_BATCH, 0)
                    if not records:
                        # Sleep until a record arrives (it returns at once with the first),
                        # then take whatever else is queued already.
                        records = consumer.consume(1, IDLE_WAIT_S)
                        if records:
                            records += consumer.consume(MAX_BATCH - 1, 0)
                if records:
                    self._hand_over(records)
                if time.monotonic() >= next_commit:
                    self._commit(self.book.due())
                    next_commit = time.monotonic() + COMMIT_INTERVAL_S
            self._commit(self.book.due())
        except BaseException as exc:  # never die silently: the worker stops
            log.exception("the delivery consumer failed")
            self._fatal(exc)
        finally:
            self._closing = True
            try:
                consumer.close()  # leaves the group; on_revoke commits what is left
            except Exception:
                log.exception("closing the delivery consumer failed")

    def _tp(self, partition: int) -> TopicPartition:
        tp = self._tps.get(partition)
        if tp is None:
            tp = self._tps[partition] = TopicPartition(self.topic, partition)
        return tp

    def _hand_over(self, records: list[Any]) -> None:
        events: list[BatchedEvent] = []
        generation_of = self.book.generation
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise RuntimeError(f"the delivery consumer hit a fatal Kafka error: {error}")
                log.warning("delivery consumer: %s", error)
                continue
            tp = self._tp(record.partition())
            generation = generation_of(tp)
            if generation is None:
                continue  # not owned any more (revoked within this consume call)
            _, stamp = record.timestamp()
            message = BatchedMessage(
                tp, record.offset(), stamp / 1000.0 if stamp > 0 else 0.0, record
            )
            events.append(BatchedEvent(self.book, message, record.value(), generation))
        if events:
            self._handed += len(events)
            self.batches += 1
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # a closed loop: the worker is gone
                self._loop.call_soon_threadsafe(self.on_batch, events)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        from confluent_kafka import TopicPartition as KafkaTP

        try:
            self._consumer.commit(
                offsets=[KafkaTP(tp.topic, tp.partition, pos) for tp, pos in offsets.items()],
                asynchronous=False,
            )
        except Exception as exc:  # a failed commit only repeats work later
            log.warning("delivery consumer: commit failed: %s", exc)
            return
        self.book.committed(offsets)
        self.commits += 1

    def _fatal(self, exc: BaseException) -> None:
        if self._loop is not None and not self._stop.is_set():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.on_fatal, exc)

    def _notify(self, listeners: list[Listener], tps: set[TopicPartition]) -> None:
        """Run the loop's listeners for a rebalance and wait for them (bounded)."""
        if self._closing or self._loop is None or not listeners:
            return
        for listener in listeners:
            try:
                future = asyncio.run_coroutine_threadsafe(listener(tps), self._loop)
                future.result(LISTENER_TIMEOUT_S)
            except Exception:
                log.exception("delivery consumer: a rebalance listener failed")

    # -- rebalance callbacks (inside consume() or close(), on the thread) -----------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        committed = self._start_offsets(consumer, partitions)
        tps = {self._tp(p.partition) for p in partitions if p.topic == self.topic}
        self.book.assign(tps, committed)
        from confluent_kafka import OFFSET_STORED

        for p in partitions:
            start = committed.get(self._tp(p.partition))
            p.offset = start if start is not None else OFFSET_STORED
        consumer.assign(partitions)
        self._paused = False
        log.info(
            "delivery consumer: assigned partitions %s of %s",
            sorted(tp.partition for tp in tps),
            self.topic,
        )
        self._notify(self.on_assigned, self.book.owned)

    def _start_offsets(self, consumer: Any, partitions: list[Any]) -> dict[TopicPartition, int]:
        """Per partition, the furthest commit of this group and of ``also_from_group``."""
        mine: dict[int, int | None] = {}
        theirs: dict[int, int | None] = {}
        try:
            for p in consumer.committed(partitions, timeout=LOOKUP_TIMEOUT_S):
                mine[p.partition] = p.offset
        except Exception as exc:
            log.warning("delivery consumer: reading committed offsets failed: %s", exc)
            return {}  # librdkafka reads the group's commits itself (OFFSET_STORED)
        if self.also_from_group:
            lookup = None
            try:
                lookup = _faust_lookup(self.settings, self.also_from_group)
                for p in lookup.committed(partitions, timeout=LOOKUP_TIMEOUT_S):
                    theirs[p.partition] = p.offset
            except Exception as exc:
                log.warning(
                    "delivery consumer: reading %s's committed offsets failed: %s",
                    self.also_from_group,
                    exc,
                )
            finally:
                if lookup is not None:
                    with contextlib.suppress(Exception):
                        lookup.close()
        out: dict[TopicPartition, int] = {}
        for p in partitions:
            start = start_offset(mine.get(p.partition), theirs.get(p.partition))
            if start is not None:
                out[self._tp(p.partition)] = start
        return out

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {self._tp(p.partition) for p in partitions if p.topic == self.topic}
        self._commit_revoked(tps)
        self._notify(self.on_revoked, tps)

    def _commit_revoked(self, tps: set[TopicPartition]) -> None:
        due = self.book.due(tps)
        self._commit(due)  # while still owned, so the book records it
        self.book.revoke(tps)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {self._tp(p.partition) for p in partitions if p.topic == self.topic}
        self.book.revoke(tps)  # already someone else's: nothing may be committed
        self._notify(self.on_revoked, tps)


def _confluent_consumer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer

    return Consumer(config)
