"""The log indexer's loop: positions, faults, pruning, the lock, rebuild.

The consumer here is a stand-in with confluent-kafka's interface over an in-memory
topic, so these tests are about the loop's decisions; tests/integration/test_log.py
runs the same indexer against the real broker.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from streams.config import Settings
from streams.log import indexer as indexer_module
from streams.log.indexer import LogIndexer, StoreLocked, rebuild, store_lock
from streams.log.store import DeliveryQuery, LogReader, LogWriter, fault
from tests.unit.test_log_store import T0, Topic, attempt

TOPIC = "attempts"


@dataclass
class Msg:
    p: int
    o: int
    v: bytes | None

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def value(self) -> bytes | None:
        return self.v


class FakeConsumer:
    """confluent_kafka.Consumer's calls the indexer makes, over a :class:`Topic`."""

    def __init__(self, topic: Topic, *, exists: bool = True) -> None:
        self.topic = topic
        self.exists = exists
        self.assigned: dict[int, int] = {}
        self.assign_calls: list[dict[int, int]] = []
        self.closed = False

    def list_topics(self, name: str, timeout: float) -> Any:
        partitions = {p: object() for p in range(self.topic.partitions)} if self.exists else {}
        meta = type("T", (), {"error": None, "partitions": partitions})()
        return type("M", (), {"topics": {name: meta} if self.exists else {}})()

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.topic.logs[tp.partition])

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = {
            tp.partition: 0 if tp.offset == OFFSET_BEGINNING else tp.offset for tp in tps
        }
        self.assign_calls.append(dict(self.assigned))

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.assigned[tp.partition] = 0

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out = []
        for p, start in self.assigned.items():
            log = self.topic.logs[p]
            take = log[start : start + n - len(out)]
            out.extend(Msg(p, start + i, v) for i, v in enumerate(take))
            self.assigned[p] = start + len(take)
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.assigned[tp.partition]) for tp in tps]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"STREAMS_LOG_RETENTION": "30d"})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "attempts.sqlite3"


def run_until(indexer: LogIndexer, done: Any, timeout: float = 10.0) -> None:
    indexer.start()
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and indexer.running:
        time.sleep(0.01)
    indexer.stop()
    assert not indexer.running


def ids(path: Path) -> list[str]:
    reader = LogReader(path)
    try:
        return sorted(r["delivery_id"] for r in reader.page(DeliveryQuery(limit=1000)).data)
    finally:
        reader.close()


def test_the_indexer_stores_the_topic_and_says_when_it_caught_up(
    settings: Settings, path: Path
) -> None:
    topic = Topic()
    for n in range(30):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    topic.append(b"garbage", 1)
    consumer = FakeConsumer(topic)
    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: consumer)
    run_until(indexer, indexer.caught_up.is_set)
    assert indexer.caught_up.is_set()
    assert indexer.fault is None
    assert (indexer.stats.attempts, indexer.stats.skipped) == (30, 1)
    assert ids(path) == sorted(f"d{n}" for n in range(30))
    assert consumer.closed


def test_a_restarted_indexer_starts_at_the_stored_positions(settings: Settings, path: Path) -> None:
    topic = Topic()
    for n in range(20):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    first = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(topic))
    run_until(first, first.caught_up.is_set)
    stored = first.stats.positions
    assert sum(stored.values()) == 20
    for n in range(20, 25):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    consumer = FakeConsumer(topic)
    second = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: consumer)
    run_until(second, second.caught_up.is_set)
    assert consumer.assign_calls[0] == stored  # resumed, not from the beginning
    assert second.stats.attempts == 5
    assert ids(path) == sorted(f"d{n}" for n in range(25))


