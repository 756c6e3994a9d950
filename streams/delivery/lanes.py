"""Per-subscription lanes: isolation between endpoints sharing a worker.

Every subscription gets a :class:`Lane` with its own limit of requests in
flight (``max_in_flight``; 1 for ``ordered``) and its own token-bucket rate
limit (``rate_limit`` requests per second). The agent loop only *submits* to
lanes and never waits on one, so a slow or dead endpoint occupies its own lane
and nothing else: other subscriptions on the same partition keep flowing.

A lane's queue is bounded by about a second of the endpoint's work
(:func:`queue_limit`): what it can drain in :data:`QUEUE_SECONDS` at its
in-flight limit and its recent request time, never less than twice the
in-flight limit (at least 8) and never more than :data:`QUEUE_MAX`. When it
is full, :meth:`Dispatcher.submit` says so and the caller defers the delivery
to the first retry tier without an attempt, instead of letting one endpoint
hold the partition's commit position and the worker's memory. A fixed bound of
twice the in-flight limit deferred 8% of the deliveries of a healthy run
(`streams bench noisy`, "without"): Kafka hands a worker records in batches,
and a batch holds bursts for one subscription that a fast endpoint drains in
milliseconds, but each deferral costs a tier round trip and at least the
first tier's delay.

A full lane of an endpoint that answers fast is a burst, not a backed-up
endpoint: with ``STREAMS_LANE_WAIT_MS`` set, :meth:`Dispatcher.submit_or_wait`
lets the caller wait (bounded) for room there instead, which holds the agent
and so back-pressures its Kafka fetches. Deferring such a burst costs each
deferred delivery at least the first tier's delay and a tier round trip of
records (12% of the deliveries of one `streams bench paced` run on a
saturated machine); the interleaved pairs so far did not show the wait
helping, so it is off by default (docs/benchmarks.md, issue 22). A lane whose
endpoint is slow, by its mean job time or by its oldest job in flight, is
never waited on, so a dead endpoint still cannot hold the others back; and all
waits together are held to a tenth of the time, so neither can a fast endpoint
with a long backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved. Pure: the clock is passed in."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was available, else the seconds until one is."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


#: A lane queues about this many seconds of its endpoint's work.
QUEUE_SECONDS = 1.0
#: And never more jobs than this.
QUEUE_MAX = 1024
#: Weight of the newest job in a lane's running mean of job time.
SERVICE_WEIGHT = 0.2
#: A full lane is waited on only while its endpoint's jobs take at most this long.
WAIT_SERVICE_MAX_S = 0.25
#: The share of time callers may spend waiting for room, over all lanes: a fast
#: endpoint at its in-flight limit with a long backlog would otherwise hold the
#: agent, and every other endpoint it reads, at that endpoint's pace.
WAIT_SHARE = 0.1


def queue_limit(
    max_in_flight: int, service_s: float | None = None, rate: float | None = None
) -> int:
    """How many jobs a lane may hold waiting (not in flight).

    ``service_s`` is the lane's recent mean job time (None before its first job
    ends); ``rate`` its rate limit in requests per second, if any.
    """
    floor = max(8, 2 * max_in_flight)
    if service_s is None:
        return floor
    per_second = max_in_flight / max(service_s, 1e-4)
    if rate is not None:
        per_second = min(per_second, rate)
    return int(min(QUEUE_MAX, max(floor, per_second * QUEUE_SECONDS)))


@dataclass
class Lane:
    key: str
    limit: int
    bucket: TokenBucket | None
    queue: deque[Any] = field(default_factory=deque)
    in_flight: int = 0
    wakeup: asyncio.TimerHandle | None = None
    # Start times of the jobs in flight, oldest first (dicts keep insertion order).
    started: dict[int, float] = field(default_factory=dict)
    serial: int = 0
    # Resolved when a job of this lane ends (a caller waiting for room, at most one per agent).
    room: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        return not self.queue and self.in_flight == 0 and self.wakeup is None


class Dispatcher:
    """Runs jobs through per-key lanes; ``run(job)`` must not raise."""

    def __init__(
        self,
        run: Callable[[Any], Awaitable[None]],
        *,
        on_error: Callable[[Any, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._on_error = on_error
        self._clock = clock
        self.lanes: dict[str, Lane] = {}
        # Mean job time per key; outlives idle lanes (a burst's lane is dropped after it).
        self.service_s: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Seconds of waiting for room callers may still spend (refilled at WAIT_SHARE).
        self._wait_budget: float | None = None
        self._wait_stamp = 0.0

    @property
    def in_flight(self) -> int:
        return sum(lane.in_flight for lane in self.lanes.values())

    def _lane(self, key: str, max_in_flight: int, rate: float | None) -> Lane:
        lane = self.lanes.get(key)
        burst = max(1.0, rate or 1.0)
        if lane is None:
            lane = Lane(
                key=key,
                limit=max_in_flight,
                bucket=TokenBucket(rate, burst, self._clock()) if rate else None,
            )
            self.lanes[key] = lane
        else:
            # The subscription may have changed since the lane was made.
            lane.limit = max_in_flight
            if rate is None:
                lane.bucket = None
            elif lane.bucket is None or lane.bucket.rate != rate:
                lane.bucket = TokenBucket(rate, burst, self._clock())
        return lane

    def submit(
        self,
        key: str,
        job: Any,
        *,
        max_in_flight: int,
        rate: float | None,
        queue_cap: int | None = None,
    ) -> bool:
        """Queue ``job`` on the lane ``key``; False (nothing queued) when the lane is full."""
        lane = self._lane(key, max_in_flight, rate)
        if len(lane.queue) >= (queue_cap or self._queue_cap(lane, rate)):
            return False
        lane.queue.append(job)
        self._pump(lane)
        return True

    async def submit_or_wait(
        self, key: str, job: Any, *, max_in_flight: int, rate: float | None, wait_s: float
    ) -> bool:
        """:meth:`submit`, or wait up to ``wait_s`` for room in a full lane of a fast endpoint.

        False (nothing queued) when the lane stays full that long, or as soon as its
        endpoint is slow (:data:`WAIT_SERVICE_MAX_S`): the caller then defers as before.
        All waits together take at most :data:`WAIT_SHARE` of the time (after a first
        ``wait_s``), so a backlog for one fast endpoint cannot pace everyone else.
        """
        started = self._clock()
        deadline = started + min(wait_s, self._refill_wait_budget(started, wait_s))
        try:
            while not self.submit(key, job, max_in_flight=max_in_flight, rate=rate):
                lane = self.lanes[key]  # submit made it, and a full lane is not idle
                remaining = deadline - self._clock()
                if remaining <= 0 or not self._fast(lane):
                    return False
                if lane.room is None or lane.room.done():
                    lane.room = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(lane.room), remaining)
                except TimeoutError:
                    return False
            return True
        finally:
            if self._wait_budget is not None:
                self._wait_budget -= self._clock() - started

    def _refill_wait_budget(self, now: float, burst: float) -> float:
        """Seconds of waiting left: ``WAIT_SHARE`` of the time since, at most ``burst``."""
        if self._wait_budget is None:
            self._wait_budget = burst
        else:
            self._wait_budget = min(
                burst, self._wait_budget + (now - self._wait_stamp) * WAIT_SHARE
            )
        self._wait_stamp = now
        return self._wait_budget

    def _fast(self, lane: Lane) -> bool:
        """Whether the lane's endpoint answers within :data:`WAIT_SERVICE_MAX_S`."""
        service = self.service_s.get(lane.key, 0.0)
        if lane.started:
            service = max(service, self._clock() - lane.started[next(iter(lane.started))])
        return service <= WAIT_SERVICE_MAX_S

    def take_queued(self, key: str) -> list[Any]:
        """Remove and return the jobs waiting (not in flight) in lane ``key``, in order."""
        lane = self.lanes.get(key)
        if lane is None:
            return []
        jobs = list(lane.queue)
        lane.queue.clear()
        return jobs

    def _pump(self, lane: Lane) -> None:
        while lane.queue and lane.in_flight < lane.limit:
            if lane.bucket is not None:
                wait = lane.bucket.take(self._clock())
                if wait > 0:
                    if lane.wakeup is None:
                        loop = asyncio.get_running_loop()
                        lane.wakeup = loop.call_later(wait, self._wake, lane)
                    return
            job = lane.queue.popleft()
            lane.in_flight += 1
            task = asyncio.create_task(self._execute(lane, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _queue_cap(self, lane: Lane, rate: float | None) -> int:
        service = self.service_s.get(lane.key)
        if service is not None and lane.started:
            # A job in flight for longer than the mean says the endpoint slowed down
            # now, before any slow job has finished: believe it at once.
            oldest = lane.started[next(iter(lane.started))]
            service = max(service, self._clock() - oldest)
        return queue_limit(lane.limit, service, rate)

    def _observe(self, key: str, seconds: float) -> None:
        known = self.service_s.get(key)
        if known is None:
            if len(self.service_s) >= 100_000:
                self.service_s.clear()  # bounded; lanes relearn within a few jobs
            self.service_s[key] = seconds
        else:
            self.service_s[key] = known + SERVICE_WEIGHT * (seconds - known)

    def _wake(self, lane: Lane) -> None:
        lane.wakeup = None
        self._pump(lane)
        if lane.idle:  # the queue may have drained meanwhile (e.g. the rate changed)
            self.lanes.pop(lane.key, None)

    async def _execute(self, lane: Lane, job: Any) -> None:
        started = self._clock()
        serial = lane.serial = lane.serial + 1
        lane.started[serial] = started
        try:
            await self._run(job)
        except Exception as exc:  # run() handles its own errors; this is the last guard
            log.exception("delivery job failed unexpectedly")
            self._on_error(job, exc)
        finally:
            del lane.started[serial]
            self._observe(lane.key, self._clock() - started)
            lane.in_flight -= 1
            self._pump(lane)
            if lane.room is not None:
                if not lane.room.done():
                    lane.room.set_result(None)
                lane.room = None
            if lane.idle:
                self.lanes.pop(lane.key, None)
