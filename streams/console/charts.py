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
from datetime import UTC, datetime
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


def _svg(width: int, height: int, label: str, body: str, *, extra_class: str = "") -> str:
    text = escape(label, quote=True)
    classes = f"chart {extra_class}".strip()
    return (
        f'<svg class="{classes}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{text}">'
        f"<title>{escape(label)}</title>"
        f'<rect class="chart-frame" x="0" y="0" width="{width}" height="{height}"/>'
        f"{body}</svg>"
    )


#: Seconds of the two bucket widths :func:`history_chart` names (hours and UTC days).
HOUR_S, DAY_S = 3600, 86_400


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _bar_name(start: float, span_s: int) -> str:
    """A bar's name: ``18:00`` for an hour, ``Dec 02`` for a day (UTC)."""
    at = datetime.fromtimestamp(start, UTC)
    return at.strftime("%b %d") if span_s >= DAY_S else at.strftime("%H:%M")


def _tick_name(start: float, span_s: int) -> str:
    """A bar's x-axis label: its name, or its day's at midnight (``Dec 02``, UTC)."""
    if span_s < DAY_S and datetime.fromtimestamp(start, UTC).hour == 0:
        return _bar_name(start, DAY_S)
    return _bar_name(start, span_s)


def _bar_tip(start: float, span_s: int, b: Bucket) -> str:
    at = datetime.fromtimestamp(start, UTC)
    when = at.strftime("%b %d (UTC)") if span_s >= DAY_S else at.strftime("%b %d %H:%M UTC")
    if not b.attempts:
        return f"{when}: no attempts"
    return f"{when}: {_plural(b.attempts, 'attempt')}, {b.delivered:,} delivered"


def history_label(buckets: Sequence[Bucket], *, start: float, span_s: int, period: str) -> str:
    """What :func:`history_chart` shows, in words: totals, success rate, busiest bar
    (the earliest of equals)."""
    attempts = sum(b.attempts for b in buckets)
    if not attempts:
        return f"No attempts in the last {period}"
    delivered = sum(b.delivered for b in buckets)
    busiest = max(range(len(buckets)), key=lambda i: buckets[i].attempts)
    name = _bar_name(start + busiest * span_s, span_s)
    unit = "day" if span_s >= DAY_S else "hour"
    where = name if span_s >= DAY_S else f"{name} UTC"
    return (
        f"{period}: {_plural(attempts, 'attempt')}, {delivered:,} delivered "
        f"({100 * delivered / attempts:.1f}%); busiest {unit} {where} with "
        f"{_plural(buckets[busiest].attempts, 'attempt')}"
    )


def history_chart(
    buckets: Sequence[Bucket],
    *,
    start: float,
    span_s: int,
    period: str,
    label_every: int = 1,
    width: int = 960,
    height: int = 200,
) -> str:
    """Attempts per hour or UTC day (``span_s``) from ``start``, oldest first, as stacked
    bars (delivered at the base, the rest above) with the peak and 0 on the y axis, bar
    names along the x axis (every day; hours whose number is a multiple of
    ``label_every``, midnight named by its day), a legend and a ``<title>`` per bar
    (hover tooltip).

    Empty buckets are gaps. Without any attempt there is no frame at all: a sentence
    says so (``No attempts in the last {period}``)."""
    label = history_label(buckets, start=start, span_s=span_s, period=period)
    if not any(b.attempts for b in buckets):
        return f'<p class="empty chart-empty">{escape(label)}.</p>'
    peak = max(b.attempts for b in buckets)
    left, right, top, bottom = 48, 8, 28, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    slot = plot_w / len(buckets)
    gap = min(2.0, slot / 4)
    parts = [
        # The legend, above the plot.
        f'<rect class="bar-ok" x="{left}" y="6" width="10" height="10"/>'
        f'<text class="chart-legend" x="{left + 14}" y="15">delivered</text>'
        f'<rect class="bar-failed" x="{left + 90}" y="6" width="10" height="10"/>'
        f'<text class="chart-legend" x="{left + 104}" y="15">failed or retried</text>',
        # The y axis: the peak at the top, 0 at the base.
        f'<line class="chart-grid" x1="{left}" y1="{top}" x2="{width - right}" y2="{top}"/>'
        f'<line class="chart-axis" x1="{left}" y1="{base}" x2="{width - right}" y2="{base}"/>'
        f'<text class="chart-tick" x="{left - 6}" y="{top + 4}" text-anchor="end">'
        f"{peak:,}</text>"
        f'<text class="chart-tick" x="{left - 6}" y="{base + 4}" text-anchor="end">0</text>',
    ]
    daily = span_s >= DAY_S
    for i, b in enumerate(buckets):
        at = start + i * span_s
        x0 = left + i * slot
        # The x axis: a day's name under its bar; an hour's at the hour's start.
        hour = datetime.fromtimestamp(at, UTC).hour
        if daily or hour % label_every == 0:
            tx = _fmt(x0 + slot / 2) if daily else _fmt(x0)
            parts.append(
                f'<text class="chart-tick" x="{tx}" y="{height - 6}" text-anchor="middle">'
                f"{escape(_tick_name(at, span_s))}</text>"
            )
        bar = [f"<title>{escape(_bar_tip(at, span_s, b))}</title>"]
        # The whole column answers the hover, so a short bar is easy to point at.
        bar.append(
            f'<rect class="bar-hit" x="{_fmt(x0)}" y="{top}" width="{_fmt(slot)}" '
            f'height="{plot_h}"/>'
        )
        if b.attempts:
            x, w = _fmt(x0 + gap / 2), _fmt(max(1.0, slot - gap))
            total_h = max(1.0, plot_h * b.attempts / peak)
            failed_h = total_h * (b.attempts - b.delivered) / b.attempts
            if b.delivered < b.attempts:
                # A failure is never thinner than a pixel, however busy its hour.
                failed_h = min(total_h, max(1.0, failed_h))
            ok_h = total_h - failed_h
            if failed_h > 0:
                bar.append(
                    f'<rect class="bar-failed" x="{x}" y="{_fmt(base - total_h)}" '
                    f'width="{w}" height="{_fmt(failed_h)}"/>'
                )
            if ok_h >= 0.05:  # what would be drawn 0 high is left out
                bar.append(
                    f'<rect class="bar-ok" x="{x}" y="{_fmt(base - ok_h)}" '
                    f'width="{w}" height="{_fmt(ok_h)}"/>'
                )
        parts.append(f'<g class="bar">{"".join(bar)}</g>')
    return _svg(width, height, label, "".join(parts), extra_class="history")
