"""Small charts drawn as SVG on the server: no script, no library, nothing to load.

Pure functions: numbers in, SVG text out (attributes only, no ``style``, so
the strict CSP needs no exception; colours come from ``console.css`` through
class names). Each chart carries ``role="img"`` and an ``aria-label`` that
says in words what it shows, for screen readers and for tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True, slots=True)
class Bucket:
    attempts: int = 0
    delivered: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.delivered / self.attempts if self.attempts else None


def bucketize(
    points: Iterable[tuple[float, bool]], *, now: float, span_s: float, count: int
) -> list[Bucket]:
    """Attempts ``(at, delivered)`` counted in ``count`` equal buckets ending at ``now``.

    Oldest bucket first; points outside ``(now - span_s, now]`` are left out.
    """
    width = span_s / count
    start = now - span_s
    attempts = [0] * count
    delivered = [0] * count
    for at, ok in points:
        if not start < at <= now:
            continue
        index = min(count - 1, int((at - start) / width))
        attempts[index] += 1
        delivered[index] += int(ok)
    return [Bucket(a, d) for a, d in zip(attempts, delivered, strict=True)]


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def bar_chart(buckets: Sequence[Bucket], *, width: int = 120, height: int = 24, label: str) -> str:
    """Attempts per bucket as bars, the delivered part of each bar in its own class."""
    peak = max((b.attempts for b in buckets), default=0)
    slot = width / max(1, len(buckets))
    bars: list[str] = []
    for i, b in enumerate(buckets):
        if not b.attempts:
            continue
        x = _fmt(i * slot + 0.5)
        w = _fmt(max(1.0, slot - 1))
        total_h = max(1.0, height * b.attempts / peak)
        ok_h = total_h * b.delivered / b.attempts
        failed_h = total_h - ok_h
        if failed_h > 0:
            bars.append(
                f'<rect class="bar-failed" x="{x}" y="{_fmt(height - total_h)}" '
                f'width="{w}" height="{_fmt(failed_h)}"/>'
            )
        if ok_h > 0:
            bars.append(
                f'<rect class="bar-ok" x="{x}" y="{_fmt(height - ok_h)}" '
                f'width="{w}" height="{_fmt(ok_h)}"/>'
            )
    return _svg(width, height, label, "".join(bars))


def line_chart(
    values: Sequence[float | None],
    *,
    width: int = 300,
    height: int = 60,
    label: str,
    floor: float = 0.0,
    ceiling: float | None = None,
) -> str:
    """A polyline of the values (None leaves a gap), scaled from ``floor`` to the peak."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    top = ceiling if ceiling is not None else max(known, default=floor)
    span = (top - floor) or 1.0
    step = width / max(1, len(values) - 1)
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
            continue
        y = height - 1 - (height - 2) * (min(max(v, floor), top) - floor) / span
        runs[-1].append(f"{_fmt(i * step)},{_fmt(y)}")
    lines = "".join(
        f'<polyline class="line" fill="none" points="{" ".join(run)}"/>'
        if len(run) > 1
        else '<circle class="dot" cx="{}" cy="{}" r="2"/>'.format(*run[0].split(","))
        for run in runs
        if run
    )
    return _svg(width, height, label, lines)


def _svg(width: int, height: int, label: str, body: str) -> str:
    text = escape(label, quote=True)
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{text}">'
        f"<title>{escape(label)}</title>"
        f'<rect class="chart-frame" x="0" y="0" width="{width}" height="{height}"/>'
        f"{body}</svg>"
    )