def test_a_kafka_error_is_retried_with_a_new_consumer(
    settings: Settings, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "KAFKA_RETRY_S", 0.01)
    topic = Topic()
    for n in range(10):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    made: list[FakeConsumer] = []

    class NotLeaderOnce(FakeConsumer):
        def get_watermark_offsets(
            self, tp: TopicPartition, timeout: float, cached: bool = False
        ) -> tuple[int, int]:
            if len(made) == 1:  # the first consumer: the partition's leader is moving
                raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
            return super().get_watermark_offsets(tp, timeout, cached)

    def factory(_: Any) -> FakeConsumer:
        made.append(NotLeaderOnce(topic))
        return made[-1]

    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=factory)
    run_until(indexer, indexer.caught_up.is_set)
    assert indexer.fault is None
    assert len(made) == 2
    assert made[0].closed
    assert ids(path) == sorted(f"d{n}" for n in range(10))


def test_a_recreated_topic_stops_the_indexer_with_the_fix(settings: Settings, path: Path) -> None:
    topic = Topic()
    for n in range(10):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    first = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(topic))
    run_until(first, first.caught_up.is_set)
    empty = Topic()  # deleted and created again: offsets start at 0
    second = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(empty))
    run_until(second, lambda: second.fault is not None)
    assert second.fault is not None
    assert "created again" in second.fault
    assert "streams log rebuild" in second.fault


def test_a_store_that_cannot_be_written_stops_the_indexer_naming_the_file(
    settings: Settings, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = Topic()
    topic.append(attempt("d1"))

    def full(self: LogWriter, records: Any) -> Any:
        raise fault(self.path, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(LogWriter, "write", full)
    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(topic))
    run_until(indexer, lambda: indexer.fault is not None)
    assert indexer.problem() == indexer.fault
    assert indexer.fault is not None
    assert str(path) in indexer.fault
    assert "disk is full" in indexer.fault


def test_a_corrupt_store_stops_the_indexer_with_the_fix(settings: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 8192)
    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(Topic()))
    run_until(indexer, lambda: indexer.fault is not None)
    assert indexer.fault is not None
    assert "corrupt" in indexer.fault
    assert "streams log rebuild" in indexer.fault


def test_a_missing_topic_is_waited_for_and_said(
    settings: Settings, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "TOPIC_RETRY_S", 0.05)
    topic = Topic()
    topic.append(attempt("d1"))
    consumer = FakeConsumer(topic, exists=False)
    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: consumer)
    indexer.start()
    try:
        deadline = time.monotonic() + 5
        while "does not exist" not in (indexer.waiting or "") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "streams topics create" in (indexer.waiting or "")
        assert indexer.fault is None
        consumer.exists = True
        assert indexer.caught_up.wait(5)
        assert indexer.waiting is None
    finally:
        indexer.stop()


def test_the_indexer_prunes_what_is_older_than_the_retention(
    settings: Settings, path: Path
) -> None:
    topic = Topic()
    day = 86_400
    topic.append(attempt("old", 1, T0))
    topic.append(attempt("new", 1, T0 + 29 * day))
    indexer = LogIndexer(
        settings,
        TOPIC,
        path,
        consumer_factory=lambda _: FakeConsumer(topic),
        clock=lambda: T0 + 31 * day,
    )
    run_until(indexer, lambda: indexer.stats.pruned > 0)
    assert indexer.stats.pruned == 1
    assert ids(path) == ["new"]


def test_two_writers_of_one_store_are_refused(path: Path) -> None:
    with store_lock(path):
        with pytest.raises(StoreLocked, match="in use by process") as err, store_lock(path):
            pass
        assert str(path) in str(err.value)
    with store_lock(path):  # released
        pass


def test_an_indexer_on_a_store_in_use_reports_it(settings: Settings, path: Path) -> None:
    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(Topic()))
    with store_lock(path):
        run_until(indexer, lambda: indexer.fault is not None)
    assert "in use by process" in (indexer.fault or "")


