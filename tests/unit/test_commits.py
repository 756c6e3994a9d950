"""OrderedAcks: acks in offset order per partition, back-pressure, and failure."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from streams.kafka.commits import OrderedAcks, Ticket


@dataclass(frozen=True)
class FakeMessage:
    tp: str
    offset: int


@dataclass
class FakeEvent:
    message: FakeMessage
    log: list[tuple[str, int]] = field(repr=False)

    def ack(self) -> bool:
        self.log.append((self.message.tp, self.message.offset))
        return True


class Fatal:
    def __init__(self) -> None:
        self.calls: list[BaseException] = []

    def __call__(self, exc: BaseException) -> None:
        self.calls.append(exc)


class Harness:
    def __init__(self, max_pending: int = 100, max_unacked: int | None = None) -> None:
        self.acked: list[tuple[str, int]] = []
        self.fatal = Fatal()
        self.acks = OrderedAcks(
            max_pending=max_pending, max_unacked=max_unacked, on_fatal=self.fatal
        )

    def event(self, tp: str, offset: int) -> FakeEvent:
        return FakeEvent(FakeMessage(tp, offset), self.acked)

    async def track(self, tp: str, offset: int) -> Ticket:
        return await asyncio.wait_for(self.acks.track(self.event(tp, offset)), 1.0)


async def test_out_of_order_completion_acks_only_the_contiguous_done_prefix() -> None:
    h = Harness()
    tickets = [await h.track("p0", offset) for offset in range(5)]

    h.acks.done(tickets[2])
    h.acks.done(tickets[1])
    assert h.acked == []
    assert h.acks.pending == 5

    h.acks.done(tickets[0])
    assert h.acked == [("p0", 0), ("p0", 1), ("p0", 2)]
    assert h.acks.acked == 3
    assert h.acks.pending == 2

    h.acks.done(tickets[4])
    assert h.acked == [("p0", 0), ("p0", 1), ("p0", 2)]

    h.acks.done(tickets[3])
    assert h.acked == [("p0", 0), ("p0", 1), ("p0", 2), ("p0", 3), ("p0", 4)]
    assert h.acks.acked == 5
    assert h.acks.pending == 0


async def test_in_order_completion_acks_each_event_at_once() -> None:
    h = Harness()
    tickets = [await h.track("p0", offset) for offset in (7, 8, 9)]
    for ticket in tickets:
        h.acks.done(ticket)
        assert h.acked[-1] == ("p0", ticket.event.message.offset)
    assert h.acked == [("p0", 7), ("p0", 8), ("p0", 9)]


async def test_partitions_are_acked_independently() -> None:
    h = Harness()
    a10 = await h.track("a", 10)
    b5 = await h.track("b", 5)
    a11 = await h.track("a", 11)
    b6 = await h.track("b", 6)

    # A pending head on partition a does not hold back partition b.
    h.acks.done(a11)
    h.acks.done(b5)
    h.acks.done(b6)
    assert h.acked == [("b", 5), ("b", 6)]

    h.acks.done(a10)
    assert h.acked == [("b", 5), ("b", 6), ("a", 10), ("a", 11)]


async def test_track_waits_at_max_pending_and_resumes_once_an_event_is_done() -> None:
    h = Harness(max_pending=2)
    first = await h.track("p0", 0)
    second = await h.track("p0", 1)

    third = asyncio.ensure_future(h.acks.track(h.event("p0", 2)))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(third), 0.05)
        assert h.acks.pending == 2

        # Done but not acked (its head is pending) frees room for work: a slow head
        # must not hold the whole window with finished events.
        h.acks.done(second)
        ticket = await asyncio.wait_for(third, 1.0)
        assert ticket.event.message.offset == 2
        assert h.acked == []
        assert h.acks.pending == 3
        assert h.acks.working == 2

        h.acks.done(first)
        assert h.acked == [("p0", 0), ("p0", 1)]
        assert h.acks.pending == 1
    finally:
        third.cancel()


async def test_track_waits_at_max_unacked_until_the_slow_head_is_acked() -> None:
    h = Harness(max_pending=2, max_unacked=3)
    head = await h.track("p0", 0)
    for offset in (1, 2):
        h.acks.done(await h.track("p0", offset))
    assert h.acks.working == 1
    assert h.acks.pending == 3

    blocked = asyncio.ensure_future(h.acks.track(h.event("p0", 3)))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(blocked), 0.05)
        h.acks.done(head)
        assert h.acked == [("p0", 0), ("p0", 1), ("p0", 2)]
        await asyncio.wait_for(blocked, 1.0)
    finally:
        blocked.cancel()


async def test_done_twice_frees_room_once() -> None:
    h = Harness(max_pending=1)
    only = await h.track("p0", 0)
    h.acks.done(only)
    h.acks.done(only)
    assert h.acks.working == 0
    await h.track("p0", 1)
    blocked = asyncio.ensure_future(h.acks.track(h.event("p0", 2)))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(blocked), 0.05)
    finally:
        blocked.cancel()


async def test_max_pending_counts_events_across_partitions() -> None:
    h = Harness(max_pending=2)
    await h.track("a", 0)
    b0 = await h.track("b", 0)
    blocked = asyncio.ensure_future(h.acks.track(h.event("c", 0)))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(blocked), 0.05)
        h.acks.done(b0)
        await asyncio.wait_for(blocked, 1.0)
    finally:
        blocked.cancel()


async def test_after_fail_nothing_more_is_acked_and_on_fatal_is_called_exactly_once() -> None:
    h = Harness()
    t0 = await h.track("p0", 0)
    t1 = await h.track("p0", 1)
    t2 = await h.track("p0", 2)
    h.acks.done(t0)
    assert h.acked == [("p0", 0)]

    first = RuntimeError("kafka refused an output")
    h.acks.fail(first)
    h.acks.done(t1)
    h.acks.done(t2)
    h.acks.fail(RuntimeError("a second failure"))

    assert h.acked == [("p0", 0)]
    assert h.acks.acked == 1
    assert h.fatal.calls == [first]
    assert h.acks.failed is first


async def test_finish_when_marks_the_ticket_done_when_the_work_succeeds() -> None:
    h = Harness()
    ticket = await h.track("p0", 0)

    async def confirmed() -> str:
        await asyncio.sleep(0)
        return "ok"

    future = h.acks.finish_when(ticket, confirmed())
    assert await asyncio.wait_for(future, 1.0) == "ok"
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert h.acked == [("p0", 0)]
    assert h.fatal.calls == []


async def test_finish_when_fails_when_the_work_raises() -> None:
    h = Harness()
    t0 = await h.track("p0", 0)
    t1 = await h.track("p0", 1)
    error = RuntimeError("the broker refused the record")

    async def refused() -> None:
        await asyncio.sleep(0)
        raise error

    future = h.acks.finish_when(t0, refused())
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(future, 1.0)
    await asyncio.sleep(0)
    assert h.fatal.calls == [error]
    assert h.acks.failed is error

    # The failed event stays un-acked, and so does everything after it.
    h.acks.done(t1)
    assert h.acked == []


async def test_finish_when_fails_when_the_work_is_cancelled() -> None:
    h = Harness()
    ticket = await h.track("p0", 0)
    loop = asyncio.get_running_loop()
    work: asyncio.Future[None] = loop.create_future()

    future = h.acks.finish_when(ticket, work)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(future, 1.0)
    await asyncio.sleep(0)

    assert len(h.fatal.calls) == 1
    assert isinstance(h.fatal.calls[0], asyncio.CancelledError)
    assert h.acked == []
    assert h.acks.failed is h.fatal.calls[0]


async def test_finish_when_with_a_gather_of_outputs_fails_if_any_output_fails() -> None:
    h = Harness()
    ticket = await h.track("p0", 0)
    loop = asyncio.get_running_loop()
    ok: asyncio.Future[None] = loop.create_future()
    bad: asyncio.Future[None] = loop.create_future()

    future = h.acks.finish_when(ticket, asyncio.gather(ok, bad))
    ok.set_result(None)
    error = OSError("delivery report: message timed out")
    bad.set_exception(error)
    with pytest.raises(OSError, match="timed out"):
        await asyncio.wait_for(future, 1.0)
    await asyncio.sleep(0)
    assert h.fatal.calls == [error]
    assert h.acked == []


async def test_a_record_refused_by_the_closed_output_stops_acking_without_a_crash() -> None:
    from streams.kafka.output import OutputClosed

    h = Harness()
    first = await h.track("p0", 0)
    second = await h.track("p0", 1)
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[None] = loop.create_future()
    refused.set_exception(OutputClosed("the worker's Kafka producer is closed"))
    h.acks.finish_when(first, refused)
    await asyncio.sleep(0)
    h.acks.done(second)
    # The worker is stopping: nothing more is acked (both are read again after the
    # restart), and it is not crashed on top of its stop (exit status 0, no CRITICAL).
    assert h.fatal.calls == []
    assert h.acked == []
    assert isinstance(h.acks.failed, OutputClosed)
