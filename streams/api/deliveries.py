"""Routes of ``/v1/deliveries`` (the delivery log) and ``/v1/dlq`` (dead letters).

Each handler reads the HTTP request and calls a method that takes the
:class:`~streams.api.auth.Principal` (``page_for``, ``history_for``,
``dlq_replay_for``, ...); the web console calls the same methods. Replays
themselves (slots, cancel, resume, shutdown) are :mod:`streams.api.replays`.

Every Kafka read these routes run in a thread takes the worker's stop signal
(``pipeline.extras["stopping"]``, set at shutdown): it ends within half a
second of it, so a request in progress never holds a stopping worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import Principal, scope, visible
from streams.api.http import json_body, json_response, principal
from streams.api.replays import ReplayRoutes, stopping
from streams.deadletter import replay as dlq
from streams.deadletter.scan import read_at
from streams.errors import ConflictError, DecodeError, InvalidRequestError, NotFoundError
from streams.log.service import DeliveryLog
from streams.log.store import Cursor, DeliveryQuery
from streams.records import Attempt, Delivery

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)


#: Unix seconds accepted as a time: 1970 to the end of year 9999.
MAX_UNIX_S = 253_402_300_799.0


def parse_time(value: str | None, field: str) -> float | None:
    """RFC 3339 or unix seconds, from 1970 to the year 9999."""
    if value is None or value == "":
        return None
    problem = f"`{field}`: an RFC 3339 time (2026-04-29T19:12:33Z) or unix seconds"
    if not isinstance(value, str):
        raise InvalidRequestError(problem, field=field)
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            raise InvalidRequestError(problem, field=field) from None
    if not 0 <= seconds <= MAX_UNIX_S:  # NaN fails this too
        raise InvalidRequestError(f"{problem}, from 1970 to 9999", field=field)
    return seconds


def text_field(source: Any, field: str) -> str | None:
    value = source.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"`{field}`: a string", field=field)
    return value


def parse_limit(value: str | None, default: int = 100) -> int:
    try:
        limit = int(value) if value is not None else default
    except ValueError:
        raise InvalidRequestError("`limit`: a whole number from 1 to 1000", field="limit") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("`limit`: a whole number from 1 to 1000", field="limit")
    return limit


def attempt_view(a: Attempt) -> dict[str, Any]:
    """One attempt as the API shows it; ``source`` is where the delivery record it sent
    is in Kafka (redeliver reads the body back from there)."""
    return {
        "attempt": a.attempt,
        "at": a.at,
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "status": a.status,
        "response_snippet": a.response_snippet,
        "error": a.error,
        "replay_id": a.replay_id,
        "sent": a.sent,
        "source": {
            "topic": a.source_topic,
            "partition": a.source_partition,
            "offset": a.source_offset,
        }
        if a.source_offset >= 0
        else None,
    }


class DeliveryRoutes:
    def __init__(self, pipeline: Pipeline, delivery_log: DeliveryLog) -> None:
        self.p = pipeline
        self.log = delivery_log
        self.stopping = stopping(pipeline)
        self.replays = ReplayRoutes(pipeline.settings, self.stopping, self._filter)

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/deliveries", self.list_deliveries)
        router.add_get("/v1/deliveries/{id}", self.show)
        router.add_post("/v1/deliveries/{id}/redeliver", self.redeliver)
        router.add_get("/v1/dlq", self.dlq_list)
        router.add_post("/v1/dlq/replay", self.dlq_replay)
        router.add_get("/v1/dlq/replays/{id}", self.replay_status)
        router.add_delete("/v1/dlq/replays/{id}", self.replay_cancel)
        router.add_post("/v1/dlq/replays/{id}/resume", self.replay_resume)

    async def on_shutdown(self, app: web.Application) -> None:
        """The worker is stopping: end reads in threads, interrupt replays (bounded)."""
        self.stopping.set("interrupted")
        await self.replays.stop_all()

    # -- the delivery log -------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> web.Response:
        return json_response(await self.page_for(principal(request), request.query))

    async def page_for(self, who: Principal, q: Mapping[str, str]) -> dict[str, Any]:
        """A page of the delivery log, newest first (by first attempt), as ``GET
        /v1/deliveries`` answers it; ``next_cursor`` asks for the next page and stays
        valid while attempts arrive."""
        tenant = scope(who, q.get("tenant_id"))
        query = DeliveryQuery(
            tenant_id=tenant,
            subscription_id=text_field(q, "subscription_id"),
            event_type=text_field(q, "event_type"),
            status=text_field(q, "status"),
            since=parse_time(q.get("since"), "since"),
            until=parse_time(q.get("until"), "until"),
            limit=parse_limit(q.get("limit")),
        )
        raw_cursor = q.get("cursor")
        cursor = Cursor.decode(raw_cursor) if raw_cursor else None
        reader = self.log.reader()
        page = await asyncio.to_thread(reader.page, query, cursor)
        return {"data": page.data, "next_cursor": page.next_cursor}

    async def history_for(
        self, who: Principal, delivery_id: str
    ) -> tuple[dict[str, Any], list[Attempt]]:
        """A delivery's summary and attempts (oldest first), when ``who`` may see it;
        NotFoundError otherwise."""
        reader = self.log.reader()
        found = await asyncio.to_thread(reader.delivery, delivery_id)
        if found is None or not visible(who, found[0]["tenant_id"]):
            raise NotFoundError(f"no delivery {delivery_id} in the delivery log")
        return found

    async def show(self, request: web.Request) -> web.Response:
        view, history = await self.history_for(principal(request), request.match_info["id"])
        return json_response({**view, "attempts": [attempt_view(a) for a in history]})

    async def redeliver(self, request: web.Request) -> web.Response:
        """Send a past delivery again, read back from Kafka by offset (no second copy).

        Its attempts are numbered on after the delivery's history (a fourth attempt
        after three), so the log reads in order and its summary is the new outcome.
        """
        return json_response(
            await self.redeliver_for(principal(request), request.match_info["id"]), status=202
        )

    async def redeliver_for(self, who: Principal, delivery_id: str) -> dict[str, Any]:
        _, history = await self.history_for(who, delivery_id)
        source = next((a for a in reversed(history) if a.source_offset >= 0), None)
        if source is None:
            raise ConflictError(
                "this delivery's record position is unknown; it cannot be redelivered"
            )
        sub = self.p.subscriptions.get(source.subscription_id)
        if sub is None:
            raise ConflictError(f"subscription {source.subscription_id} was deleted")
        if not sub.enabled:
            raise ConflictError(f"subscription {sub.id} is disabled: enable it first")
        found = await asyncio.to_thread(
            read_at,
            self.p.settings,
            source.source_topic,
            source.source_partition,
            source.source_offset,
            stop=self.stopping,
        )
        try:
            original = Delivery.from_bytes(found.value or b"")
        except DecodeError:
            raise ConflictError("the stored delivery record is unreadable") from None
        again = dlq.redelivery(original, max(a.attempt for a in history))
        await (await self.p.send(self.p.names.deliveries, again.subscription_id, again.to_bytes()))
        return {"delivery_id": again.delivery_id, "replay_id": again.replay_id, "status": "queued"}

    # -- dead letters -------------------------------------------------------------

    def _filter(self, who: Principal, source: Any) -> dlq.DlqFilter:
        tenant = scope(who, text_field(source, "tenant_id"))
        return dlq.DlqFilter(
            subscription_id=text_field(source, "subscription_id"),
            tenant_id=tenant,
            event_type=text_field(source, "event_type"),
            reason=text_field(source, "reason"),
            since=parse_time(source.get("since"), "since"),
            until=parse_time(source.get("until"), "until"),
        )

    async def dlq_list(self, request: web.Request) -> web.Response:
        return json_response({"data": await self.dlq_list_for(principal(request), request.query)})

    async def dlq_list_for(self, who: Principal, q: Mapping[str, str]) -> list[dict[str, Any]]:
        """Dead letters matching the filters in ``q`` that ``who`` may see."""
        flt = self._filter(who, q)
        limit = parse_limit(q.get("limit"))

        def collect() -> list[dict[str, Any]]:
            out = []
            for found, letter in dlq.find(self.p.settings, flt, stop=self.stopping):
                out.append(dlq.letter_view(found, letter))
                if len(out) >= limit:
                    break
            return out

        return await asyncio.to_thread(collect)

    async def dlq_replay(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        view = await self.dlq_replay_for(principal(request), body)
        return json_response(view, status=200 if view["status"] == "dry_run" else 202)

    async def dlq_replay_for(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """A dry run's counts (status ``dry_run``), or a replay started (status ``running``)."""
        return await self.replays.start_for(who, body)

    async def replay_status(self, request: web.Request) -> web.Response:
        found = await self.replays.status_for(principal(request), request.match_info["id"])
        return json_response(found)

    async def replay_cancel(self, request: web.Request) -> web.Response:
        """Cancel: 200 with the summary once it stopped, 202 while it is stopping."""
        view, stopped = await self.replays.cancel_for(principal(request), request.match_info["id"])
        return json_response(view, status=200 if stopped else 202)

    async def replay_resume(self, request: web.Request) -> web.Response:
        view = await self.replays.resume_for(principal(request), request.match_info["id"])
        return json_response(view, status=202)

    def replay_for(self, who: Principal, replay_id: str) -> dict[str, Any]:
        """A replay of this worker that ``who`` may see (the console's progress)."""
        return self.replays.replay_for(who, replay_id)

    def replays_visible(self, who: Principal) -> list[dict[str, Any]]:
        """The replays this worker ran that ``who`` may see, newest first (the history)."""
        return self.replays.visible_to(who)
