"""The per-endpoint circuit breaker: fixed vectors, then the engine's use of it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from streams.config import Settings
from streams.delivery.breaker import TRIPPING, Breaker
from streams.delivery.engine import DeliveryEngine, SendResult
from streams.delivery.outcome import ErrorKind
from streams.delivery.request import PreparedRequest
from streams.health import FailureState, HealthMonitor
from streams.kafka.commits import OrderedAcks
from streams.kafka.topics import TopicNames
from streams.records import Attempt, Delivery, Subscription


def new() -> Breaker:
    return Breaker(threshold=3, base_s=5.0, max_s=30.0)


def test_closed_until_threshold_consecutive_tripping_failures() -> None:
    b = new()
    assert b.admit(0.0) == "send"
    assert b.record(0.0, tripping=True, probe=False) is False
    assert b.record(1.0, tripping=True, probe=False) is False
    assert not b.blocks(1.0)
    assert b.record(2.0, tripping=True, probe=False) is True
    assert b.open_until == 7.0
    assert b.blocks(2.0)
    assert b.blocks(6.99)
    assert b.admit(3.0) == "skip"


def test_an_answer_resets_the_count_while_closed() -> None:
    b = new()
    b.record(0.0, tripping=True, probe=False)
    b.record(0.0, tripping=True, probe=False)
    b.record(0.0, tripping=False, probe=False)  # e.g. a fast 500: the endpoint is up
    assert b.idle
    b.record(0.0, tripping=True, probe=False)
    b.record(0.0, tripping=True, probe=False)
    assert b.closed


def test_one_probe_after_the_open_time_and_the_others_skip() -> None:
    b = new()
    for _ in range(3):
        b.record(0.0, tripping=True, probe=False)
    assert b.admit(5.0) == "probe"
    assert b.blocks(5.0)  # the probe is out
    assert b.admit(5.1) == "skip"
    assert b.admit(100.0) == "skip"


@pytest.mark.parametrize(
    ("failed_probes", "open_s"),
    [(0, 5.0), (1, 10.0), (2, 20.0), (3, 30.0), (10, 30.0)],
)
def test_each_failed_probe_doubles_the_open_time_up_to_the_max(
    failed_probes: int, open_s: float
) -> None:
    b = new()
    for _ in range(3):
        b.record(0.0, tripping=True, probe=False)
    now = 0.0
    for _ in range(failed_probes):
        assert b.open_until is not None
        now = b.open_until
        assert b.admit(now) == "probe"
        assert b.record(now, tripping=True, probe=True) is True
    assert b.open_until == pytest.approx(now + open_s)


def test_a_probe_that_gets_an_answer_closes_the_breaker() -> None:
    b = new()
    for _ in range(3):
        b.record(0.0, tripping=True, probe=False)
    assert b.admit(5.0) == "probe"
    assert b.record(5.5, tripping=False, probe=True) is False
    assert b.closed
    assert b.idle
    assert b.admit(5.6) == "send"


def test_a_late_failure_sent_before_opening_does_not_extend_the_open_time() -> None:
    b = new()
    for _ in range(3):
        b.record(0.0, tripping=True, probe=False)
    assert b.record(3.0, tripping=True, probe=False) is False
    assert b.open_until == 5.0


def test_reopens_in_says_when_a_request_may_go_out_again() -> None:
    b = new()
    assert b.reopens_in(0.0) == 0.0
    for _ in range(3):
        b.record(10.0, tripping=True, probe=False)
    assert b.reopens_in(11.0) == 4.0
    assert b.reopens_in(15.0) == 5.0  # due a probe that has not gone yet
    assert b.admit(15.0, timeout_s=10.0) == "probe"
    # A probe is out until 25 at the latest; if it fails, the breaker opens for
    # 10 s (the second opening): no request can go out before 35.
    assert b.reopens_in(15.5) == 19.5
    assert b.reopens_in(30.0) == 10.0  # past the probe's timeout: the next open time
    b.record(25.0, tripping=True, probe=True)
    assert b.open_until == 35.0
    assert b.reopens_in(26.0) == 9.0


def test_only_timeouts_and_connection_failures_trip() -> None:
    assert ErrorKind.TOTAL_TIMEOUT in TRIPPING
    assert ErrorKind.CONNECT_ERROR in TRIPPING
    assert ErrorKind.CONNECTION_RESET in TRIPPING
    assert ErrorKind.PROTOCOL_ERROR not in TRIPPING  # it answered, badly, and fast
    assert ErrorKind.DESTINATION_REFUSED not in TRIPPING
    assert ErrorKind.CIRCUIT_OPEN not in TRIPPING


# -- the engine ----------------------------------------------------------------------------

SETTINGS = Settings.from_env(
    {
        "STREAMS_TOPIC_PREFIX": "p.",
        "STREAMS_RETRY_SCHEDULE": "1s,2s",
        "STREAMS_BREAKER_FAILURES": "2",
        "STREAMS_BREAKER_OPEN": "10s",
    }
)
SUB = Subscription(
    id="sub_1", tenant_id="acme", url="https://h.example/in", event_types=["*"], signing="prospektr"
)


@dataclass
class Message:
    offset: int
    topic: str = "p.deliveries"
    partition: int = 0

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message

    def ack(self) -> bool:
        return True


@dataclass
class FakePipeline:
    settings: Settings = SETTINGS
    names: TopicNames = field(default_factory=lambda: TopicNames("p."))
    stats: Counter[str] = field(default_factory=Counter)
    subscriptions: dict[str, Subscription] = field(default_factory=lambda: {"sub_1": SUB})
    sent: list[tuple[str, bytes | None]] = field(default_factory=list)

    async def send(self, topic: str, key: Any, value: bytes | None) -> Any:
        self.sent.append((topic, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class Sender:
    def __init__(self) -> None:
        self.results: list[SendResult] = []
        self.requests = 0

    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        self.requests += 1
        return self.results.pop(0)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def delivery(n: int, deferrals: int = 0, **fields: Any) -> bytes:
    """Record ``n`` of ``sub_1``; ``fields`` override the rest (attempt, held_by, ...)."""
    values: dict[str, Any] = {"attempt": 1, "deferrals": deferrals, **fields}
    return Delivery(
        delivery_id=f"msg_{n}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_1",
        body="{}",
        **values,
    ).to_bytes()


def engine() -> tuple[FakePipeline, Sender, Clock, DeliveryEngine, OrderedAcks]:
    """A fresh engine on a fake pipeline, sender and clock (no jitter)."""
    p, sender, clock = FakePipeline(), Sender(), Clock()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=clock)  # type: ignore[arg-type]
    return p, sender, clock, eng, OrderedAcks(max_pending=10, on_fatal=lambda exc: None)


async def deliver(eng: DeliveryEngine, acks: OrderedAcks, n: int) -> None:
    message = Message(offset=n)
    ticket = await acks.track(Event(message))
    await eng.handle(delivery(n), message, ticket, acks)
    for _ in range(50):  # the lane runs the attempt in a task
        if ticket.done:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"delivery {n} was not finished")


def attempts(p: FakePipeline) -> list[Attempt]:
    return [Attempt.from_bytes(v) for t, v in p.sent if t == "p.attempts" and v]


async def test_the_engine_skips_while_open_probes_once_and_closes_on_an_answer() -> None:
    p, sender, clock, eng, acks = engine()
    timeout = SendResult(status=None, error=ErrorKind.TOTAL_TIMEOUT, detail="timeout")

    sender.results = [timeout, timeout]
    await deliver(eng, acks, 0)
    await deliver(eng, acks, 1)
    assert p.stats["breaker.opened"] == 1
    assert sender.requests == 2

    # Open: skipped without a request, recorded as sent=false, scheduled as a retry.
    await deliver(eng, acks, 2)
    assert sender.requests == 2
    skipped = attempts(p)[-1]
    assert (skipped.sent, skipped.outcome, skipped.error) == (
        False,
        "retry",
        "circuit open: the endpoint keeps failing, no request sent",
    )
    retries = [orjson.loads(v or b"") for t, v in p.sent if t == "p.deliveries.retry.1s"]
    assert [r["delivery_id"] for r in retries] == ["msg_0", "msg_1"]
    # Not back before the breaker lets a probe through (10 s), though the schedule says 1 s.
    (held,) = [orjson.loads(v or b"") for t, v in p.sent if t == "p.deliveries.retry.2s"]
    assert (held["delivery_id"], held["attempt"], held["due_at"]) == ("msg_2", 2, 1010.0)

    # After the open time, one probe; its answer closes the breaker.
    clock.now += 10
    sender.results = [SendResult(status=200)]
    await deliver(eng, acks, 3)
    assert sender.requests == 3
    assert attempts(p)[-1].outcome == "delivered"
    assert eng.breakers == {}
    sender.results = [SendResult(status=200)]
    await deliver(eng, acks, 4)
    assert sender.requests == 4
    assert acks.pending == 0


async def test_a_failed_probe_reopens_for_twice_as_long() -> None:
    _p, sender, clock, eng, acks = engine()
    refused = SendResult(status=None, error=ErrorKind.CONNECT_ERROR, detail="connection refused")
    sender.results = [refused, refused, refused]
    await deliver(eng, acks, 0)
    await deliver(eng, acks, 1)
    clock.now += 10
    await deliver(eng, acks, 2)  # the probe, refused
    assert eng.breakers["sub_1"].open_until == clock.now + 20
    clock.now += 19
    await deliver(eng, acks, 3)
    assert sender.requests == 3


async def test_a_delivery_skipped_while_the_probe_hangs_waits_for_its_verdict() -> None:
    p, sender, clock, eng, acks = engine()
    refused = SendResult(status=None, error=ErrorKind.CONNECT_ERROR, detail="connection refused")
    sender.results = [refused, refused]
    await deliver(eng, acks, 0)
    await deliver(eng, acks, 1)
    clock.now += 10
    answer = asyncio.Event()

    async def hang(request: PreparedRequest, *, timeout_s: float) -> SendResult:
        sender.requests += 1
        await answer.wait()
        return SendResult(status=None, error=ErrorKind.TOTAL_TIMEOUT, detail="timeout")

    sender.send = hang  # type: ignore[method-assign]
    probe = Message(offset=2)
    probe_ticket = await acks.track(Event(probe))
    await eng.handle(delivery(2), probe, probe_ticket, acks)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sender.requests == 3  # the probe is out, hanging
    clock.now += 1
    await deliver(eng, acks, 3)  # skipped meanwhile
    (held,) = [
        orjson.loads(v or b"")
        for t, v in p.sent
        if t.startswith("p.deliveries.retry.") and b"msg_3" in (v or b"")
    ]
    # The probe's verdict is due by its timeout (10 s from 1010); if it fails the
    # breaker opens for 20 s: the earliest a request can go is 1040, not 1016.
    timeout = SETTINGS.request_timeout_s
    assert held["due_at"] == 1010.0 + timeout + 20.0
    answer.set()
    for _ in range(50):
        if probe_ticket.done:
            break
        await asyncio.sleep(0)
    assert eng.breakers["sub_1"].open_until == clock.now + 20


async def test_breaker_off_with_zero_failures() -> None:
    settings = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p.", "STREAMS_BREAKER_FAILURES": "0"})
    p, sender = FakePipeline(settings=settings), Sender()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0)  # type: ignore[arg-type]
    acks = OrderedAcks(max_pending=10, on_fatal=lambda exc: None)
    sender.results = [SendResult(status=None, error=ErrorKind.TOTAL_TIMEOUT)] * 5
    for n in range(5):
        await deliver(eng, acks, n)
    assert sender.requests == 5
    assert eng.breakers == {}


def test_skipped_attempts_do_not_count_towards_auto_disable() -> None:
    monitor = HealthMonitor.__new__(HealthMonitor)
    monitor.table = {}
    skipped = Attempt(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_1",
        attempt=1,
        at=0.0,
        duration_ms=0.0,
        outcome="retry",
        error="circuit open",
        sent=False,
    )
    assert monitor.on_attempt(SUB, skipped) is None
    assert monitor.state("sub_1") == FailureState()


async def test_a_probe_that_cannot_be_signed_still_releases_the_breaker() -> None:
    p, sender, clock, eng, acks = engine()
    sender.results = [SendResult(status=None, error=ErrorKind.READ_TIMEOUT)] * 2
    await deliver(eng, acks, 0)
    await deliver(eng, acks, 1)
    assert not eng.breakers["sub_1"].closed
    # The subscription now needs a secret it does not have: signing fails, no request.
    p.subscriptions["sub_1"] = dataclasses.replace(SUB, signing="standard")
    clock.now += 10
    await deliver(eng, acks, 2)
    assert sender.requests == 2
    assert eng.breakers == {}


async def test_deleting_or_disabling_a_subscription_forgets_its_breaker() -> None:
    p, sender, _clock, eng, acks = engine()

    async def trip(first: int) -> None:
        sender.results = [SendResult(status=None, error=ErrorKind.CONNECT_ERROR)] * 2
        await deliver(eng, acks, first)
        await deliver(eng, acks, first + 1)
        assert "sub_1" in eng.breakers

    await trip(0)
    p.subscriptions["sub_1"] = dataclasses.replace(SUB, state="disabled")
    await deliver(eng, acks, 2)  # dead-lettered as disabled, no request
    assert eng.breakers == {}
    assert sender.requests == 2

    p.subscriptions["sub_1"] = SUB  # re-enabled: a fresh, closed breaker
    await trip(3)
    del p.subscriptions["sub_1"]
    await deliver(eng, acks, 5)
    assert eng.breakers == {}
