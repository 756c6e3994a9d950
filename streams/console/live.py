"""The operator's live view: the numbers of ``streams monitor``, refreshed every 2 s.

One sampler per worker, shared by every open browser: a request takes the
last sample when it is younger than :data:`FRESH_S`, or waits for the one
being taken, so ten browsers cost what one does. Nothing is sampled while
nobody watches.

A sample is :class:`streams.monitor.Monitor`'s (Kafka end offsets and the
consumer groups' commits: rates, lag per stage, retry-tier depths, DLQ depth)
with the delivery figures computed here from this worker's attempt log
instead of over HTTP. The charts of the last hour come from the attempt log
(attempts and success rate per minute, there from the first sample) and
from the samples kept since the view was first opened (events in per
second).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from streams.api.stats import failing, window_stats
from streams.console import charts
from streams.monitor import FAILING_ROWS, Monitor, api_view
from streams.records import Attempt

if TYPE_CHECKING:
    from streams.log.attempts import AttemptLog
    from streams.pipeline import Pipeline

#: A sample younger than this is served as it is.
FRESH_S = 1.5
#: Samples kept for the events-in chart: one hour at one per 2 s.
KEPT_SAMPLES = 1800
HOUR_S = 3600.0
#: Attempts may arrive up to this late relative to their time (rows are in arrival order).
DISORDER_S = 300.0
_AT = [f.name for f in fields(Attempt)].index("at")


def tail(rows: Sequence[tuple[Any, ...]], since: float) -> list[Attempt]:
    """The attempts at or after ``since`` from arrival-ordered rows, oldest first.

    Scans from the newest row back and stops once rows are older than
    ``since`` by more than :data:`DISORDER_S`, so a view of the last minutes
    never walks the whole log.
    """
    out: list[Attempt] = []
    for row in reversed(rows):
        at = row[_AT]
        if at < since - DISORDER_S:
            break
        if at >= since:
            out.append(Attempt(*row))
    out.reverse()
    return out


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


def minute_series(attempts: Sequence[Attempt], now: float) -> list[charts.Bucket]:
    return charts.bucketize(
        ((a.at, a.outcome == "delivered") for a in attempts), now=now, span_s=HOUR_S, count=60
    )


class LiveView:
    def __init__(self, pipeline: Pipeline, attempt_log: AttemptLog) -> None:
        self.p = pipeline
        self.log = attempt_log
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
        rows = self.log.rows() if self.log.enabled else []  # copied on the loop
        engine = self.p.extras.get("engine")
        breakers = getattr(engine, "breakers", {}) if engine is not None else {}
        open_breakers = sum(1 for b in list(breakers.values()) if not b.closed)
        snap = await asyncio.to_thread(self._sample, rows, time.time())
        snap.open_breakers = open_breakers
        for row in snap.failing:
            sub = self.p.subscriptions.get(str(row.get("subscription_id")))
            row["url"] = sub.url if sub is not None else None
            row["state"] = sub.state if sub is not None else "deleted"
        self._last = snap
        self.samples_taken += 1
        return snap

    def _sample(self, rows: Sequence[tuple[Any, ...]], now: float) -> LiveSnapshot:
        hour = tail(rows, now - HOUR_S)
        recent = [a for a in hour if a.at > now - 300]
        stats = {
            "tenant_id": None,
            "windows": {"5m": window_stats(recent, now=now, seconds=300)},
            "failing_window": "1h",
            "failing": failing(hour, now=now, seconds=HOUR_S, limit=FAILING_ROWS),
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
        minutes = minute_series(hour, now)
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
