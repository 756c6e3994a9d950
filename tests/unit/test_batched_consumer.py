"""The librdkafka delivery consumer's bookkeeping: what is committed, when, and what is skipped.

Fixed vectors for :class:`CommitBook`, :func:`start_offset` and :func:`flow`, and
:class:`BatchedConsumer` driven against a scripted stand-in for confluent-kafka's
``Consumer`` (the broker behaviour is covered by the integration tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.config import Settings
from streams.kafka.batched import (
    BatchedConsumer,
    BatchedEvent,
    CommitBook,
    consumer_config,
    flow,
    read_headers,
    start_offset,
)
from streams.kafka.commits import OrderedAcks

T = "p.deliveries"
P0, P1 = TopicPartition(T, 0), TopicPartition(T, 1)


# -- CommitBook -------------------------------------------------------------------------


def test_only_acked_positions_of_the_owning_generation_are_due() -> None:
    book = CommitBook()
    book.assign({P0, P1}, {P0: 10})
    gen = book.generation(P0)
    assert gen is not None
    assert book.due() == {}
    assert book.acked(P0, gen, 11)
    assert book.acked(P1, gen, 3)
    assert book.due() == {P0: 11, P1: 3}
    book.committed({P0: 11, P1: 3})
    assert book.due() == {}
    assert book.acked(P0, gen, 12)
    assert book.due() == {P0: 12}


def test_a_position_never_moves_back() -> None:
    book = CommitBook()
    book.assign({P0}, {})
    gen = book.generation(P0)
    assert gen is not None
    book.acked(P0, gen, 20)
    book.acked(P0, gen, 15)
    assert book.due() == {P0: 20}


def test_the_committed_start_is_not_due_again() -> None:
    book = CommitBook()
    book.assign({P0}, {P0: 7})
    gen = book.generation(P0)
    assert gen is not None
    book.acked(P0, gen, 7)
    assert book.due() == {}


def test_revoke_returns_what_is_left_and_later_acks_of_it_are_ignored() -> None:
    book = CommitBook()
    book.assign({P0, P1}, {})
    old = book.generation(P0)
    assert old is not None
    book.acked(P0, old, 5)
    assert book.revoke({P0}) == {P0: 5}
    assert not book.owns(P0, old)
    assert not book.acked(P0, old, 9)  # a record of the old generation finishing late
    assert book.due() == {}
    # Assigned again: a new generation; the old one's acks still count for nothing.
    book.assign({P0}, {P0: 5})
    new = book.generation(P0)
    assert new is not None
    assert new != old
    assert not book.acked(P0, old, 9)
    assert book.acked(P0, new, 6)
    assert book.due() == {P0: 6}
    assert book.owned == {P0, P1}


@pytest.mark.parametrize(
    ("commits", "start"),
    [
        ((None, None), None),
        ((-1001, None), None),  # OFFSET_INVALID: no commit
        ((5, None), 5),
        ((None, 8), 8),
        ((5, 8), 8),
        ((9, 8), 9),
        ((0, -1), 0),
    ],
)
def test_start_offset_is_the_furthest_valid_commit(
    commits: tuple[int | None, int | None], start: int | None
) -> None:
    assert start_offset(*commits) == start


@pytest.mark.parametrize(
    ("backlog", "paused", "after"),
    [
        (0, False, False),
        (3999, False, False),
        (4000, False, True),
        (2000, True, True),  # hysteresis: still above the resume mark
        (1001, True, True),
        (1000, True, False),
        (0, True, False),
    ],
)
def test_flow_pauses_at_the_high_mark_and_resumes_at_the_low(
    backlog: int, paused: bool, after: bool
) -> None:
    assert flow(backlog, paused) is after


def test_config_never_commits_on_its_own_and_uses_the_stage_fetch_settings() -> None:
    settings = Settings.from_env(
        {"STREAMS_KAFKA_FETCH_MAX_WAIT_MS": "50", "STREAMS_KAFKA_FETCH_MIN_BYTES": "10"}
    )
    config = consumer_config(settings, "app-deliver")
    assert config["group.id"] == "app-deliver"
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert config["fetch.wait.max.ms"] == 50
    assert config["fetch.min.bytes"] == 10


# -- BatchedConsumer against a stand-in -----------------------------------------------------


class FakeError:
    def __init__(self, fatal: bool) -> None:
        self._fatal = fatal

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return "fatal" if self._fatal else "transient"


class FakeRecord:
    def __init__(
        self, partition: int, offset: int, value: bytes = b"v", error: FakeError | None = None
    ) -> None:
        self._partition = partition
        self._offset = offset
        self._value = value
        self._error = error

    def error(self) -> FakeError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_123)

    def key(self) -> bytes:
        return b"k"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("h", b"1")]

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return T


class FakeKafkaTP:
    def __init__(self, topic: str, partition: int, offset: int = -1001) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset


class FakeConsumer:
    """Plays a script: each consume() call pops the next step (records, or a callable)."""

    def __init__(self, script: list[Any], committed: dict[int, int] | None = None) -> None:
        self.script = list(script)
        self.commits: list[dict[int, int]] = []
        self.assigned: list[tuple[int, int]] = []
        self.paused: list[int] = []
        self.closed = False
        self._committed = committed or {}
        self.on_assign: Any = None
        self.on_revoke: Any = None
        self.lock = threading.Lock()

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def consume(self, num: int, timeout: float) -> list[Any]:
        with self.lock:
            step = self.script.pop(0) if self.script else []
        if callable(step):
            return step(self) or []
        if not step:
            time.sleep(min(timeout, 0.005))
        return list(step)

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [
            FakeKafkaTP(p.topic, p.partition, self._committed.get(p.partition, -1001))
            for p in partitions
        ]

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = [(p.partition, p.offset) for p in partitions]

    def assignment(self) -> list[Any]:
        return [FakeKafkaTP(T, p) for p, _ in self.assigned]

    def pause(self, partitions: list[Any]) -> None:
        self.paused = [p.partition for p in partitions]

    def resume(self, partitions: list[Any]) -> None:
        self.paused = []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append({o.partition: o.offset for o in offsets})

    def close(self) -> None:
        self.closed = True
        if self.on_revoke is not None and self.assigned:
            self.on_revoke(self, [FakeKafkaTP(T, p) for p, _ in self.assigned])


def assign(*partitions: int) -> Any:
    def step(consumer: FakeConsumer) -> None:
        consumer.on_assign(consumer, [FakeKafkaTP(T, p) for p in partitions])

    return step


def revoke(*partitions: int) -> Any:
    def step(consumer: FakeConsumer) -> None:
        consumer.on_revoke(consumer, [FakeKafkaTP(T, p) for p in partitions])
        consumer.assigned = [(p, o) for p, o in consumer.assigned if p not in partitions]

    return step


async def eventually(condition: Any, timeout_s: float = 5.0) -> None:
    """Wait (bounded) for what the consumer's thread does: there is no event to await."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def run_consumer(
    fake: FakeConsumer, handle: Any, until: Any, timeout_s: float = 5.0
) -> BatchedConsumer:
    batches: list[list[BatchedEvent]] = []
    fatal: list[BaseException] = []

    def on_batch(events: list[BatchedEvent]) -> None:
        batches.append(events)
        for event in events:
            handle(consumer, event)
        consumer.taken(len(events))

    consumer = BatchedConsumer(
        Settings.from_env({}),
        T,
        "app-deliver",
        on_batch=on_batch,
        on_fatal=fatal.append,
        consumer_factory=lambda config: fake,
    )
    consumer.start(asyncio.get_running_loop())
    await eventually(lambda: until(consumer, batches, fatal), timeout_s)
    await consumer.stop(5.0)
    consumer.fatal_seen = fatal  # type: ignore[attr-defined]
    consumer.batches_seen = batches  # type: ignore[attr-defined]
    return consumer


