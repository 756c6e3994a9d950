"""Delivery statistics over recent windows: ``/v1/stats`` and ``/v1/subscriptions/{id}/stats``.

Answered from this log node's delivery-log store (:mod:`streams.log.store`), which
counts every attempt of the cluster per minute and per hour, for everything, each
tenant and each subscription. Over the last 5 minutes, hour, day and 7 days:

- ``attempts``, ``delivered``, ``retried``, ``failed`` (gave up: dead-lettered)
  and ``success_rate`` = delivered / attempts (null without attempts);
- ``latency_ms``: p50 and p99 of the request duration, from a histogram whose
  bins are 9% wide (within 4.5% of the exact nearest-rank value);
- ``status_classes``: attempts per ``2xx`` .. ``5xx`` / ``error``;
- ``last_error``: the newest failed attempt in the window.

Windows are counted in whole buckets (minutes up to a day, hours for 7 days), so
each reaches up to one bucket further back than its name.

``/v1/stats`` adds ``failing``: the subscriptions with the most failed attempts
in the last hour, each with its last error and current consecutive failures;
``/v1/subscriptions/{id}/stats`` adds the subscription's state, its current
failure run (:mod:`streams.health`) and its attempts per hour over the last 24 h
(``hourly``, the console's chart). A tenant token sees only its own tenant's
attempts, subscriptions and figures (``attempt_log``); the admin also sees this
node's store and indexer (``log_node``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import Principal, scope, visible
from streams.api.http import json_response, principal
from streams.errors import InvalidRequestError, NotFoundError
from streams.log.service import DeliveryLog
from streams.log.store import HOUR, MINUTE

if TYPE_CHECKING:
    from streams.pipeline import Pipeline
    from streams.records import Subscription

#: The window ``failing`` ranks subscriptions over.
FAILING_WINDOW = ("1h", 3600)


def _parse_limit(value: str | None) -> int:
    try:
        limit = int(value) if value is not None else 10
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequestError("`limit`: a whole number from 1 to 100", field="limit")
    return limit


class StatsRoutes:
    """The statistics routes, and the methods behind them that take the caller
    (:class:`~streams.api.auth.Principal`): the web console calls the same ones."""

    def __init__(self, pipeline: Pipeline, delivery_log: DeliveryLog) -> None:
        self.p = pipeline
        self.log = delivery_log

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/stats", self.stats)
        router.add_get("/v1/subscriptions/{id}/stats", self.subscription_stats)

    def _health(self, sub_id: str) -> Any:
        health = self.p.extras.get("health")
        return health.state(sub_id) if health is not None else None

    async def stats(self, request: web.Request) -> web.Response:
        limit = _parse_limit(request.query.get("limit"))
        return json_response(
            await self.overall_for(principal(request), request.query.get("tenant_id"), limit)
        )

    async def overall_for(
        self, who: Principal, tenant_id: str | None, limit: int = 10
    ) -> dict[str, Any]:
        """``GET /v1/stats`` for ``who``: a tenant's own figures only, whatever it asks."""
        tenant = scope(who, tenant_id)
        reader = self.log.reader()
        now = time.time()

        def compute() -> dict[str, Any]:
            kind, key = ("all", "") if tenant is None else ("tenant", tenant)
            return {
                "tenant_id": tenant,
                "now": now,
                "windows": reader.windows(kind, key, now),
                "failing_window": FAILING_WINDOW[0],
                "failing": reader.failing(tenant, now, limit, FAILING_WINDOW[1]),
                # A tenant's own figures only: the cluster's volume is the admin's.
                "attempt_log": reader.figures(tenant),
            }

        view = await asyncio.to_thread(compute)
        for row in view["failing"]:
            sub = self.p.subscriptions.get(row["subscription_id"])
            state = self._health(row["subscription_id"])
            row["state"] = sub.state if sub is not None else "deleted"
            row["url"] = sub.url if sub is not None else None
            row["consecutive_failures"] = state.consecutive if state is not None else None
        if who.admin:
            view["log_node"] = self.log.status()
        return view

    async def subscription_stats(self, request: web.Request) -> web.Response:
        return json_response(
            await self.subscription_for(principal(request), request.match_info["id"])
        )

    async def subscription_for(self, who: Principal, sub_id: str) -> dict[str, Any]:
        """``GET /v1/subscriptions/{id}/stats``: NotFoundError unless ``who`` may see it."""
        sub = self.p.subscriptions.get(sub_id)
        if sub is None or not visible(who, sub.tenant_id):
            raise NotFoundError(f"no subscription {sub_id}")
        reader = self.log.reader()
        now = time.time()

        def compute() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            health = reader.health([sub_id], now)[sub_id]
            return reader.windows("sub", sub_id, now), health, reader.figures(sub.tenant_id)

        counts, hourly, figures = await asyncio.to_thread(compute)
        state = self._health(sub_id)
        return {
            "subscription_id": sub.id,
            "tenant_id": sub.tenant_id,
            "state": sub.state,
            "disabled_reason": sub.disabled_reason,
            "consecutive_failures": state.consecutive if state is not None else None,
            "failing_since": state.failing_since if state is not None else None,
            "last_error": state.last_error if state is not None else None,
            "now": now,
            "windows": counts,
            "hourly": hourly["chart"],
            "newest_error": hourly["last_error"],
            "attempt_log": figures,
        }

    async def hourly_for(
        self, who: Principal, subscriptions: Iterable[Subscription], hours: int = 24
    ) -> dict[str, dict[str, Any]]:
        """Per subscription ``who`` may see: its attempts per hour over the last ``hours``
        (``chart``, as ``hourly`` of the subscription's stats) and success rate; the
        console's endpoint lists (without the newest error: see ``LogReader.health``)."""
        ids = [s.id for s in subscriptions if visible(who, s.tenant_id)]
        reader = self.log.reader()
        return await asyncio.to_thread(
            functools.partial(reader.health, newest_error=False), ids, time.time(), hours
        )

    async def hours_for(
        self, who: Principal, sub_id: str, hours: int, now: float | None = None
    ) -> list[dict[str, Any]]:
        """One subscription's attempts and deliveries per hour over the ``hours`` up to
        the one holding ``now`` (oldest first, empty hours included, as ``hourly`` of its
        stats): NotFoundError unless ``who`` may see it (the console's endpoint chart)."""
        sub = self.p.subscriptions.get(sub_id)
        if sub is None or not visible(who, sub.tenant_id):
            raise NotFoundError(f"no subscription {sub_id}")
        reader = self.log.reader()
        return await asyncio.to_thread(
            reader.series, "sub", sub_id, time.time() if now is None else now, HOUR, hours
        )

    async def minutes_for(self, who: Principal, minutes: int = 60) -> list[dict[str, Any]]:
        """Attempts and deliveries per minute over the last ``minutes``, oldest first, of
        everything the admin sees or of ``who``'s tenant (the console's live view)."""
        tenant = scope(who, None)
        kind, key = ("all", "") if tenant is None else ("tenant", tenant)
        reader = self.log.reader()
        return await asyncio.to_thread(reader.series, kind, key, time.time(), MINUTE, minutes)
