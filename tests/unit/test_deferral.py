"""A full lane defers deliveries without an attempt, waiting longer each time."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from streams.delivery.engine import DeliveryEngine, SendResult
from streams.delivery.lanes import queue_limit
from streams.delivery.request import PreparedRequest
from streams.kafka.commits import OrderedAcks
from streams.records import Delivery
from tests.unit.test_breaker import SUB, Clock, Event, FakePipeline, Message, Sender, delivery


class Hanging:
    """A sender whose requests stay in flight until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0

    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        self.requests += 1
        await self.release.wait()
        return SendResult(status=200)


async def test_each_deferral_in_a_row_waits_twice_as_long_and_an_attempt_resets_the_count() -> None:
    one_lane = dataclasses.replace(SUB, max_in_flight=1)
    p = FakePipeline(subscriptions={"sub_1": one_lane})
    sender, clock = Hanging(), Clock()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=clock)  # type: ignore[arg-type]
    acks = OrderedAcks(max_pending=100, on_fatal=lambda exc: None)

    async def handle(n: int, deferrals: int = 0) -> Any:
        message = Message(offset=n)
        ticket = await acks.track(Event(message))
        await eng.handle(delivery(n, deferrals), message, ticket, acks)
        await asyncio.sleep(0)
        return ticket

    # One in flight and a full queue behind it.
    for n in range(1 + queue_limit(1)):
        await handle(n)
    assert sender.requests == 1
    assert p.sent == []

    # The lane is full: deferred without an attempt, longer after each deferral.
    await handle(100)
    await handle(101, deferrals=1)
    await handle(102, deferrals=5)
    await handle(103, deferrals=9)
    deferred = [(t, orjson.loads(v or b"")) for t, v in p.sent]
    assert [(t, d["delivery_id"], d["deferrals"], d["due_at"]) for t, d in deferred] == [
        ("p.deliveries.retry.1s", "msg_100", 1, 1001.0),
        ("p.deliveries.retry.2s", "msg_101", 2, 1002.0),
        ("p.deliveries.retry.2s", "msg_102", 6, 1032.0),  # past the largest tier: it hops
        ("p.deliveries.retry.2s", "msg_103", 10, 1060.0),  # at most a minute
    ]
    assert p.stats["deferred"] == 4
    assert sender.requests == 1  # no attempt for any of them

    # A deferred delivery that gets its attempt and fails starts counting again.
    sender.release.set()
    for _ in range(100):
        await asyncio.sleep(0)
    retried = Delivery.from_bytes(delivery(7, deferrals=3)).next_attempt(
        due_at=1.0, status=503, error="x"
    )
    assert retried.deferrals == 0


NO_TIERS = dataclasses.replace(FakePipeline().settings, retry_schedule="none", breaker_failures=0)


async def test_without_retry_tiers_a_retryable_failure_is_dead_lettered_not_a_crash() -> None:
    # STREAMS_RETRY_SCHEDULE=none, and a subscription saved with its own retries
    # (before the API refused that): next_retry has a delay, but no tier to wait in.
    own = dataclasses.replace(SUB, retry_schedule=[0.0, 5.0])
    p = FakePipeline(settings=NO_TIERS, subscriptions={"sub_1": own})
    sender = Sender()
    sender.results = [SendResult(status=503)]
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    assert eng.tiers == ()
    failed: list[BaseException] = []
    acks = OrderedAcks(max_pending=100, on_fatal=failed.append)
    message = Message(offset=1)
    ticket = await acks.track(Event(message))
    await eng.handle(delivery(1), message, ticket, acks)
    for _ in range(50):
        await asyncio.sleep(0)
    assert failed == []
    assert ticket.done
    topics = [t for t, _ in p.sent]
    assert "p.deliveries.dlq" in topics
    letter = orjson.loads(next(v for t, v in p.sent if t == "p.deliveries.dlq") or b"")
    assert letter["reason"] == "exhausted"


async def test_without_retry_tiers_a_full_lane_back_pressures_instead_of_deferring() -> None:
    one_lane = dataclasses.replace(SUB, max_in_flight=1)
    p = FakePipeline(settings=NO_TIERS, subscriptions={"sub_1": one_lane})
    sender = Hanging()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    failed: list[BaseException] = []
    acks = OrderedAcks(max_pending=1000, on_fatal=failed.append)
    tickets = []
    for n in range(3 * queue_limit(1)):
        message = Message(offset=n)
        ticket = await acks.track(Event(message))
        await eng.handle(delivery(n), message, ticket, acks)
        tickets.append(ticket)
    assert p.stats["deferred"] == 0
    assert p.sent == []
    sender.release.set()
    for _ in range(500):
        await asyncio.sleep(0)
        if all(t.done for t in tickets):
            break
    assert failed == []
    assert sender.requests == len(tickets)  # every one sent, none deferred or lost


async def _full_lane(sub_fields: dict[str, Any], wait_ms: int) -> tuple[Any, Any, Any, Any]:
    """An engine whose one-request lane for ``sub_1`` is full (one in flight, queue full)."""
    from streams.config import Settings

    sub = dataclasses.replace(SUB, max_in_flight=1, **sub_fields)
    p = FakePipeline(
        settings=Settings.from_env({"STREAMS_LANE_WAIT_MS": str(wait_ms)}),
        subscriptions={"sub_1": sub},
    )
    sender = Hanging()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    acks = OrderedAcks(max_pending=100, on_fatal=lambda exc: None)
    for n in range(1 + queue_limit(1)):
        message = Message(offset=n)
        await eng.handle(delivery(n), message, await acks.track(Event(message)), acks)
    await asyncio.sleep(0)
    return p, sender, eng, acks


async def test_a_full_lane_of_a_fast_endpoint_holds_the_delivery_instead_of_deferring_it() -> None:
    p, sender, eng, acks = await _full_lane({}, wait_ms=5000)
    message = Message(offset=100)
    waiting = asyncio.create_task(
        eng.handle(delivery(100), message, await acks.track(Event(message)), acks)
    )
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the agent is held: back-pressure, no tier record
    sender.release.set()
    await asyncio.wait_for(waiting, 2.0)
    for _ in range(100):
        if sender.requests == 2 + queue_limit(1):
            break
        await asyncio.sleep(0.01)
    assert sender.requests == 2 + queue_limit(1)  # every one sent, the held one too
    assert not [t for t, _v in p.sent if ".retry." in t]


async def test_a_full_rate_limited_lane_defers_at_once_even_with_a_wait_allowed() -> None:
    p, sender, eng, acks = await _full_lane({"rate_limit": 1.0}, wait_ms=5000)
    message = Message(offset=100)
    started = asyncio.get_running_loop().time()
    await eng.handle(delivery(100), message, await acks.track(Event(message)), acks)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert [t for t, _v in p.sent if ".retry." in t] == [p.names.retry(eng.tiers[0])]
    sender.release.set()
    await asyncio.sleep(0.05)  # let the lane's jobs finish


async def test_with_no_lane_wait_a_full_lane_defers_at_once() -> None:
    p, sender, eng, acks = await _full_lane({}, wait_ms=0)
    message = Message(offset=100)
    await eng.handle(delivery(100), message, await acks.track(Event(message)), acks)
    assert [t for t, _v in p.sent if ".retry." in t] == [p.names.retry(eng.tiers[0])]
    sender.release.set()
    await asyncio.sleep(0.05)  # let the lane's jobs finish