def test_records_arrive_as_engine_messages_and_acks_are_committed_in_order() -> None:
    fake = FakeConsumer(
        [assign(0, 1), [FakeRecord(0, 10), FakeRecord(0, 11), FakeRecord(1, 4)]], {0: 10}
    )
    seen: list[BatchedEvent] = []

    async def scenario() -> None:
        acks = OrderedAcks(max_pending=10, on_fatal=lambda exc: None)
        done = asyncio.Event()

        def handle(consumer: BatchedConsumer, event: BatchedEvent) -> None:
            seen.append(event)

        async def drive() -> None:
            await eventually(lambda: len(seen) >= 3)
            tickets = [await acks.track(e) for e in seen]
            # Finish out of order: 11 first (not committable alone), then 10, then p1's 4.
            acks.done(tickets[1])
            acks.done(tickets[0])
            acks.done(tickets[2])
            await asyncio.sleep(1.3)  # one commit interval
            done.set()

        driver = asyncio.ensure_future(drive())
        await run_consumer(fake, handle, lambda c, b, f: done.is_set())
        await driver

    asyncio.run(scenario())
    assert fake.assigned == [(0, 10), (1, -1000)]  # p0 at its commit, p1 from the group (none)
    message = seen[0].message
    assert (message.topic, message.partition, message.offset) == (T, 0, 10)
    assert message.timestamp == pytest.approx(1_700_000_000.123)
    assert message.key == b"k"
    assert message.headers == [("h", b"1")]
    assert seen[0].value == b"v"
    assert message.tp == P0
    merged: dict[int, int] = {}
    for commit in fake.commits:
        merged.update(commit)
    assert merged == {0: 12, 1: 5}
    assert fake.closed