def test_a_rebuild_replaces_the_store_with_the_topic_and_reports_progress(
    settings: Settings, path: Path
) -> None:
    topic = Topic()
    for n in range(40):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    w = LogWriter(path, TOPIC)
    w.write([(0, 0, attempt("stale", 1, T0).to_bytes())])  # not in the topic
    w.close()
    steps: list[tuple[int, int]] = []
    result = rebuild(
        settings,
        TOPIC,
        path,
        progress=lambda done, total: steps.append((done, total)),
        consumer_factory=lambda _: FakeConsumer(topic),
    )
    assert (result.records, result.attempts, result.deliveries) == (40, 40, 40)
    assert steps[0] == (0, 40)
    assert steps[-1] == (40, 40)
    assert ids(path) == sorted(f"d{n}" for n in range(40))


def test_a_rebuild_refuses_while_a_log_node_writes_the_store(
    settings: Settings, path: Path
) -> None:
    ready = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store_lock(path):
            ready.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert ready.wait(5)
        with pytest.raises(StoreLocked):
            rebuild(settings, TOPIC, path, consumer_factory=lambda _: FakeConsumer(Topic()))
    finally:
        release.set()
        holder.join(5)


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "log-indexer" and t.is_alive()]


def test_a_stop_ends_a_slow_kafka_call_within_its_slice(
    settings: Settings, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that does not answer: each metadata call times out after its slice, and a
    stop is seen between slices, not after the call's whole 10 s (a prompt SIGTERM)."""
    monkeypatch.setattr(indexer_module, "STOP_CHECK_S", 0.05)
    calls: list[float] = []

    class Silent(FakeConsumer):
        def list_topics(self, name: str, timeout: float) -> Any:
            calls.append(timeout)
            time.sleep(timeout)
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    indexer = LogIndexer(settings, TOPIC, path, consumer_factory=lambda _: Silent(Topic()))
    indexer.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    indexer.stop()
    assert not indexer.running
    assert time.monotonic() - started < 1.0
    assert max(calls) <= 0.05
    assert indexer.fault is None


# -- batching: how long a batch gathers -------------------------------------------------


@pytest.mark.parametrize(
    ("held", "limit"),
    [(0, 2.0), (1, 2.0), (4_999, 2.0), (5_000, 5.0), (49_999, 5.0)],
)
def test_a_batch_gathers_longer_once_it_holds_a_busy_topics_worth(held: int, limit: float) -> None:
    assert indexer_module.gather_limit_s(held) == limit


class SteadyStream:
    """A topic receiving ``rate`` records a second without a pause: each poll waits its
    whole timeout (on a clock of its own) and returns what arrived meanwhile."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.now = 100.0
        self.asked: list[int] = []
        self.offset = 0

    def clock(self) -> float:
        return self.now

    def consume(self, n: int, timeout: float) -> list[Msg]:
        self.asked.append(n)
        self.now += timeout
        got = min(n, round(self.rate * timeout))
        out = [Msg(0, self.offset + i, b"") for i in range(got)]
        self.offset += got
        return out


@pytest.mark.parametrize(
    ("rate", "records", "seconds"),
    [
        (200, 400, 2.0),  # a quiet topic: the log lags it by 2 s at most
        (2_000, 4_000, 2.0),  # under BATCH_BUSY_RECORDS at 2 s
        (4_000, 20_000, 5.0),  # busy: one transaction for 5 s of records
        (40_000, 50_000, 1.5),  # at most BATCH_RECORDS, asked for no more than that
    ],
)
def test_a_batch_closes_at_its_time_or_size(
    settings: Settings, path: Path, rate: int, records: int, seconds: float
) -> None:
    stream = SteadyStream(rate)
    indexer = LogIndexer(settings, TOPIC, path)
    seen, batch = indexer._gather(stream, stream.clock)
    assert seen
    assert len(batch) == records
    assert stream.now - 100.0 == pytest.approx(seconds)
    # Each poll asks for what is left of BATCH_RECORDS, never more.
    held = 0
    for n in stream.asked:
        assert n == indexer_module.BATCH_RECORDS - held
        held += min(n, round(rate * indexer_module.BATCH_WAIT_S))
