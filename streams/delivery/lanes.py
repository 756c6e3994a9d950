"""Per-subscription lanes: isolation between endpoints sharing a worker.

Every subscription gets a :class:`Lane` with its own limit of requests in
flight (``max_in_flight``; 1 for ``ordered``) and its own token-bucket rate
limit (``rate_limit`` requests per second). The agent loop only *submits* to
lanes and never waits on one, so a slow or dead endpoint occupies its own lane
and nothing else: other subscriptions on the same partition keep flowing.

A lane's queue is bounded (twice its in-flight limit, at least 8). When it is
full, :meth:`Dispatcher.submit` says so and the caller defers the delivery to
the first retry tier without an attempt, instead of letting one endpoint hold
the partition's commit position and the worker's memory.
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


def queue_limit(max_in_flight: int) -> int:
    return max(8, 2 * max_in_flight)


@dataclass
class Lane:
    key: str
    limit: int
    bucket: TokenBucket | None
    queue: deque[Any] = field(default_factory=deque)
    in_flight: int = 0
    wakeup: asyncio.TimerHandle | None = None

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
        self._tasks: set[asyncio.Task[None]] = set()

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
        if len(lane.queue) >= (queue_cap or queue_limit(lane.limit)):
            return False
        lane.queue.append(job)
        self._pump(lane)
        return True

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

    def _wake(self, lane: Lane) -> None:
        lane.wakeup = None
        self._pump(lane)
        if lane.idle:  # the queue may have drained meanwhile (e.g. the rate changed)
            self.lanes.pop(lane.key, None)

    async def _execute(self, lane: Lane, job: Any) -> None:
        try:
            await self._run(job)
        except Exception as exc:  # run() handles its own errors; this is the last guard
            log.exception("delivery job failed unexpectedly")
            self._on_error(job, exc)
        finally:
            lane.in_flight -= 1
            self._pump(lane)
            if lane.idle:
                self.lanes.pop(lane.key, None)
