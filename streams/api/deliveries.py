"""Routes of ``/v1/deliveries`` (the delivery log) and ``/v1/dlq`` (dead letters)."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import scope, visible
from streams.api.http import json_body, json_response, parse_flag, principal
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
#: Replays that may run at once in one worker, each in a thread of its own.
MAX_RUNNING_REPLAYS = 4
#: Finished replays whose summaries are kept for ``GET /v1/dlq/replays/{id}``.
KEPT_REPLAYS = 1000
#: Slowest replay rate accepted (the CLI's bound too): one letter per 100 s.
MIN_REPLAY_RATE = 0.01


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
        self.replays: dict[str, dlq.ReplaySummary] = {}
        self._replay_tenants: dict[str, str | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replay_threads = ThreadPoolExecutor(
            max_workers=MAX_RUNNING_REPLAYS, thread_name_prefix="dlq-replay"
        )

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/deliveries", self.list_deliveries)
        router.add_get("/v1/deliveries/{id}", self.show)
        router.add_post("/v1/deliveries/{id}/redeliver", self.redeliver)
        router.add_get("/v1/dlq", self.dlq_list)
        router.add_post("/v1/dlq/replay", self.dlq_replay)
        router.add_get("/v1/dlq/replays/{id}", self.replay_status)

    # -- the delivery log -------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> web.Response:
        """A page of deliveries, newest first (by first attempt); ``next_cursor`` asks
        for the next one and stays valid while attempts arrive."""
        q = request.query
        tenant = scope(principal(request), q.get("tenant_id"))
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
        return json_response({"data": page.data, "next_cursor": page.next_cursor})

    async def _history(self, request: web.Request) -> tuple[dict[str, Any], list[Attempt]]:
        delivery_id = request.match_info["id"]
        reader = self.log.reader()
        found = await asyncio.to_thread(reader.delivery, delivery_id)
        if found is None or not visible(principal(request), found[0]["tenant_id"]):
            raise NotFoundError(f"no delivery {delivery_id} in the delivery log")
        return found

    async def show(self, request: web.Request) -> web.Response:
        view, history = await self._history(request)
        return json_response({**view, "attempts": [attempt_view(a) for a in history]})

    async def redeliver(self, request: web.Request) -> web.Response:
        """Send a past delivery again, read back from Kafka by offset (no second copy).

        Its attempts are numbered on after the delivery's history (a fourth attempt
        after three), so the log reads in order and its summary is the new outcome.
        """
        _, history = await self._history(request)
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
        again = dlq.redelivery(original, max(a.attempt for a in history))
        await (await self.p.send(self.p.names.deliveries, again.subscription_id, again.to_bytes()))
        return json_response(
            {"delivery_id": again.delivery_id, "replay_id": again.replay_id, "status": "queued"},
            status=202,
        )

    # -- dead letters -------------------------------------------------------------

    def _filter(self, request: web.Request, source: Any) -> dlq.DlqFilter:
        tenant = scope(principal(request), text_field(source, "tenant_id"))
        return dlq.DlqFilter(
            subscription_id=text_field(source, "subscription_id"),
            tenant_id=tenant,
            event_type=text_field(source, "event_type"),
            reason=text_field(source, "reason"),
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
                k: (str(v) if k in ("since", "until") and isinstance(v, (int, float)) else v)
                for k, v in body.items()
            },
        )
        rate = body.get("rate")
        if rate is not None and (
            not isinstance(rate, (int, float))
            or isinstance(rate, bool)
            or not MIN_REPLAY_RATE <= rate < float("inf")
        ):
            raise InvalidRequestError(
                f"`rate`: replays per second, a number of at least {MIN_REPLAY_RATE:g}",
                field="rate",
            )
        force = parse_flag(body, "force")
        dry_run = parse_flag(body, "dry_run")
        running = sum(1 for r in self.replays.values() if r.status == "running")
        if not dry_run and running >= MAX_RUNNING_REPLAYS:
            raise ConflictError(
                f"{running} replays are running on this worker (at most {MAX_RUNNING_REPLAYS}): "
                "wait for one to finish (GET /v1/dlq/replays/{id}), or narrow this one's filter"
            )
        counted = await asyncio.to_thread(dlq.replay, self.p.settings, flt, dry_run=True)
        if dry_run:
            return json_response({**counted.as_dict(), "status": "dry_run"})
        summary_ = dlq.ReplaySummary(replay_id=dlq.new_replay_id(), started_at=time.time())
        self._keep(summary_, flt.tenant_id)

        async def run() -> None:
            try:
                # A thread of its own: a slow replay never takes the default pool's
                # threads, which the stats and dead-letter listing need.
                await asyncio.get_running_loop().run_in_executor(
                    self._replay_threads,
                    lambda: dlq.replay(
                        self.p.settings, flt, force=force, rate=rate, summary=summary_
                    ),
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

    def _keep(self, summary_: dlq.ReplaySummary, tenant_id: str | None) -> None:
        """Remember a replay's summary and whose it is; forget the oldest finished ones."""
        self.replays[summary_.replay_id] = summary_
        self._replay_tenants[summary_.replay_id] = tenant_id
        finished = [k for k, r in self.replays.items() if r.status != "running"]
        for key in finished[: max(0, len(finished) - KEPT_REPLAYS)]:
            del self.replays[key]
            self._replay_tenants.pop(key, None)

    async def replay_status(self, request: web.Request) -> web.Response:
        replay_id = request.match_info["id"]
        found = self.replays.get(replay_id)
        tenant = self._replay_tenants.get(replay_id)
        who = principal(request)
        # A platform-wide replay (no tenant) is the admin's alone.
        if found is None or not (who.admin or (tenant is not None and visible(who, tenant))):
            raise NotFoundError("no replay with that id on this worker")
        return json_response(found.as_dict())
