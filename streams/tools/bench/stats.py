"""Small, pure statistics for benchmark results (no numpy on purpose)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], not {q}")
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = math.ceil(pos)
    if low == high:
        return float(data[low])
    return float(data[low] + (data[high] - data[low]) * (pos - low))


def summary(values: Sequence[float], *, scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    """count, min, p50, p90, p99, max, mean of ``values`` x ``scale`` (e.g. 1000 for ms)."""
    if not values:
        return {"count": 0}
    data = sorted(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x * scale, digits)

    return {
        "count": len(data),
        "min": r(data[0]),
        "p50": r(percentile(data, 50)),
        "p90": r(percentile(data, 90)),
        "p99": r(percentile(data, 99)),
        "max": r(data[-1]),
        "mean": r(sum(data) / len(data)),
    }


def rate(count: int, start: float | None, end: float | None) -> float | None:
    """count / (end - start), or None when the interval is empty."""
    if start is None or end is None or end <= start or count <= 0:
        return None
    return count / (end - start)


def steady_rate(times: Sequence[float], low: float = 10, high: float = 90) -> float | None:
    """Completions per second between the ``low``-th and ``high``-th percentile of their
    times: the sustained rate, without the ramp-up and the tail."""
    if len(times) < 10:
        return None
    data = sorted(times)
    i = int(len(data) * low / 100)
    j = int(len(data) * high / 100) - 1
    if j <= i or data[j] <= data[i]:
        return None
    return (j - i) / (data[j] - data[i])


def per_second(times: Sequence[float], origin: float) -> list[int]:
    """How many of ``times`` fall in each whole second after ``origin``."""
    if not times:
        return []
    last = max(times)
    buckets = [0] * (int(last - origin) + 1 if last >= origin else 1)
    for t in times:
        k = int(t - origin)
        if 0 <= k < len(buckets):
            buckets[k] += 1
    return buckets


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def cpu_per_delivery(cpu_s: dict[str, float], deliveries: int) -> dict[str, Any]:
    """CPU microseconds per delivery of each role, and the workers' in receiver units.

    ``cpu_s`` is CPU seconds by role over a run (``workers``, ``receivers``, ...).
    The receivers run the same code on the same requests whatever the workers'
    code does, so their CPU per request measures how fast the machine was during
    the run. On this shared machine that drifts by a quarter between runs, and
    every role's CPU per delivery drifts with it. ``worker_cpu_per_receiver_cpu``
    divides the drift out, which makes two versions of the worker comparable
    across runs (docs/benchmarks.md). Not exact: a worker that sends in larger
    bursts also makes each request a little cheaper for the receiver.
    """
    if deliveries <= 0:
        return {}
    out: dict[str, Any] = {
        f"cpu_us_per_delivery_{role}": round(seconds / deliveries * 1e6)
        for role, seconds in cpu_s.items()
    }
    workers, receivers = cpu_s.get("workers"), cpu_s.get("receivers")
    broker = cpu_s.get("broker")
    if workers is not None and broker is not None:
        # Issue 22's measure: the pipeline's own processes; receivers are reported apart.
        out["cpu_us_per_delivery_pipeline"] = round((workers + broker) / deliveries * 1e6)
    if workers is not None and receivers:
        out["worker_cpu_per_receiver_cpu"] = round(workers / receivers, 3)
    return out
