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

Tenants (per-tenant scheduling, ``STREAMS_TENANT_MAX_IN_FLIGHT`` above 0).
Lanes isolate endpoints, not tenants: one tenant's 400 subscriptions to ``*``
turned 20 events into 8,000 jobs, and another tenant's delivery waited behind
them in the HTTP client's queue (0.9 s became 12.8 s). So each tenant gets a
:class:`TenantShare`:

- at most ``tenant_limit`` of its jobs in flight on the worker;
- a bound on its jobs waiting in all its lanes together (``tenant_queue``, a
  quarter of the agents' window of unfinished records): :meth:`Dispatcher.tenant_full`
  says when it is reached, and the caller defers the job like a full lane's;
- a turn: lanes ready to start a job wait in their tenant's ring, tenants with
  a ready lane and room under their limit wait in the worker's ring, and each
  turn starts one job (round robin between tenants, and between a tenant's
  subscriptions), while fewer than ``capacity`` jobs run on the worker.

With ``tenant_limit`` None the dispatcher runs each lane as before, with no
per-tenant bound.
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
    tenant: str = ""
    waiting: bool = False  # in its tenant's ring of ready lanes (per-tenant scheduling)
    # Resolved when a job of this lane ends (a caller waiting for room, at most one per agent).
    room: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        return not self.queue and self.in_flight == 0 and self.wakeup is None


@dataclass(eq=False)
class TenantShare:
    """One tenant's part of a worker's requests (per-tenant scheduling)."""

    key: str
    in_flight: int = 0
    queued: int = 0  # jobs waiting in all its lanes
    ready: deque[Lane] = field(default_factory=deque)  # lanes that may start a job, in turn
    in_ring: bool = False  # waiting for a turn in the worker's ring

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and self.queued == 0


class Dispatcher:
    """Runs jobs through per-key lanes; ``run(job)`` must not raise.

    ``tenant_limit``: jobs of one tenant in flight at once (None: no per-tenant
    scheduling); ``capacity``: jobs in flight on the worker, shared between
    tenants in turn (only with ``tenant_limit``; None: no bound); ``tenant_queue``:
    jobs one tenant may hold waiting (:meth:`tenant_full`; at least twice its limit).
    """

    def __init__(
        self,
        run: Callable[[Any], Awaitable[None]],
        *,
        on_error: Callable[[Any, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
        tenant_limit: int | None = None,
        capacity: int | None = None,
        tenant_queue: int = 1250,
    ) -> None:
        if tenant_limit is not None and tenant_limit < 1:
            raise ValueError("tenant_limit must be at least 1 (or None: no per-tenant limit)")
        self._run = run
        self._on_error = on_error
        self._clock = clock
        self.tenant_limit = tenant_limit
        self.capacity = capacity
        self.tenant_queue = max(tenant_queue, 2 * (tenant_limit or 0))
        self.lanes: dict[str, Lane] = {}
        # Mean job time per key; outlives idle lanes (a burst's lane is dropped after it).
        self.service_s: dict[str, float] = {}
        self.tenants: dict[str, TenantShare] = {}
        self._ring: deque[TenantShare] = deque()
        self.running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Seconds of waiting for room callers may still spend (refilled at WAIT_SHARE).
        self._wait_budget: float | None = None
        self._wait_stamp = 0.0

    @property
    def in_flight(self) -> int:
        return self.running

    def _lane(self, key: str, max_in_flight: int, rate: float | None, tenant: str) -> Lane:
        lane = self.lanes.get(key)
        burst = max(1.0, rate or 1.0)
        if lane is None:
            lane = Lane(
                key=key,
                limit=max_in_flight,
                bucket=TokenBucket(rate, burst, self._clock()) if rate else None,
                tenant=tenant,
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
        tenant: str = "",
    ) -> bool:
        """Queue ``job`` on the lane ``key`` of ``tenant``; False (nothing queued) when the
        lane is full. The tenant's own bound is :meth:`tenant_full`, asked by the caller
        (which knows whether it may shed the job)."""
        lane = self._lane(key, max_in_flight, rate, tenant)
        if len(lane.queue) >= (queue_cap or self._queue_cap(lane, rate)):
            return False
        lane.queue.append(job)
        if self.tenant_limit is None:
            self._pump(lane)
        else:
            self._share(lane.tenant).queued += 1
            self._make_ready(lane)
            self._dispatch()
        return True

    def tenant_full(self, tenant: str) -> bool:
        """True when ``tenant`` already holds ``tenant_queue`` waiting jobs; always False
        without per-tenant scheduling."""
        if self.tenant_limit is None:
            return False
        share = self.tenants.get(tenant)
        return share is not None and share.queued >= self.tenant_queue

    async def submit_or_wait(
        self,
        key: str,
        job: Any,
        *,
        max_in_flight: int,
        rate: float | None,
        wait_s: float,
        tenant: str = "",
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
            while not self.submit(key, job, max_in_flight=max_in_flight, rate=rate, tenant=tenant):
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
        if self.tenant_limit is not None:
            share = self.tenants.get(lane.tenant)
            if share is not None:
                share.queued -= len(jobs)
                self._forget(share)
        if lane.idle:
            self.lanes.pop(key, None)
        return jobs

    def _pump(self, lane: Lane) -> None:
        """Without per-tenant scheduling: start what the lane's own limits allow."""
        while lane.queue and lane.in_flight < lane.limit:
            if lane.bucket is not None:
                wait = lane.bucket.take(self._clock())
                if wait > 0:
                    if lane.wakeup is None:
                        loop = asyncio.get_running_loop()
                        lane.wakeup = loop.call_later(wait, self._wake, lane)
                    return
            self._start(lane, lane.queue.popleft())

    # -- per-tenant scheduling -----------------------------------------------------------

    def _share(self, tenant: str) -> TenantShare:
        share = self.tenants.get(tenant)
        if share is None:
            share = self.tenants[tenant] = TenantShare(tenant)
        return share

    def _forget(self, share: TenantShare) -> None:
        """Drop an idle tenant's share, and the idle lanes still listed in its ring."""
        if not share.idle or self.tenants.get(share.key) is not share:
            return
        while share.ready:
            lane = share.ready.popleft()
            lane.waiting = False
            if lane.idle and self.lanes.get(lane.key) is lane:
                self.lanes.pop(lane.key, None)
        del self.tenants[share.key]

    def _make_ready(self, lane: Lane) -> None:
        """Put ``lane`` in its tenant's ring if it could start a job now, and the tenant
        in the worker's ring if it has room under its limit."""
        if (
            lane.waiting
            or not lane.queue
            or lane.in_flight >= lane.limit
            or lane.wakeup is not None
        ):
            return
        share = self._share(lane.tenant)
        share.ready.append(lane)
        lane.waiting = True
        self._enlist(share)

    def _enlist(self, share: TenantShare) -> None:
        assert self.tenant_limit is not None
        if not share.in_ring and share.ready and share.in_flight < self.tenant_limit:
            self._ring.append(share)
            share.in_ring = True

    def _dispatch(self) -> None:
        """Start jobs, one per turn, tenant after tenant, while the worker has capacity."""
        assert self.tenant_limit is not None
        while self._ring and (self.capacity is None or self.running < self.capacity):
            share = self._ring.popleft()
            share.in_ring = False
            if self.tenants.get(share.key) is not share or share.in_flight >= self.tenant_limit:
                continue  # enlisted again when one of its jobs ends
            lane = self._next_lane(share)
            if lane is None:
                self._forget(share)
                continue
            if lane.bucket is not None:
                wait = lane.bucket.take(self._clock())
                if wait > 0:
                    # Its turn passes; the lane is ready again when a token is due.
                    lane.wakeup = asyncio.get_running_loop().call_later(wait, self._wake, lane)
                    self._enlist(share)
                    continue
            share.queued -= 1
            self._start(lane, lane.queue.popleft())
            self._make_ready(lane)  # at the back of its tenant's ring, if it has more
            self._enlist(share)  # at the back of the worker's ring, if it has more

    def _next_lane(self, share: TenantShare) -> Lane | None:
        """The tenant's next lane that can start a job (lanes that changed meanwhile are
        dropped from its ring)."""
        while share.ready:
            lane = share.ready.popleft()
            lane.waiting = False
            if (
                self.lanes.get(lane.key) is lane
                and lane.queue
                and lane.in_flight < lane.limit
                and lane.wakeup is None
            ):
                return lane
            if lane.idle and self.lanes.get(lane.key) is lane:
                self.lanes.pop(lane.key, None)
        return None

    # -- running jobs ----------------------------------------------------------------------

    def _start(self, lane: Lane, job: Any) -> None:
        lane.in_flight += 1
        self.running += 1
        if self.tenant_limit is not None:
            self._share(lane.tenant).in_flight += 1
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
        if self.tenant_limit is None:
            self._pump(lane)
        else:
            self._make_ready(lane)
            self._dispatch()
        if lane.idle and self.lanes.get(lane.key) is lane:
            # The queue may have drained meanwhile (e.g. the rate changed).
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
            self.running -= 1
            if self.tenant_limit is None:
                self._pump(lane)
            else:
                share = self._share(lane.tenant)
                share.in_flight -= 1
                self._make_ready(lane)
                self._enlist(share)
                self._dispatch()
                self._forget(share)
            if lane.room is not None:
                if not lane.room.done():
                    lane.room.set_result(None)
                lane.room = None
            if lane.idle and not lane.waiting and self.lanes.get(lane.key) is lane:
                self.lanes.pop(lane.key, None)
