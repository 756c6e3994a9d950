"""The live view's delivery figures, folded in as attempts arrive: a minute bucket each.

The live view used to copy the attempt log and rebuild every attempt of the
last hour as an object on each sample (one per 1.5 s while anyone watches):
0.6 s of CPU per sample with 180,000 attempts in the hour, and ten open pages
cost a worker 10% of a core (``streams bench console-live``, docs/benchmarks.md).
:class:`LiveFigures` instead folds only the attempts that arrived since the
previous sample into per-minute buckets (counts, a latency histogram, and per
endpoint its attempts, failures and newest error), and each figure reads at
most 66 buckets:

- :meth:`~LiveFigures.window`: attempts, success rate, p50/p99 latency of the
  last minutes, as ``GET /v1/stats`` shapes a window. A window covers whole
  minutes, from the one holding ``now - seconds``: 5 minutes count 5 to 6.
- :meth:`~LiveFigures.failing`: the endpoints with the most failed attempts.
- :meth:`~LiveFigures.series`: attempts and deliveries per minute, for charts.

Latencies are counted in bins of an eighth of an octave from 0.5 ms, so a
percentile is within 4.5% of the exact one. Pure: the time is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from streams.console import charts
from streams.records import Attempt

MINUTE = 60
#: Minutes kept: the last hour, plus attempts arriving up to 5 minutes late.
KEPT_S = 3600 + 300
#: Latency histogram: bin 0 is below HIST_BASE_MS; bin i >= 1 is
#: [HIST_BASE_MS * 2^((i-1)/8), HIST_BASE_MS * 2^(i/8)); the last is open.
HIST_BASE_MS = 0.5
HIST_PER_OCTAVE = 8
HIST_BINS = 1 + 17 * HIST_PER_OCTAVE

_FIELDS = [f.name for f in fields(Attempt)]
_AT, _OUTCOME, _DURATION, _STATUS, _ERROR, _SUB, _TENANT = (
    _FIELDS.index(n)
    for n in ("at", "outcome", "duration_ms", "status", "error", "subscription_id", "tenant_id")
)


def latency_bin(ms: float) -> int:
    if not ms >= HIST_BASE_MS:  # also NaN
        return 0
    return min(HIST_BINS - 1, 1 + int(math.log2(ms / HIST_BASE_MS) * HIST_PER_OCTAVE))


def bin_ms(index: int) -> float:
    """The value a bin stands for: its geometric middle (bin 0: its upper bound)."""
    if index <= 0:
        return HIST_BASE_MS
    return HIST_BASE_MS * 2 ** ((index - 0.5) / HIST_PER_OCTAVE)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of the counted latencies, in ms."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return round(bin_ms(index), 3)
    return None  # pragma: no cover - the ranks add up to the total


@dataclass
class EndpointMinute:
    tenant_id: str
    attempts: int = 0
    failures: int = 0
    #: The newest attempt not delivered: (at, status, error).
    last_error: tuple[float, int | None, str | None] | None = None


@dataclass
class MinuteBucket:
    attempts: int = 0
    delivered: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    endpoints: dict[str, EndpointMinute] = field(default_factory=dict)

    def add(self, row: tuple[Any, ...]) -> None:
        self.attempts += 1
        ok = row[_OUTCOME] == "delivered"
        self.delivered += ok
        b = latency_bin(row[_DURATION])
        self.hist[b] = self.hist.get(b, 0) + 1
        sub = self.endpoints.get(row[_SUB])
        if sub is None:
            sub = self.endpoints[row[_SUB]] = EndpointMinute(row[_TENANT])
        sub.attempts += 1
        if not ok:
            sub.failures += 1
            if sub.last_error is None or row[_AT] >= sub.last_error[0]:
                sub.last_error = (row[_AT], row[_STATUS], row[_ERROR])


def _error_view(last: tuple[float, int | None, str | None] | None) -> dict[str, Any] | None:
    if last is None:
        return None
    at, status, error = last
    return {
        "at": at,
        "status": status,
        "error": error or (f"HTTP {status}" if status is not None else None),
    }


class LiveFigures:
    """Attempts folded into minute buckets; :meth:`fold` takes only new rows."""

    def __init__(self) -> None:
        self.minutes: dict[int, MinuteBucket] = {}

    def fold(self, rows: Iterable[tuple[Any, ...]], now: float) -> int:
        """Count ``rows`` (attempt-log rows) in their minutes and forget minutes older
        than :data:`KEPT_S`; returns how many rows were counted."""
        oldest = int((now - KEPT_S) // MINUTE) * MINUTE
        minutes = self.minutes
        counted = 0
        for row in rows:
            start = int(row[_AT] // MINUTE) * MINUTE
            if start < oldest:
                continue
            bucket = minutes.get(start)
            if bucket is None:
                bucket = minutes[start] = MinuteBucket()
            bucket.add(row)
            counted += 1
        for start in [s for s in minutes if s < oldest]:
            del minutes[start]
        return counted

    def _since(self, now: float, seconds: float) -> list[MinuteBucket]:
        first = int((now - seconds) // MINUTE) * MINUTE
        return [b for start, b in self.minutes.items() if start >= first]

    def window(self, now: float, seconds: float) -> dict[str, Any]:
        """``attempts``, ``delivered``, ``success_rate``, ``latency_ms`` (p50, p99)."""
        attempts = delivered = 0
        hist: dict[int, int] = {}
        for b in self._since(now, seconds):
            attempts += b.attempts
            delivered += b.delivered
            for k, n in b.hist.items():
                hist[k] = hist.get(k, 0) + n
        return {
            "attempts": attempts,
            "delivered": delivered,
            "success_rate": round(delivered / attempts, 6) if attempts else None,
            "latency_ms": {"p50": hist_percentile(hist, 0.50), "p99": hist_percentile(hist, 0.99)},
        }

    def failing(self, now: float, seconds: float, limit: int) -> list[dict[str, Any]]:
        """Endpoints with failed attempts in the window, most failures first (the shape
        of ``GET /v1/stats``'s ``failing``)."""
        by_sub: dict[str, EndpointMinute] = {}
        for b in self._since(now, seconds):
            for sub_id, m in b.endpoints.items():
                total = by_sub.get(sub_id)
                if total is None:
                    total = by_sub[sub_id] = EndpointMinute(m.tenant_id)
                total.attempts += m.attempts
                total.failures += m.failures
                last = m.last_error
                if last is not None and (
                    total.last_error is None or last[0] >= total.last_error[0]
                ):
                    total.last_error = last
        ranked = sorted(
            ((sub_id, m) for sub_id, m in by_sub.items() if m.failures),
            key=lambda item: (-item[1].failures, 1 - item[1].failures / item[1].attempts, item[0]),
        )
        return [
            {
                "subscription_id": sub_id,
                "tenant_id": m.tenant_id,
                "attempts": m.attempts,
                "failures": m.failures,
                "last_error": _error_view(m.last_error),
                "success_rate": round(1 - m.failures / m.attempts, 6),
            }
            for sub_id, m in ranked[:limit]
        ]

    def series(self, now: float, count: int = 60) -> list[charts.Bucket]:
        """Attempts and deliveries in each of the last ``count`` minutes, oldest first
        (the last is the minute in progress)."""
        last = int(now // MINUTE) * MINUTE
        out = []
        for i in range(count):
            b = self.minutes.get(last - (count - 1 - i) * MINUTE)
            out.append(charts.Bucket(b.attempts, b.delivered) if b else charts.Bucket())
        return out