def test_on_revoke_commits_what_is_acked_and_records_of_the_old_generation_are_dropped() -> None:
    events: list[BatchedEvent] = []

    def ack_first_then_revoke(consumer: FakeConsumer) -> None:
        # The loop acked p0@20 before the revoke arrived; p0@21 is still in flight.
        deadline = time.monotonic() + 2
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        events[0].ack()
        consumer.on_revoke(consumer, [FakeKafkaTP(T, 0)])
        consumer.assigned = []

    fake = FakeConsumer(
        [assign(0), [FakeRecord(0, 20), FakeRecord(0, 21)], lambda c: None, ack_first_then_revoke]
    )

    async def scenario() -> BatchedConsumer:
        return await run_consumer(
            fake,
            lambda consumer, event: events.append(event),
            lambda c, b, f: not fake.script and len(events) == 2,
        )

    consumer = asyncio.run(scenario())
    assert {0: 21} in fake.commits  # committed at the revoke
    assert not events[1].ack()  # finished after the revoke: ignored, the next owner re-reads it
    assert not consumer.book.owns(P0, events[1].generation)
    assert all(c == {0: 21} for c in fake.commits)


def test_a_transient_error_record_is_skipped_and_a_fatal_one_stops_the_worker() -> None:
    events: list[BatchedEvent] = []
    fake = FakeConsumer(
        [
            assign(0),
            [FakeRecord(0, 1, error=FakeError(False)), FakeRecord(0, 2)],
            lambda c: None,
            [FakeRecord(0, 3, error=FakeError(True))],
        ]
    )

    async def scenario() -> BatchedConsumer:
        return await run_consumer(
            fake, lambda consumer, event: events.append(event), lambda c, b, f: bool(f)
        )

    consumer = asyncio.run(scenario())
    assert [e.message.offset for e in events] == [2]
    assert len(consumer.fatal_seen) == 1  # type: ignore[attr-defined]
    assert fake.closed


def test_the_thread_pauses_while_the_loop_has_not_taken_its_records() -> None:
    many = [FakeRecord(0, i) for i in range(500)]
    pauses: list[list[int]] = []

    def look(consumer: FakeConsumer) -> None:
        pauses.append(list(consumer.paused))

    script: list[Any] = [assign(0)] + [list(many) for _ in range(9)] + [look]
    fake = FakeConsumer(script)
    held: list[BatchedEvent] = []

    async def scenario() -> BatchedConsumer:
        batches: list[list[BatchedEvent]] = []

        def on_batch(events: list[BatchedEvent]) -> None:
            batches.append(events)
            held.extend(events)  # never taken: the loop is "blocked"

        consumer = BatchedConsumer(
            Settings.from_env({}),
            T,
            "app-deliver",
            on_batch=on_batch,
            on_fatal=lambda exc: None,
            consumer_factory=lambda config: fake,
        )
        consumer.start(asyncio.get_running_loop())
        await eventually(lambda: bool(pauses))
        assert pauses == [[0]]
        assert consumer.backlog == 4500
        consumer.taken(4000)  # the loop caught up: resumed on the next round
        await eventually(lambda: not fake.paused)
        assert fake.paused == []
        await consumer.stop(5.0)
        return consumer

    asyncio.run(scenario())
    assert len(held) == 4500  # nothing returned by consume() was dropped


class UnreadableHeaders(FakeRecord):
    def headers(self) -> list[tuple[str, bytes]]:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


def test_headers_that_cannot_be_read_are_left_out_not_fatal() -> None:
    assert read_headers(FakeRecord(0, 1)) == [("h", b"1")]
    assert read_headers(UnreadableHeaders(0, 1)) is None
