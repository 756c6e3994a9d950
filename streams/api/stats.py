"""Delivery statistics over recent windows: ``/v1/stats`` and ``/v1/subscriptions/{id}/stats``.

Computed from the worker's in-memory attempt log (:mod:`streams.log.attempts`,
which follows the ``attempts`` topic, so it covers every worker's attempts)
over the last 5 minutes, hour and day:

- ``attempts``, ``delivered``, ``retried``, ``failed`` (gave up: dead-lettered)
  and ``success_rate`` = delivered / attempts (null without attempts);
- ``latency_ms``: p50 and p99 of the request duration (nearest rank);
- ``status_classes``: attempts per ``2xx`` .. ``5xx`` / ``error``;
- ``last_error``: the newest failed attempt in the window.

``/v1/stats`` adds ``failing``: the subscriptions with the most failed
attempts in the last hour, each with its last error and current consecutive
failures; ``/v1/subscriptions/{id}/stats`` adds the subscription's state and
its current failure run (consecutive failures, since when, last error) from
the auto-disable state (:mod:`streams.health`).

The window functions are pure (:func:`window_stats`, :func:`failing`); the
handlers copy the attempt log on the loop and compute in a thread. A tenant
token sees only its own tenant's attempts and subscriptions.

When the attempt log's memory (``STREAMS_ATTEMPT_LOG_MEMORY``) holds less than
a window, ``attempt_log.oldest_at`` says from when the numbers count.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import scope, visible
from streams.api.http import json_response, principal
from streams.delivery.outcome import status_class
from streams.errors import InvalidRequestError, NotFoundError
from streams.log.attempts import materialize
from streams.records import Attempt

if TYPE_CHECKING:
    from streams.log.attempts import AttemptLog
    from streams.pipeline import Pipeline

#: The windows every answer reports: name -> seconds.
WINDOWS: tuple[tuple[str, float], ...] = (("5m", 300.0), ("1h", 3600.0), ("24h", 86400.0))
#: The window ``failing`` ranks subscriptions over.
FAILING_WINDOW = ("1h", 3600.0)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1); None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _error_view(a: Attempt) -> dict[str, Any]:
    return {"at": a.at, "status": a.status, "error": a.error or _status_text(a.status)}


def _status_text(status: int | None) -> str | None:
    return f"HTTP {status}" if status is not None else None


def window_stats(attempts: Iterable[Attempt], *, now: float, seconds: float) -> dict[str, Any]:
    """Statistics of the attempts made after ``now - seconds`` (a later clock counts too)."""
    since = now - seconds
    durations: list[float] = []
    counts = {"delivered": 0, "retry": 0, "give_up": 0}
    classes: dict[str, int] = {}
    last_error: Attempt | None = None
    for a in attempts:
        if a.at <= since:
            continue
        durations.append(a.duration_ms)
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
        cls = status_class(a.status)
        classes[cls] = classes.get(cls, 0) + 1
        if a.outcome != "delivered" and (last_error is None or a.at >= last_error.at):
            last_error = a
    durations.sort()
    total = len(durations)
    return {
        "attempts": total,
        "delivered": counts["delivered"],
        "retried": counts["retry"],
        "failed": counts["give_up"],
        "success_rate": round(counts["delivered"] / total, 6) if total else None,
        "latency_ms": {"p50": percentile(durations, 0.50), "p99": percentile(durations, 0.99)},
        "status_classes": dict(sorted(classes.items())),
        "last_error": _error_view(last_error) if last_error is not None else None,
    }


def windows(
    attempts: Sequence[Attempt],
    *,
    now: float,
    spans: tuple[tuple[str, float], ...] = WINDOWS,
) -> dict[str, dict[str, Any]]:
    return {name: window_stats(attempts, now=now, seconds=seconds) for name, seconds in spans}


def failing(
    attempts: Iterable[Attempt], *, now: float, seconds: float, limit: int
) -> list[dict[str, Any]]:
    """Subscriptions with failed attempts in the window, most failures first."""
    since = now - seconds
    rows: dict[str, dict[str, Any]] = {}
    for a in attempts:
        if a.at <= since:
            continue
        row = rows.get(a.subscription_id)
        if row is None:
            row = rows[a.subscription_id] = {
                "subscription_id": a.subscription_id,
                "tenant_id": a.tenant_id,
                "attempts": 0,
                "failures": 0,
                "last_error": None,
                "_last_at": -math.inf,
            }
        row["attempts"] += 1
        if a.outcome != "delivered":
            row["failures"] += 1
            if a.at >= row["_last_at"]:
                row["_last_at"] = a.at
                row["last_error"] = _error_view(a)
    out = [r for r in rows.values() if r["failures"]]
    for r in out:
        del r["_last_at"]
        r["success_rate"] = round(1 - r["failures"] / r["attempts"], 6)
    out.sort(key=lambda r: (-r["failures"], r["success_rate"], r["subscription_id"]))
    return out[:limit]


def _log_view(snapshot: Sequence[Attempt], capacity: int) -> dict[str, Any]:
    return {
        "attempts_in_memory": len(snapshot),
        "capacity": capacity,
        "oldest_at": min((a.at for a in snapshot), default=None),
    }


def overall(
    snapshot: Sequence[Attempt], *, tenant_id: str | None, now: float, limit: int, capacity: int
) -> dict[str, Any]:
    mine = [a for a in snapshot if tenant_id is None or a.tenant_id == tenant_id]
    return {
        "tenant_id": tenant_id,
        "now": now,
        "windows": windows(mine, now=now),
        "failing_window": FAILING_WINDOW[0],
        "failing": failing(mine, now=now, seconds=FAILING_WINDOW[1], limit=limit),
        "attempt_log": _log_view(snapshot, capacity),
    }


def _parse_limit(value: str | None) -> int:
    try:
        limit = int(value) if value is not None else 10
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequestError("`limit`: a whole number from 1 to 100", field="limit")
    return limit


class StatsRoutes:
    def __init__(self, pipeline: Pipeline, log_index: AttemptLog) -> None:
        self.p = pipeline
        self.log = log_index

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/stats", self.stats)
        router.add_get("/v1/subscriptions/{id}/stats", self.subscription_stats)

    def _health(self, sub_id: str) -> Any:
        health = self.p.extras.get("health")
        return health.state(sub_id) if health is not None else None

    async def stats(self, request: web.Request) -> web.Response:
        tenant = scope(principal(request), request.query.get("tenant_id"))
        limit = _parse_limit(request.query.get("limit"))
        self.log.require()
        rows = self.log.rows()
        now = time.time()
        capacity = self.log.capacity

        def compute() -> dict[str, Any]:
            return overall(
                materialize(rows), tenant_id=tenant, now=now, limit=limit, capacity=capacity
            )

        view = await asyncio.to_thread(compute)
        for row in view["failing"]:
            sub = self.p.subscriptions.get(row["subscription_id"])
            state = self._health(row["subscription_id"])
            row["state"] = sub.state if sub is not None else "deleted"
            row["url"] = sub.url if sub is not None else None
            row["consecutive_failures"] = state.consecutive if state is not None else None
        return json_response(view)

    async def subscription_stats(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["id"]
        sub = self.p.subscriptions.get(sub_id)
        if sub is None or not visible(principal(request), sub.tenant_id):
            raise NotFoundError(f"no subscription {sub_id}")
        self.log.require()
        rows = self.log.rows()
        now = time.time()
        capacity = self.log.capacity

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            snapshot = materialize(rows)
            mine = [a for a in snapshot if a.subscription_id == sub_id]
            return windows(mine, now=now), _log_view(snapshot, capacity)

        counts, log_view = await asyncio.to_thread(compute)

        state = self._health(sub_id)
        return json_response(
            {
                "subscription_id": sub.id,
                "tenant_id": sub.tenant_id,
                "state": sub.state,
                "disabled_reason": sub.disabled_reason,
                "consecutive_failures": state.consecutive if state is not None else None,
                "failing_since": state.failing_since if state is not None else None,
                "last_error": state.last_error if state is not None else None,
                "now": now,
                "windows": counts,
                "attempt_log": log_view,
            }
        )
