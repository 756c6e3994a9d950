"""Routes of ``/v1/deliveries`` (the delivery log) and ``/v1/dlq`` (dead letters)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import scope, visible
from streams.api.http import json_body, json_response, principal
from streams.attempts import STATUS_WORDS, AttemptLog, DeliveryQuery, attempt_view, summary
from streams.deadletter import replay as dlq
from streams.deadletter.scan import read_at
from streams.errors import ConflictError, DecodeError, InvalidRequestError, NotFoundError
from streams.records import Attempt, Delivery

if TYPE_CHECKING:
    from streams.app import Pipeline

log = logging.getLogger(__name__)


def parse_time(value: str | None, field: str) -> float | None:
    """RFC 3339 or unix seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidRequestError(
            f"`{field}`: an RFC 3339 time (2026-04-29T19:12:33Z) or unix seconds", field=field
        ) from None


def parse_limit(value: str | None, default: int = 100) -> int:
    try:
        limit = int(value) if value is not None else default
    except ValueError:
        raise InvalidRequestError("`limit`: a whole number from 1 to 1000", field="limit") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("`limit`: a whole number from 1 to 1000", field="limit")
    return limit


class DeliveryRoutes:
    def __init__(self, pipeline: Pipeline, log_index: AttemptLog) -> None:
        self.p = pipeline
        self.log = log_index
        self.replays: dict[str, dlq.ReplaySummary] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/deliveries", self.list_deliveries)
        router.add_get("/v1/deliveries/{id}", self.show)
        router.add_post("/v1/deliveries/{id}/redeliver", self.redeliver)
        router.add_get("/v1/dlq", self.dlq_list)
        router.add_post("/v1/dlq/replay", self.dlq_replay)
        router.add_get("/v1/dlq/replays/{id}", self.replay_status)

    # -- the delivery log -------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status")
        if status is not None and status not in STATUS_WORDS and not status.isdigit():
            raise InvalidRequestError(
                "`status`: delivered, failed, retrying, or an HTTP status such as 503",
                field="status",
            )
        tenant = scope(principal(request), q.get("tenant_id"))
        query = DeliveryQuery(
            tenant_id=tenant,
            subscription_id=q.get("subscription_id"),
            event_type=q.get("event_type"),
            status=status,
            since=parse_time(q.get("since"), "since"),
            until=parse_time(q.get("until"), "until"),
            limit=parse_limit(q.get("limit")),
        )
        self.log.require()
        rows = list(self.log.deliveries(query))
        return json_response({"data": rows, "window_attempts": len(self.log)})

    def _history(self, request: web.Request) -> list[Attempt]:
        delivery_id = request.match_info["id"]
        self.log.require()
        history = self.log.attempts(delivery_id)
        if not history or not visible(principal(request), history[-1].tenant_id):
            raise NotFoundError(f"no delivery {delivery_id} in the delivery log")
        return history

    async def show(self, request: web.Request) -> web.Response:
        history = self._history(request)
        view = summary(history)
        view["attempts"] = [attempt_view(a) for a in history]
        return json_response(view)

    async def redeliver(self, request: web.Request) -> web.Response:
        """Send a past delivery again, read back from Kafka by offset (no second copy)."""
        history = self._history(request)
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
        )
        try:
            original = Delivery.from_bytes(found.value or b"")
        except DecodeError:
            raise ConflictError("the stored delivery record is unreadable") from None
        again = dlq.redelivery(original)
        await (await self.p.send(self.p.names.deliveries, again.subscription_id, again.to_bytes()))
        return json_response(
            {"delivery_id": again.delivery_id, "replay_id": again.replay_id, "status": "queued"},
            status=202,
        )

    # -- dead letters -------------------------------------------------------------

    def _filter(self, request: web.Request, source: Any) -> dlq.DlqFilter:
        tenant = scope(principal(request), source.get("tenant_id"))
        return dlq.DlqFilter(
            subscription_id=source.get("subscription_id"),
            tenant_id=tenant,
            event_type=source.get("event_type"),
            reason=source.get("reason"),
            since=parse_time(source.get("since"), "since"),
            until=parse_time(source.get("until"), "until"),
        )

    async def dlq_list(self, request: web.Request) -> web.Response:
        flt = self._filter(request, request.query)
        limit = parse_limit(request.query.get("limit"))

        def collect() -> list[dict[str, Any]]:
            out = []
            for found, letter in dlq.find(self.p.settings, flt):
                out.append(dlq.letter_view(found, letter))
                if len(out) >= limit:
                    break
            return out

        return json_response({"data": await asyncio.to_thread(collect)})

    async def dlq_replay(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        allowed = {
            "subscription_id",
            "tenant_id",
            "event_type",
            "reason",
            "since",
            "until",
            "force",
            "rate",
            "dry_run",
        }
        unknown = set(body) - allowed
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(
                f"`{field}`: unknown field; allowed: {', '.join(sorted(allowed))}", field=field
            )
        flt = self._filter(
            request,
            {
                k: (str(v) if k in ("since", "until") and v is not None else v)
                for k, v in body.items()
            },
        )
        rate = body.get("rate")
        if rate is not None and (
            not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0
        ):
            raise InvalidRequestError("`rate`: replays per second, a positive number", field="rate")
        force = bool(body.get("force", False))
        counted = await asyncio.to_thread(dlq.replay, self.p.settings, flt, dry_run=True)
        if body.get("dry_run"):
            return json_response({**counted.as_dict(), "status": "dry_run"})
        summary_ = dlq.ReplaySummary(replay_id=dlq.new_replay_id(), started_at=time.time())
        self.replays[summary_.replay_id] = summary_

        async def run() -> None:
            try:
                await asyncio.to_thread(
                    dlq.replay, self.p.settings, flt, force=force, rate=rate, summary=summary_
                )
            except Exception as exc:
                summary_.status = "failed"
                summary_.error = str(exc)
                log.error("replay %s failed: %s", summary_.replay_id, exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return json_response(
            {"replay_id": summary_.replay_id, "matched": counted.matched, "status": "running"},
            status=202,
        )

    async def replay_status(self, request: web.Request) -> web.Response:
        found = self.replays.get(request.match_info["id"])
        if found is None:
            raise NotFoundError("no replay with that id on this worker")
        return json_response(found.as_dict())
