"""The operator's live view: the numbers of ``streams monitor``, refreshed every 2 s.

One sampler per worker, shared by every open browser: a request takes the
last sample when it is younger than :data:`FRESH_S`, or waits for the one
being taken, so ten browsers cost what one does. Nothing is sampled while
nobody watches.

A sample is :class:`streams.monitor.Monitor`'s (Kafka end offsets and the
consumer groups' commits: rates, lag per stage, retry-tier depths, DLQ depth)
with the delivery figures of ``GET /v1/stats`` taken from this log node's
delivery-log store through the same method (:meth:`StatsRoutes.overall_for
<streams.api.stats.StatsRoutes.overall_for>`) instead of over HTTP. The charts
of the last hour come from the store's minute buckets (attempts and success
rate per minute, there from the first sample) and from the samples kept since
the view was first opened (events in per second). On a worker without a log
(or with a faulty store) the Kafka figures still show, with the reason the
delivery figures do not.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from streams.api.auth import ADMIN
from streams.console import charts
from streams.errors import UnavailableError
from streams.monitor import FAILING_ROWS, Monitor, api_view

if TYPE_CHECKING:
    from streams.api.stats import StatsRoutes
    from streams.pipeline import Pipeline

#: A sample younger than this is served as it is.
FRESH_S = 1.5
#: Samples kept for the events-in chart: one hour at one per 2 s.
KEPT_SAMPLES = 1800
HOUR_S = 3600.0
#: Minutes the attempts and success-rate charts cover.
CHART_MINUTES = 60


@dataclass
class LiveSnapshot:
    at: float
    kafka_error: str | None = None
    events_in_per_s: float | None = None
    deliveries_per_s: float | None = None
    success_rate_5m: float | None = None
    p50_ms_5m: float | None = None
    p99_ms_5m: float | None = None
    attempts_5m: int = 0
    stages: list[dict[str, Any]] = field(default_factory=list)
    retry_tiers: list[dict[str, Any]] = field(default_factory=list)
    dlq_depth: int | None = None
    open_breakers: int = 0
    failing: list[dict[str, Any]] = field(default_factory=list)
    chart_events: str = ""
    chart_attempts: str = ""
    chart_success: str = ""
    #: Why the delivery figures are missing (no log on this worker, a store fault).
    log_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def minute_series(minutes: Sequence[dict[str, Any]]) -> list[charts.Bucket]:
    """The store's per-minute counts (:meth:`StatsRoutes.minutes_for`) as chart buckets."""
    return [charts.Bucket(m["attempts"], m["delivered"]) for m in minutes]


class LiveView:
    def __init__(self, pipeline: Pipeline, stats: StatsRoutes) -> None:
        self.p = pipeline
        self.stats = stats
        self._monitor: Monitor | None = None
        self._stats: dict[str, Any] = {}
        self._last: LiveSnapshot | None = None
        self._taking: asyncio.Task[LiveSnapshot] | None = None
        self._events: deque[tuple[float, float | None]] = deque(maxlen=KEPT_SAMPLES)
        self.samples_taken = 0

    async def current(self) -> LiveSnapshot:
        last = self._last
        if last is not None and time.time() - last.at < FRESH_S:
            return last
        if self._taking is None or self._taking.done():
            self._taking = asyncio.create_task(self._take())
        return await asyncio.shield(self._taking)

    async def _take(self) -> LiveSnapshot:
        engine = self.p.extras.get("engine")
        breakers = getattr(engine, "breakers", {}) if engine is not None else {}
        open_breakers = sum(1 for b in list(breakers.values()) if not b.closed)
        log_error = None
        try:
            # The operator's view: every tenant's figures, as /v1/stats answers the admin.
            stats = await self.stats.overall_for(ADMIN, None, FAILING_ROWS)
            minutes = await self.stats.minutes_for(ADMIN, CHART_MINUTES)
        except UnavailableError as exc:
            stats, minutes, log_error = {}, [], str(exc)
        snap = await asyncio.to_thread(self._sample, stats, minutes, time.time())
        snap.open_breakers = open_breakers
        snap.log_error = log_error
        self._last = snap
        self.samples_taken += 1
        return snap

    def _sample(
        self, stats: dict[str, Any], minutes: Sequence[dict[str, Any]], now: float
    ) -> LiveSnapshot:
        self._stats = stats
        if self._monitor is None:
            self._monitor = Monitor(self.p.settings, fetch_stats=lambda: self._stats)
        sample = self._monitor.sample()
        api = api_view(stats)
        snap = LiveSnapshot(
            at=now,
            kafka_error=sample.kafka_error,
            events_in_per_s=sample.events_in_per_s,
            deliveries_per_s=sample.deliveries_out_per_s,
            success_rate_5m=api["success_rate_5m"],
            p50_ms_5m=api["p50_ms_5m"],
            p99_ms_5m=api["p99_ms_5m"],
            attempts_5m=api["attempts_5m"] or 0,
            dlq_depth=sample.dlq_depth,
            failing=api["failing"],
        )
        for stage in sample.stages:
            row = {"name": stage.name, "lag": stage.lag, "rate_per_s": stage.rate_per_s}
            (snap.retry_tiers if stage.kind == "retry" else snap.stages).append(row)
        self._events.append((now, sample.events_in_per_s))
        series = [v for at, v in self._events if at > now - HOUR_S]
        snap.chart_events = charts.line_chart(
            series, width=360, height=60, label=f"Events in per second, {len(series)} samples"
        )
        buckets = minute_series(minutes)
        total = sum(b.attempts for b in buckets)
        snap.chart_attempts = charts.bar_chart(
            buckets, width=360, height=60, label=f"Attempts per minute, last hour: {total}"
        )
        snap.chart_success = charts.line_chart(
            [b.success_rate for b in buckets],
            width=360,
            height=60,
            label="Success rate per minute, last hour",
            ceiling=1.0,
        )
        return snap

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
