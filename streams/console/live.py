"""The operator's live view: the numbers of ``streams monitor``, refreshed every 2 s.

One sampler per worker, shared by every open browser: a request takes the
last sample when it is younger than :data:`FRESH_S`, or waits for the one
being taken, so ten browsers cost what one does. Nothing is sampled while
nobody watches.

A sample is :class:`streams.monitor.Monitor`'s (Kafka end offsets and the
consumer groups' commits: rates, lag per stage, retry-tier depths, DLQ depth)
with the delivery figures read from this worker's delivery-log store
(:mod:`streams.log.store`) instead of over HTTP. The charts of the last hour
come from the store's minute buckets (attempts and success rate per minute,
there from the first sample) and from the samples kept since the view was
first opened (events in per second). On a worker that keeps no log those
figures are empty (no attempts).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from streams.console import charts
from streams.errors import UnavailableError
from streams.log.store import MINUTE, window_view
from streams.monitor import FAILING_ROWS, Monitor, api_view

if TYPE_CHECKING:
    from streams.log.service import DeliveryLog
    from streams.pipeline import Pipeline

#: A sample younger than this is served as it is.
FRESH_S = 1.5
#: Samples kept for the events-in chart: one hour at one per 2 s.
KEPT_SAMPLES = 1800
HOUR_S = 3600.0


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LiveView:
    def __init__(self, pipeline: Pipeline, delivery_log: DeliveryLog) -> None:
        self.p = pipeline
        self.log = delivery_log
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
        snap = await asyncio.to_thread(self._sample, time.time())
        snap.open_breakers = open_breakers
        for row in snap.failing:
            sub = self.p.subscriptions.get(str(row.get("subscription_id")))
            row["url"] = sub.url if sub is not None else None
            row["state"] = sub.state if sub is not None else "deleted"
        self._last = snap
        self.samples_taken += 1
        return snap

    def _figures(
        self, now: float
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[charts.Bucket]]:
        """The last 5 minutes, the subscriptions failing in the last hour, and the
        hour's attempts per minute, from the store; empty on a worker without a log."""
        try:
            reader = self.log.reader()
            window = reader.windows("all", "", now, names=("5m",))["5m"]
            failing = reader.failing(None, now, FAILING_ROWS)
            minutes = reader.series("all", "", MINUTE, 60, now)
        except UnavailableError:
            return window_view([]), [], [charts.Bucket() for _ in range(60)]
        return window, failing, [charts.Bucket(a, d) for _, a, d in minutes]

    def _sample(self, now: float) -> LiveSnapshot:
        window, failing, minutes = self._figures(now)
        stats = {
            "tenant_id": None,
            "windows": {"5m": window},
            "failing_window": "1h",
            "failing": failing,
        }
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
        total = sum(b.attempts for b in minutes)
        snap.chart_attempts = charts.bar_chart(
            minutes, width=360, height=60, label=f"Attempts per minute, last hour: {total}"
        )
        snap.chart_success = charts.line_chart(
            [b.success_rate for b in minutes],
            width=360,
            height=60,
            label="Success rate per minute, last hour",
            ceiling=1.0,
        )
        return snap

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
