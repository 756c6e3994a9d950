"""The log indexer: follows the ``attempts`` topic into the delivery-log store.

A log node (a worker that serves the delivery log, or ``streams worker --role
log``) runs one :class:`LogIndexer`. It reads every partition of the topic
with a plain consumer (no group: each log node reads the whole topic), from
the positions committed in the store itself, and writes what it reads in
batches (:meth:`~streams.log.store.LogWriter.write`): one transaction per
batch, position included, so a restart resumes where the last batch ended,
without gaps or double rows.

Everything runs in a thread of its own: librdkafka fetches in its threads,
SQLite writes with the GIL released, and the event loop never waits for either.
Between batches the thread prunes what is older than ``STREAMS_LOG_RETENTION``
in bounded transactions (:meth:`~streams.log.store.LogWriter.prune`).

Memory is bounded in bytes: librdkafka's prefetch queue (``QUEUE_KIB``), one
fetch (``FETCH_BYTES``), one batch, and the store's page cache.

Faults: when the store cannot be written (full disk, corrupt file) the thread
stops, logs the error naming the file and the fix, and :attr:`LogIndexer.fault`
holds it; the log routes answer 503 with it. Delivery does not depend on this
thread and goes on. ``streams log rebuild`` (:func:`rebuild`) rebuilds the
store from the topic.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from streams.config import Settings
from streams.errors import StreamsError
from streams.log.store import LogWriter, StoreFault, WriteResult, store_files

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The most records written in one transaction, and how long a batch gathers them. A
#: transaction has a cost of its own whatever its size (the statistics and index pages of
#: every subscription it touches are written once), so a second's worth beats many small
#: ones. A batch gathers for BATCH_GATHER_S; on a busy topic (it holds BATCH_BUSY_RECORDS
#: by then) it goes on to BATCH_GATHER_BUSY_S: at 5,000 attempts/s into a store of 10
#: million, 10% less CPU per attempt through the indexer and 30% less in the writer
#: alone (docs/benchmarks.md, "Larger batches on a busy topic"). The log lags the topic
#: by about the gather time: 2 s, 5 s while more than 2,500 attempts/s arrive.
BATCH_RECORDS = 50_000
BATCH_GATHER_S = 2.0
BATCH_BUSY_RECORDS = 5_000
BATCH_GATHER_BUSY_S = 5.0
#: The longest one poll of the consumer waits.
BATCH_WAIT_S = 0.5
#: librdkafka's prefetch queue and the largest fetch, the bounds of the consumer's memory.
QUEUE_KIB = 16 * 1024
FETCH_BYTES = 8 * 1024 * 1024
#: A fetch waits for this much data (or BATCH_WAIT_S): fewer, larger fetches.
FETCH_MIN_BYTES = 256 * 1024
#: How often the thread prunes, and the most time one pruning takes between batches.
PRUNE_EVERY_S = 60.0
PRUNE_BUDGET_S = 0.25
PRUNE_BATCH = 1000
#: How often the lag is measured and new partitions are looked for.
WATCH_EVERY_S = 5.0
#: How long to wait for the topic to exist before each new look.
TOPIC_RETRY_S = 5.0
#: How long to wait after a Kafka error before a new consumer starts.
KAFKA_RETRY_S = 2.0
#: Kafka calls that wait (metadata, watermarks) wait at most this long at a time, and
#: check the stop signal in between: a stopping worker never waits a call's whole timeout.
STOP_CHECK_S = 0.5
#: Skipped records logged one by one (position and reason); then only counted.
MAX_SKIP_LOGS = 100


class StoreLocked(StreamsError):
    """Another process (a running log node, a rebuild) writes this store."""


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold the store's lock file for as long as this writes it: two writers would
    each think they hold the only positions, and store every attempt twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StoreLocked(
                f"the delivery-log store {path} is in use by process {holder} (a running log "
                "node or rebuild): stop it first, or give this one another STREAMS_LOG_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def consumer_config(settings: Settings) -> dict[str, Any]:
    from streams.kafka.security import librdkafka_config

    return {
        **librdkafka_config(settings),
        "bootstrap.servers": settings.kafka_bootstrap,
        # Required by librdkafka; never joined: partitions are assigned, not subscribed.
        "group.id": f"{settings.app_id}-log-{uuid.uuid4().hex[:8]}",
        "client.id": f"{settings.app_id}-log-indexer",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Records removed by retention before they were read: start at the oldest left.
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.min.bytes": FETCH_MIN_BYTES,
        "fetch.wait.max.ms": int(BATCH_WAIT_S * 1000),
        "fetch.max.bytes": FETCH_BYTES,
        "max.partition.fetch.bytes": max(settings.max_record_bytes, 1_048_576),
        "queued.max.messages.kbytes": QUEUE_KIB,
        "receive.message.max.bytes": FETCH_BYTES + 1_048_576,
    }


ConsumerFactory = Callable[[dict[str, Any]], Any]


def _confluent_consumer(config: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer

    return Consumer(config)


@dataclass
class IndexerStats:
    attempts: int = 0
    deliveries: int = 0
    skipped: int = 0
    duplicates: int = 0
    batches: int = 0
    pruned: int = 0
    lag: int | None = None  # records in the topic not indexed yet (None: not measured)
    busy_s: float = 0.0  # thread CPU time spent
    filter_build_s: float = 0.0  # CPU time the store's key filter took when it opened
    filter_loaded: bool = False  # as the last log node to stop cleanly saved it
    positions: dict[int, int] = field(default_factory=dict)

    def add(self, result: WriteResult) -> None:
        self.attempts += result.attempts
        self.deliveries += result.deliveries
        self.skipped += result.skipped
        self.duplicates += result.duplicates
        self.batches += 1


def gather_limit_s(held: int) -> float:
    """How long a batch that holds ``held`` records may go on gathering, from its start:
    longer on a busy topic, where a transaction's own cost is shared by more records."""
    return BATCH_GATHER_BUSY_S if held >= BATCH_BUSY_RECORDS else BATCH_GATHER_S


