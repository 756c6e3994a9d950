"""A replay asked after an endpoint's breaker opened probes the endpoint (issue 17, item 14).

Replaying just after an endpoint recovered parked letters again as ``circuit
open ... no request sent``: the breaker left over from the outage skipped them,
and a subscription without retries dead-letters a skip at once. Fixed vectors
of the breaker first, then the engine on fakes (no Kafka, no HTTP).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from streams.delivery.engine import DeliveryEngine, SendResult
from streams.delivery.outcome import ErrorKind
from streams.delivery.request import PreparedRequest
from streams.kafka.commits import OrderedAcks
from streams.records import Attempt, DeadLetter, Delivery
from tests.unit.test_breaker import SUB, Clock, Event, FakePipeline, Sender, new

REFUSED = SendResult(status=None, error=ErrorKind.CONNECT_ERROR, detail="connection refused")

# -- the breaker ------------------------------------------------------------------------------


def opened_at_10() -> Any:
    b = new()  # threshold 3, open 5 s, at most 30 s
    for _ in range(3):
        b.record(10.0, tripping=True, probe=False)
    assert (b.open_until, b.opened_at) == (15.0, 10.0)
    return b


def test_a_replay_asked_after_the_breaker_opened_is_the_probe_at_once() -> None:
    b = opened_at_10()
    assert b.admit(11.0) == "skip"  # an ordinary delivery, before the open time ends
    assert b.admit(11.0, timeout_s=10.0, asked_at=10.5) == "probe"
    assert (b.probe_out, b.probe_until) == (True, 21.0)
    # While that probe is out, another replayed one waits for its verdict.
    assert b.admit(11.5, asked_at=10.5) == "wait"
    assert b.admit(11.5) == "skip"


def test_a_replay_asked_before_the_breaker_opened_is_skipped_as_before() -> None:
    b = opened_at_10()
    assert not b.predates(9.0)
    assert b.admit(11.0, asked_at=9.0) == "skip"
    assert not b.predates(None)


def test_a_failed_probe_is_news_after_the_replay_and_skips_it() -> None:
    b = opened_at_10()
    assert b.admit(11.0, asked_at=10.5) == "probe"
    assert b.record(12.0, tripping=True, probe=True) is True
    assert (b.opened_at, b.open_until) == (12.0, 22.0)
    assert b.admit(12.5, asked_at=10.5) == "skip"
    assert b.admit(12.5, asked_at=12.2) == "probe"  # a replay asked after that failure


def test_an_answer_closes_the_breaker_and_forgets_when_it_opened() -> None:
    b = opened_at_10()
    assert b.admit(11.0, asked_at=10.5) == "probe"
    b.record(11.2, tripping=False, probe=True)
    assert (b.closed, b.opened_at) == (True, None)
    assert b.admit(11.3, asked_at=10.5) == "send"


# -- the engine -------------------------------------------------------------------------------


@dataclass
class Message:
    offset: int
    timestamp: float  # seconds: when the record was written (a replay: when it was asked)
    topic: str = "p.deliveries"
    partition: int = 0

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


def record(n: int, *, replay_id: str | None = None, attempt: int = 1) -> bytes:
    return Delivery(
        delivery_id=f"msg_{n}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_1",
        body="{}",
        attempt=attempt,
        replay_id=replay_id,
    ).to_bytes()


@pytest.fixture
def no_retries() -> tuple[FakePipeline, Sender, Clock, DeliveryEngine, OrderedAcks]:
    """An engine whose subscription has no retries: a skipped delivery is dead-lettered."""
    p, sender, clock = FakePipeline(), Sender(), Clock()
    p.subscriptions["sub_1"] = dataclasses.replace(SUB, retry_schedule=[])
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=clock)  # type: ignore[arg-type]
    return p, sender, clock, eng, OrderedAcks(max_pending=10, on_fatal=lambda exc: None)


async def submit(eng: DeliveryEngine, acks: OrderedAcks, raw: bytes, message: Message) -> Any:
    ticket = await acks.track(Event(message))  # type: ignore[arg-type]
    await eng.handle(raw, message, ticket, acks)
    return ticket


async def settle(*tickets: Any) -> None:
    for _ in range(200):
        if all(t.done for t in tickets):
            return
        await asyncio.sleep(0)
    raise AssertionError("deliveries not finished")


async def trip(eng: DeliveryEngine, acks: OrderedAcks, sender: Sender, clock: Clock) -> None:
    """Two refused connections (STREAMS_BREAKER_FAILURES=2 here): the breaker opens at 1000."""
    sender.results = [REFUSED, REFUSED]
    for n in (0, 1):
        await settle(await submit(eng, acks, record(n), Message(n, clock.now)))
    assert eng.breakers["sub_1"].opened_at == clock.now


def letters(p: FakePipeline) -> list[DeadLetter]:
    return [DeadLetter.from_bytes(v) for t, v in p.sent if t == "p.deliveries.dlq" and v]


def attempts(p: FakePipeline) -> list[Attempt]:
    return [Attempt.from_bytes(v) for t, v in p.sent if t == "p.attempts" and v]


async def test_a_replay_just_after_recovery_probes_instead_of_parking_again(
    no_retries: Any,
) -> None:
    p, sender, clock, eng, acks = no_retries
    await trip(eng, acks, sender, clock)
    parked_before = len(letters(p))
    clock.now += 2  # the endpoint is back; the breaker stays open until 1010
    sender.results = [SendResult(status=200)]
    ticket = await submit(eng, acks, record(5, replay_id="rpl_1"), Message(5, clock.now - 1))
    await settle(ticket)
    assert sender.requests == 3  # it went out, as the probe
    assert attempts(p)[-1].outcome == "delivered"
    assert len(letters(p)) == parked_before  # not parked again
    assert eng.breakers == {}  # the answer closed the breaker
    assert p.stats["breaker.replay_probes"] == 1


async def test_an_ordinary_delivery_and_an_older_replay_are_still_skipped(
    no_retries: Any,
) -> None:
    p, sender, clock, eng, acks = no_retries
    await trip(eng, acks, sender, clock)
    clock.now += 2
    await settle(await submit(eng, acks, record(5), Message(5, clock.now)))
    # A replay record written before the breaker opened: the outage is news to it.
    older = await submit(eng, acks, record(6, replay_id="rpl_1"), Message(6, clock.now - 5))
    # A replay's retry is an ordinary retry.
    retry = await submit(eng, acks, record(7, replay_id="rpl_1", attempt=2), Message(7, clock.now))
    await settle(older, retry)
    assert sender.requests == 2
    assert [x.last_error for x in letters(p)][-3:] == [
        "circuit open: the endpoint keeps failing, no request sent"
    ] * 3


async def test_replays_behind_a_hanging_probe_follow_its_verdict(no_retries: Any) -> None:
    p, sender, clock, eng, acks = no_retries
    await trip(eng, acks, sender, clock)
    clock.now += 2
    answer = asyncio.Event()
    outcome: list[SendResult] = []

    async def hang_first(request: PreparedRequest, *, timeout_s: float) -> SendResult:
        sender.requests += 1
        if sender.requests == 3:
            await answer.wait()
            return outcome[0]
        return SendResult(status=200)

    sender.send = hang_first  # type: ignore[method-assign]
    asked = clock.now - 1
    probe = await submit(eng, acks, record(5, replay_id="rpl_1"), Message(5, asked))
    for _ in range(10):
        await asyncio.sleep(0)
    waiting = await submit(eng, acks, record(6, replay_id="rpl_1"), Message(6, asked))
    for _ in range(10):
        await asyncio.sleep(0)
    assert sender.requests == 3  # the second one waits: no second request to a maybe-dead host
    assert not waiting.done
    outcome.append(SendResult(status=200))
    answer.set()
    await settle(probe, waiting)
    assert sender.requests == 4  # the probe's answer let the waiting one through
    assert [a.outcome for a in attempts(p)][-2:] == ["delivered", "delivered"]


async def test_a_replay_waiting_on_a_failed_probe_is_skipped(no_retries: Any) -> None:
    p, sender, clock, eng, acks = no_retries
    await trip(eng, acks, sender, clock)
    clock.now += 2
    answer = asyncio.Event()

    async def hang(request: PreparedRequest, *, timeout_s: float) -> SendResult:
        sender.requests += 1
        await answer.wait()
        clock.now += 1  # the probe fails a second later: news after the replay was asked
        return REFUSED

    sender.send = hang  # type: ignore[method-assign]
    asked = clock.now - 1
    probe = await submit(eng, acks, record(5, replay_id="rpl_1"), Message(5, asked))
    for _ in range(10):
        await asyncio.sleep(0)
    waiting = await submit(eng, acks, record(6, replay_id="rpl_1"), Message(6, asked))
    for _ in range(10):
        await asyncio.sleep(0)
    answer.set()
    await settle(probe, waiting)
    assert sender.requests == 3
    skipped = attempts(p)[-1]
    assert (skipped.delivery_id, skipped.sent) == ("msg_6", False)
    assert orjson.loads(letters(p)[-1].to_bytes())["delivery"]["delivery_id"] == "msg_6"
