"""Per-subscription lanes: the token bucket and the dispatcher's isolation guarantees."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from streams.delivery import lanes
from streams.delivery.lanes import Dispatcher, TokenBucket, queue_limit

Job = Callable[[], Awaitable[None]]

# --- the token bucket ---------------------------------------------------------------------


def test_token_bucket_gives_its_burst_at_once_then_asks_to_wait_half_a_second() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    # Asking again without waiting does not make the wait longer: no debt is taken.
    assert bucket.take(0.0) == pytest.approx(0.5)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token saved, half to go
    assert bucket.take(0.5) == 0.0  # one full token after 0.5 s
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.2) == pytest.approx(0.3)


def test_token_bucket_never_saves_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    # An hour idle still saves only two tokens.
    assert bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) == pytest.approx(0.5)
    assert bucket.tokens <= bucket.burst


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_token_bucket_refuses_a_non_positive_rate_or_a_burst_below_one(
    rate: float, burst: float
) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate=rate, burst=burst, now=0.0)


# --- the dispatcher -----------------------------------------------------------------------


async def _run(job: Job) -> None:
    await job()


class Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[object, BaseException]] = []

    def __call__(self, job: object, exc: BaseException) -> None:
        self.seen.append((job, exc))


async def _settle(dispatcher: Dispatcher, within: float = 2.0) -> None:
    """Wait (polling, bounded) until every lane has drained and been dropped."""
    for _ in range(int(within / 0.005)):
        if not dispatcher.lanes:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"lanes still open after {within}s: {sorted(dispatcher.lanes)}")


async def test_a_lane_never_runs_more_than_max_in_flight_jobs_at_once() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    running = 0
    most = 0
    started: list[int] = []
    gates = [asyncio.Event() for _ in range(10)]

    def job(index: int) -> Job:
        async def body() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            started.append(index)
            try:
                await gates[index].wait()
            finally:
                running -= 1

        return body

    for index in range(10):
        assert dispatcher.submit("sub-a", job(index), max_in_flight=3, rate=None)
    await asyncio.sleep(0.02)
    assert started == [0, 1, 2]
    assert running == 3

    # Releasing one job lets exactly one more start, in submission order.
    for index in range(10):
        gates[index].set()
        await asyncio.sleep(0.01)
        assert running <= 3
        assert running == min(3, 10 - index - 1)
    await _settle(dispatcher)
    assert started == list(range(10))
    assert most == 3


async def test_a_slow_lane_does_not_delay_another_lanes_jobs() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    stuck = asyncio.Event()
    fast_done = asyncio.Event()
    finished: list[int] = []

    async def slow() -> None:
        await stuck.wait()

    def fast(index: int) -> Job:
        async def body() -> None:
            finished.append(index)
            if len(finished) == 20:
                fast_done.set()

        return body

    try:
        for _ in range(queue_limit(1)):
            assert dispatcher.submit("slow", slow, max_in_flight=1, rate=None)
        for index in range(20):
            assert dispatcher.submit("fast", fast(index), max_in_flight=16, rate=None)
        await asyncio.wait_for(fast_done.wait(), 1.0)
        assert sorted(finished) == list(range(20))
        assert "slow" in dispatcher.lanes
        assert dispatcher.lanes["slow"].in_flight == 1
    finally:
        stuck.set()
    await _settle(dispatcher)


async def test_a_rate_limited_lane_spaces_job_starts_beyond_its_burst() -> None:
    # 20 requests per second: a one-second burst of 20, then one every 50 ms.
    rate = 20.0
    total = 30
    dispatcher = Dispatcher(_run, on_error=Errors())
    starts: list[float] = []

    async def job() -> None:
        starts.append(time.monotonic())

    for _ in range(total):
        assert dispatcher.submit("limited", job, max_in_flight=16, rate=rate)
    await _settle(dispatcher, within=5.0)

    assert len(starts) == total
    burst = starts[:20]
    paced = starts[19:]
    assert burst[-1] - burst[0] < 0.2
    gaps = [later - earlier for earlier, later in itertools.pairwise(paced)]
    assert min(gaps) >= 0.03  # 50 ms apart, loosely
    assert paced[-1] - paced[0] >= 0.8 * (len(paced) - 1) / rate
    assert paced[-1] - paced[0] < 2.0


async def test_rate_limits_of_one_lane_do_not_delay_another_lane() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    unlimited_done = asyncio.Event()
    count = 0

    async def noop() -> None:
        return None

    async def counted() -> None:
        nonlocal count
        count += 1
        if count == 8:
            unlimited_done.set()

    # Exhaust the limited lane's burst (1 token at 1/s) and leave jobs waiting for tokens.
    for _ in range(5):
        assert dispatcher.submit("limited", noop, max_in_flight=4, rate=1.0)
    for _ in range(8):
        assert dispatcher.submit("free", counted, max_in_flight=4, rate=None)
    await asyncio.wait_for(unlimited_done.wait(), 0.5)
    # Clean up the timer: the test does not wait four seconds for the limited lane.
    lane = dispatcher.lanes["limited"]
    assert lane.wakeup is not None
    lane.wakeup.cancel()


@pytest.mark.parametrize("max_in_flight", [1, 8])
async def test_a_full_lane_refuses_a_job_and_queues_nothing(max_in_flight: int) -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    gate = asyncio.Event()
    ran: list[str] = []

    def job(name: str) -> Job:
        async def body() -> None:
            await gate.wait()
            ran.append(name)

        return body

    limit = queue_limit(max_in_flight)
    assert limit == max(8, 2 * max_in_flight)
    accepted = max_in_flight + limit  # running plus queued
    for index in range(accepted):
        assert dispatcher.submit("sub", job(f"ok-{index}"), max_in_flight=max_in_flight, rate=None)
    await asyncio.sleep(0)
    lane = dispatcher.lanes["sub"]
    assert lane.in_flight == max_in_flight
    assert len(lane.queue) == limit

    refused = job("refused")
    assert not dispatcher.submit("sub", refused, max_in_flight=max_in_flight, rate=None)
    assert len(lane.queue) == limit
    assert refused not in lane.queue

    gate.set()
    await _settle(dispatcher)
    assert len(ran) == accepted
    assert "refused" not in ran


async def test_a_lane_is_dropped_once_it_is_idle_and_made_anew_on_the_next_submit() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    assert dispatcher.submit("sub", wait, max_in_flight=2, rate=None)
    assert dispatcher.submit("sub", wait, max_in_flight=2, rate=None)
    await asyncio.sleep(0)
    first = dispatcher.lanes["sub"]
    assert dispatcher.in_flight == 2

    gate.set()
    await _settle(dispatcher)
    assert dispatcher.lanes == {}
    assert dispatcher.in_flight == 0

    assert dispatcher.submit("sub", wait, max_in_flight=2, rate=None)
    assert dispatcher.lanes["sub"] is not first
    await _settle(dispatcher)
    assert dispatcher.lanes == {}


async def test_a_rate_limited_lane_is_kept_while_waiting_for_a_token_then_dropped() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    ran = 0

    async def job() -> None:
        nonlocal ran
        ran += 1

    # rate 20: a burst of 20, then the 21st waits about 50 ms for a token.
    for _ in range(21):
        assert dispatcher.submit("sub", job, max_in_flight=32, rate=20.0)
    await asyncio.sleep(0.01)
    assert "sub" in dispatcher.lanes
    assert dispatcher.lanes["sub"].wakeup is not None
    await _settle(dispatcher)
    assert ran == 21
    assert dispatcher.lanes == {}


async def test_a_raising_job_reaches_on_error_and_does_not_wedge_its_lane() -> None:
    errors = Errors()
    dispatcher = Dispatcher(_run, on_error=errors)
    boom = RuntimeError("boom")
    ran: list[str] = []

    async def bad() -> None:
        ran.append("bad")
        raise boom

    async def good() -> None:
        ran.append("good")

    assert dispatcher.submit("sub", bad, max_in_flight=1, rate=None)
    assert dispatcher.submit("sub", good, max_in_flight=1, rate=None)
    await _settle(dispatcher)

    assert ran == ["bad", "good"]
    assert errors.seen == [(bad, boom)]
    assert dispatcher.lanes == {}
    assert dispatcher.in_flight == 0

    # The lane still takes work afterwards.
    assert dispatcher.submit("sub", good, max_in_flight=1, rate=None)
    await _settle(dispatcher)
    assert ran == ["bad", "good", "good"]


async def test_a_lane_whose_rate_changes_while_it_waits_for_a_token_is_still_dropped() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    ran = 0

    async def job() -> None:
        nonlocal ran
        ran += 1

    # rate 5: a burst of 5, then the 6th waits about 200 ms for a token.
    for _ in range(6):
        assert dispatcher.submit("sub", job, max_in_flight=16, rate=5.0)
    assert dispatcher.lanes["sub"].wakeup is not None
    # The subscription's rate is raised: a fresh bucket runs the waiting job at once,
    # and the timer set for the old bucket later finds nothing to do.
    assert dispatcher.submit("sub", job, max_in_flight=16, rate=50.0)
    await _settle(dispatcher)
    assert ran == 7
    assert dispatcher.lanes == {}


@pytest.mark.parametrize(
    ("max_in_flight", "service_s", "rate", "expected"),
    [
        (16, None, None, 32),  # nothing known yet: twice the in-flight limit
        (1, None, None, 8),  # and at least 8
        (16, 0.005, None, 1024),  # 3,200/s: capped at QUEUE_MAX
        (16, 0.05, None, 320),  # 320/s: a second of work
        (16, 0.2, None, 80),  # an endpoint answering after 200 ms
        (16, 10.0, None, 32),  # hanging until the timeout: the floor
        (16, 0.005, 50.0, 50),  # the rate limit drains slower than the endpoint
        (16, 0.0, None, 1024),  # a zero duration does not divide by zero
    ],
)
def test_a_lane_queues_about_a_second_of_its_endpoints_work(
    max_in_flight: int, service_s: float | None, rate: float | None, expected: int
) -> None:
    assert lanes.QUEUE_SECONDS == 1.0
    assert lanes.QUEUE_MAX == 1024
    assert queue_limit(max_in_flight, service_s, rate) == expected


async def test_a_fast_endpoints_lane_takes_a_burst_and_a_slow_ones_does_not() -> None:
    now = [0.0]
    dispatcher = Dispatcher(_run, on_error=Errors(), clock=lambda: now[0])

    async def quick() -> None:
        now[0] += 0.001  # each job takes 1 ms of the fake clock

    for _ in range(5):
        assert dispatcher.submit("fast", quick, max_in_flight=4, rate=None)
        await _settle(dispatcher)
    assert dispatcher.service_s["fast"] == pytest.approx(0.001)
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    # 4 in flight; the queue takes up to 4 / 1 ms = 4,000/s -> QUEUE_MAX.
    accepted = sum(dispatcher.submit("fast", held, max_in_flight=4, rate=None) for _ in range(2000))
    assert accepted == 4 + lanes.QUEUE_MAX
    await asyncio.sleep(0)  # the four start
    # The jobs in flight have now run for 2 s of the clock: the endpoint slowed
    # down, so the cap falls to the floor before any of them finished.
    now[0] += 2.0
    lane = dispatcher.lanes["fast"]
    lane.queue.clear()
    for _ in range(8):
        assert dispatcher.submit("fast", held, max_in_flight=4, rate=None)
    assert not dispatcher.submit("fast", held, max_in_flight=4, rate=None)
    lane.queue.clear()
    gate.set()
    await _settle(dispatcher)
    # The slow jobs pulled the mean up: 1 ms + 0.2 x (2 s - 1 ms) for the first.
    assert dispatcher.service_s["fast"] > 0.3


# --- waiting for room instead of deferring ---------------------------------------------------


def _fill(dispatcher: Dispatcher, key: str, job: Job, max_in_flight: int) -> int:
    """Submit ``job`` until the lane refuses; how many it took."""
    taken = 0
    while dispatcher.submit(key, job, max_in_flight=max_in_flight, rate=None):
        taken += 1
    return taken


async def test_a_full_lane_of_a_fast_endpoint_takes_the_job_once_a_job_ends() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    gate = asyncio.Event()
    ran: list[str] = []

    async def held() -> None:
        await gate.wait()

    async def waited() -> None:
        ran.append("waited")

    taken = _fill(dispatcher, "sub", held, max_in_flight=2)
    await asyncio.sleep(0)  # the two in flight start
    waiting = asyncio.create_task(
        dispatcher.submit_or_wait("sub", waited, max_in_flight=2, rate=None, wait_s=5.0)
    )
    await asyncio.sleep(0.01)
    assert not waiting.done()  # no room yet: the caller is held (back-pressure)
    gate.set()  # jobs end, room appears
    assert await asyncio.wait_for(waiting, 2.0) is True
    await _settle(dispatcher)
    assert ran == ["waited"]
    assert taken == 2 + queue_limit(2)


async def test_a_full_lane_that_stays_full_refuses_after_the_wait() -> None:
    dispatcher = Dispatcher(_run, on_error=Errors())
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    _fill(dispatcher, "sub", held, max_in_flight=1)
    await asyncio.sleep(0)
    started = time.monotonic()
    assert not await dispatcher.submit_or_wait("sub", held, max_in_flight=1, rate=None, wait_s=0.05)
    assert 0.04 <= time.monotonic() - started < 1.0
    gate.set()
    await _settle(dispatcher)


async def test_a_full_lane_of_a_slow_endpoint_is_not_waited_on() -> None:
    now = [0.0]
    dispatcher = Dispatcher(_run, on_error=Errors(), clock=lambda: now[0])
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    _fill(dispatcher, "sub", held, max_in_flight=1)
    await asyncio.sleep(0)
    # Its job in flight has run for longer than a fast endpoint's: refuse at once,
    # even with a long wait allowed (the caller defers it, as before).
    now[0] += lanes.WAIT_SERVICE_MAX_S + 0.01
    waiting = asyncio.create_task(
        dispatcher.submit_or_wait("sub", held, max_in_flight=1, rate=None, wait_s=60.0)
    )
    await asyncio.sleep(0)
    assert waiting.done()
    assert waiting.result() is False
    gate.set()
    await _settle(dispatcher)


async def test_waiting_for_room_takes_at_most_a_tenth_of_the_time_after_the_first_wait() -> None:
    now = [0.0]
    dispatcher = Dispatcher(_run, on_error=Errors(), clock=lambda: now[0])
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    _fill(dispatcher, "sub", held, max_in_flight=1)
    await asyncio.sleep(0)

    async def refused_at_once(wait_s: float) -> bool:
        # The fake clock stands still while the caller waits: spend the budget by hand.
        task = asyncio.create_task(
            dispatcher.submit_or_wait("sub", held, max_in_flight=1, rate=None, wait_s=wait_s)
        )
        await asyncio.sleep(0)
        return task.done() and task.result() is False

    assert lanes.WAIT_SHARE == 0.1
    assert dispatcher._refill_wait_budget(now[0], 0.5) == 0.5  # the first wait: all of it
    dispatcher._wait_budget = 0.0  # ...spent
    assert await refused_at_once(0.5)  # nothing left: refused at once, the caller defers
    now[0] += 1.0  # a second later a tenth of it is back
    assert dispatcher._refill_wait_budget(now[0], 0.5) == pytest.approx(0.1)
    now[0] += 100.0  # and never more than one wait's worth
    assert dispatcher._refill_wait_budget(now[0], 0.5) == 0.5
    gate.set()
    await _settle(dispatcher)