class LogIndexer:
    """The thread that keeps the store up to date with the attempts topic."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        path: Path,
        *,
        consumer_factory: ConsumerFactory = _confluent_consumer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.path = path
        self.stats = IndexerStats()
        #: Why the indexer stopped (the store cannot be used); None while it works.
        self.fault: str | None = None
        #: What it waits for (the topic to exist), for the operator; None when running.
        self.waiting: str | None = "starting"
        #: Set once the store holds the topic up to the end offsets seen at start.
        self.caught_up = threading.Event()
        self._consumer_factory = consumer_factory
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="log-indexer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def problem(self) -> str | None:
        """Why the log cannot be served from this node, or None."""
        return self.fault

    def _main(self) -> None:
        cpu0 = time.thread_time()
        from confluent_kafka import KafkaException

        try:
            with store_lock(self.path):
                writer = LogWriter(self.path, self.topic)
                self.stats.filter_build_s = writer.filter_build_s
                self.stats.filter_loaded = writer.filter_loaded
                log.info(
                    "log indexer: store open; its key filter %s in %.1f s of CPU",
                    "loaded as the last log node saved it" if writer.filter_loaded else "built",
                    writer.filter_build_s,
                )
                try:
                    # Kafka's errors pass (a leader moving, a broker restarting): start a
                    # new consumer at the stored positions. The store's do not.
                    while not self._stop.is_set():
                        try:
                            self._run(writer)
                        except KafkaException as exc:
                            self.waiting = f"Kafka: {exc}; retrying in {KAFKA_RETRY_S:g}s"
                            log.warning("log indexer: %s", self.waiting)
                            self._stop.wait(KAFKA_RETRY_S)
                finally:
                    writer.close()
        except (StoreFault, StoreLocked) as exc:
            self._failed(str(exc))
        except Exception as exc:
            self._failed(
                f"the log indexer stopped: {exc!r}. Delivery goes on; restart this log node "
                f"(the store {self.path} resumes where it stopped)"
            )
        finally:
            self.stats.busy_s = time.thread_time() - cpu0

    def _failed(self, message: str) -> None:
        self.fault = message
        self.waiting = None
        log.error("delivery log unavailable: %s", message)

    # -- the loop ------------------------------------------------------------------------

    def _run(self, writer: LogWriter) -> None:
        consumer = self._consumer_factory(consumer_config(self.settings))
        try:
            partitions = self._await_topic(consumer)
            if partitions is None:
                return  # stopped while waiting
            ends = self._assign(consumer, writer, partitions)
            self.waiting = None
            log.info(
                "log indexer: following %s (%d partitions) into %s",
                self.topic,
                len(partitions),
                self.path,
            )
            next_prune = self._clock()
            next_watch = 0.0
            cpu0 = time.thread_time()
            while not self._stop.is_set():
                batch, records = self._gather(consumer)
                if records:
                    self._add(writer.write(records))
                self.stats.positions = writer.positions()
                if (
                    not batch
                    and not self.caught_up.is_set()
                    and _reached(consumer, ends, self.topic, self.stats.positions)
                ):
                    log.info("log indexer: caught up (%d attempts)", self.stats.attempts)
                    self.caught_up.set()
                now = self._clock()
                if now >= next_prune and not self._prune(writer, now):
                    next_prune = now + PRUNE_EVERY_S
                if time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCH_EVERY_S
                    self._watch(consumer, writer, partitions)
                self.stats.busy_s = time.thread_time() - cpu0
        finally:
            consumer.close()

    def _add(self, result: WriteResult) -> None:
        """Count a batch; log each record it skipped (bounded), as the state readers do.

        Skipped records stay in the topic and in the store's ``skipped`` table; they are
        counted in ``streams_skipped_state_records_total{reader="attempts"}``."""
        before = self.stats.skipped
        self.stats.add(result)
        for n, (partition, offset, reason) in enumerate(result.skips, start=before + 1):
            if n <= MAX_SKIP_LOGS:
                log.error(
                    "log indexer: skipped the record at %s[%d]@%d (%s); it stays in the topic",
                    self.topic,
                    partition,
                    offset,
                    reason,
                )
            elif n == MAX_SKIP_LOGS + 1:
                log.error("log indexer: more records skipped; not logging each any more")

    def _waiting(self, call: Callable[[float], T], timeout_s: float) -> T:
        """``call(timeout)`` in slices of STOP_CHECK_S while it times out, until it
        answers; its timeout is raised once ``timeout_s`` passed or the indexer is
        stopping, any other error at once."""
        from confluent_kafka import KafkaError, KafkaException

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return call(max(0.01, min(STOP_CHECK_S, deadline - time.monotonic())))
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                timed_out = isinstance(error, KafkaError) and error.code() == KafkaError._TIMED_OUT
                if not timed_out or self._stop.is_set() or time.monotonic() >= deadline:
                    raise

    def _gather(
        self, consumer: Any, clock: Callable[[], float] = time.monotonic
    ) -> tuple[bool, list[tuple[int, int, bytes | None]]]:
        """Records for one transaction: up to BATCH_RECORDS, gathered for at most
        :func:`gather_limit_s` from the start; and whether the topic had anything at all."""
        records: list[tuple[int, int, bytes | None]] = []
        seen = False
        start = clock()
        while len(records) < BATCH_RECORDS and not self._stop.is_set():
            wait = min(BATCH_WAIT_S, start + gather_limit_s(len(records)) - clock())
            if wait <= 0:
                break
            batch = consumer.consume(BATCH_RECORDS - len(records), wait)
            if not batch:
                break  # caught up: write what there is now
            seen = True
            for msg in batch:
                err = msg.error()
                if err is None:
                    records.append((msg.partition(), msg.offset(), msg.value()))
                else:
                    log.warning("log indexer: %s", err)
        return seen, records

    def _await_topic(self, consumer: Any) -> list[int] | None:
        """The topic's partitions, waiting (and saying so) while it does not exist."""
        while not self._stop.is_set():
            try:
                meta = self._waiting(lambda t: consumer.list_topics(self.topic, timeout=t), 10)
                found = meta.topics.get(self.topic)
                if found is not None and found.error is None and found.partitions:
                    return sorted(found.partitions)
                problem = "does not exist"
            except Exception as exc:  # broker unreachable: librdkafka keeps trying
                problem = f"cannot be read ({exc})"
            self.waiting = (
                f"the topic {self.topic} {problem}: run `streams topics create` (same "
                "STREAMS_TOPIC_PREFIX) or check the broker"
            )
            log.warning("log indexer: %s; retrying in %gs", self.waiting, TOPIC_RETRY_S)
            self._stop.wait(TOPIC_RETRY_S)
        return None

    def _assign(self, consumer: Any, writer: LogWriter, partitions: list[int]) -> dict[int, int]:
        """Start each partition at its stored position; return the end offsets now."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = writer.positions()
        ends: dict[int, int] = {}
        assign = []
        for p in partitions:
            tp = TopicPartition(self.topic, p)

            def watermarks(t: float, tp: Any = tp) -> tuple[int, int]:
                found: tuple[int, int] = consumer.get_watermark_offsets(tp, timeout=t)
                return found

            low, high = self._waiting(watermarks, 10)
            ends[p] = high
            start = stored.get(p)
            if start is not None and start > high:
                raise StoreFault(
                    f"the delivery-log store {self.path} has read {self.topic}[{p}] up to "
                    f"offset {start}, but the topic ends at {high}: the topic was deleted and "
                    "created again. Stop this log node and run `streams log rebuild`."
                )
            if start is not None and start < low:
                log.warning(
                    "log indexer: %d attempts of %s[%d] were removed by retention before "
                    "they were indexed (offsets %d to %d)",
                    low - start,
                    self.topic,
                    p,
                    start,
                    low - 1,
                )
            assign.append(
                TopicPartition(self.topic, p, start if start is not None else OFFSET_BEGINNING)
            )
        consumer.assign(assign)
        return ends

    def _watch(self, consumer: Any, writer: LogWriter, partitions: list[int]) -> None:
        """Measure the lag; follow partitions added to the topic since the start."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        positions = writer.positions()
        lag = 0
        try:
            for p in partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=5, cached=True
                )
                if high >= 0:
                    lag += max(0, high - positions.get(p, 0))
            meta = self._waiting(lambda t: consumer.list_topics(self.topic, timeout=t), 5)
        except Exception as exc:  # a measurement: try again at the next look
            log.debug("log indexer: lag not measured: %s", exc)
            return
        self.stats.lag = lag
        found = meta.topics.get(self.topic)
        added = sorted(set(found.partitions) - set(partitions)) if found is not None else []
        if added:
            consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in added]
            )
            partitions.extend(added)
            log.info("log indexer: following new partitions %s of %s", added, self.topic)

    def _prune(self, writer: LogWriter, now: float) -> bool:
        """Prune for at most PRUNE_BUDGET_S; True when there is more to prune."""
        deadline = time.monotonic() + PRUNE_BUDGET_S
        while time.monotonic() < deadline and not self._stop.is_set():
            result = writer.prune(now, self.settings.log_retention_s, PRUNE_BATCH)
            self.stats.pruned += result.deliveries
            if not result.more:
                return False
        return True


def _reached(
    consumer: Any, ends: dict[int, int], topic: str, stored: dict[int, int] | None = None
) -> bool:
    """Whether every partition is read up to ``ends``: stored that far, or the consumer
    is there (past markers, which are not records)."""
    from confluent_kafka import TopicPartition

    left = [p for p, end in ends.items() if (stored or {}).get(p, 0) < end]
    if not left:
        return True
    positions = consumer.position([TopicPartition(topic, p) for p in left])
    return all(tp.offset >= ends[tp.partition] for tp in positions)


# -- rebuild ------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    records: int
    attempts: int
    deliveries: int
    skipped: int
    seconds: float


def rebuild(
    settings: Settings,
    topic: str,
    path: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 24 * 3600.0,
    consumer_factory: ConsumerFactory = _confluent_consumer,
) -> RebuildResult:
    """Delete the store and index the topic again, up to its end when this starts.

    Refuses while a log node writes the store (its lock). ``progress(done, total)``
    is called after every batch, in records of the topic.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    started = time.monotonic()
    with store_lock(path):
        for f in store_files(path):
            f.unlink(missing_ok=True)
        writer = LogWriter(path, topic)
        consumer = consumer_factory(consumer_config(settings))
        try:
            meta = consumer.list_topics(topic, timeout=10)
            found = meta.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise StreamsError(
                    f"topic {topic} does not exist: run `streams topics create` (same "
                    "STREAMS_TOPIC_PREFIX)"
                )
            todo: dict[int, int] = {}
            total = 0
            for p in sorted(found.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    todo[p] = high
                    total += high - low
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
            done = attempts = deliveries = skipped = 0
            if progress is not None:
                progress(0, total)
            deadline = time.monotonic() + timeout_s
            while todo and time.monotonic() < deadline:
                records = []
                batch = consumer.consume(BATCH_RECORDS, BATCH_WAIT_S)
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    p, offset = msg.partition(), msg.offset()
                    if p in todo and offset < todo[p]:
                        records.append((p, offset, msg.value()))
                    if p in todo and offset >= todo[p] - 1:
                        del todo[p]
                if not batch:  # the last records of a partition may be markers, not records
                    for p in [p for p in todo if _reached(consumer, {p: todo[p]}, topic)]:
                        del todo[p]
                if records:
                    result = writer.write(records)
                    done += len(records)
                    attempts += result.attempts
                    deliveries += result.deliveries
                    skipped += result.skipped
                    if progress is not None:
                        progress(min(done, total), total)
            if todo:
                raise StreamsError(
                    f"the rebuild did not reach the end of {topic} within {timeout_s:g}s; "
                    "run it again"
                )
            for _ in range(1_000_000):  # bounded: each round deletes up to PRUNE_BATCH
                if not writer.prune(time.time(), settings.log_retention_s, PRUNE_BATCH).more:
                    break
        finally:
            consumer.close()
            writer.close()
    return RebuildResult(done, attempts, deliveries, skipped, time.monotonic() - started)
