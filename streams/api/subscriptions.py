"""Routes of ``/v1/subscriptions``: create, list, show, update, delete, rotate,
enable, disable, test. One tenant never sees another's subscriptions.

Each handler reads the HTTP request and calls a method that takes the
:class:`~streams.api.auth.Principal` (``find``, ``create_for``, ``rotate_for``,
...): the web console calls the same methods, so tenant scoping and
validation exist once."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import Principal, scope, visible
from streams.api.http import json_body, json_response, parse_flag, principal
from streams.api.replays import stopping
from streams.api.writes import write
from streams.deadletter import replay as dlq
from streams.destinations import resolve_and_check
from streams.errors import (
    ConflictError,
    DestinationRefusedError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
    SigningError,
)
from streams.fanout.agent import deliveries_for
from streams.fanout.matching import TypeMatcher
from streams.health import ops_event
from streams.records import EventEnvelope, Subscription
from streams.retry.schedule import parse_seconds
from streams.signing import generate_secret, validate_secret
from streams.signing.standard import public_key
from streams.subscriptions import headers as header_rules
from streams.subscriptions import idempotency, model
from streams.subscriptions import secrets as secret_store

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: How long a write waits for this worker's reader to apply it.
APPLY_TIMEOUT_S = 10.0
#: How long the create/update check may spend resolving the URL's host.
RESOLVE_TIMEOUT_S = 3.0


class SubscriptionRoutes:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        #: Creates in progress per (tenant, Idempotency-Key), and how many wait on each.
        self._creating: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        #: Creates under way per tenant (written, not yet read back): counted in its quota.
        self._pending: Counter[str] = Counter()

    def register(self, router: web.UrlDispatcher) -> None:
        base = "/v1/subscriptions"
        router.add_post(base, self.create)
        router.add_get(base, self.list)
        router.add_get(base + "/{id}", self.show)
        router.add_patch(base + "/{id}", self.update)
        router.add_delete(base + "/{id}", self.delete)
        router.add_post(base + "/{id}/rotate-secret", self.rotate_secret)
        router.add_post(base + "/{id}/enable", self.enable)
        router.add_post(base + "/{id}/disable", self.disable)
        router.add_post(base + "/{id}/test", self.test)

    # -- helpers --------------------------------------------------------------

    def _find(self, request: web.Request) -> Subscription:
        return self.find(principal(request), request.match_info["id"])

    def find(self, who: Principal, sub_id: str) -> Subscription:
        """The subscription, when ``who`` may see it; NotFoundError otherwise (never 403)."""
        sub = self.p.subscriptions.get(sub_id)
        if sub is None or not visible(who, sub.tenant_id):
            raise NotFoundError(f"no subscription {sub_id}")
        return sub

    def visible(
        self, who: Principal, tenant_id: str | None, *, state: str | None = None
    ) -> list[Subscription]:
        """The subscriptions ``who`` may list: a tenant's own; an admin's choice of tenant."""
        return list(self.p.subscriptions.all(tenant_id=scope(who, tenant_id), state=state))

    def view(self, sub: Subscription) -> dict[str, Any]:
        keys: list[str] = []
        if sub.signing == "standard":
            for clear in secret_store.decrypt_active(self.p.box, sub.secrets):
                if clear.startswith("whsk_"):
                    keys.append(public_key(clear))
        return model.public_view(sub, now=time.time(), public_keys=keys)

    def _check_quota(self, tenant: str) -> None:
        """Refuse a tenant's subscription beyond ``STREAMS_TENANT_MAX_SUBSCRIPTIONS``.

        Counted in this worker's replica plus its creates under way; creates for one
        tenant on several workers at the same moment can each let one through.
        """
        limit = self.p.settings.tenant_max_subscriptions
        have = self.p.subscriptions.count(tenant) + self._pending[tenant]
        if limit and have >= limit:
            raise QuotaExceededError(
                f"tenant {tenant} has {have} subscriptions, the most "
                f"STREAMS_TENANT_MAX_SUBSCRIPTIONS={limit} allows: delete one it no longer "
                "needs (a subscription can match several event types or a pattern), or ask "
                "the operator to raise STREAMS_TENANT_MAX_SUBSCRIPTIONS",
                setting="STREAMS_TENANT_MAX_SUBSCRIPTIONS",
            )

    async def _check_resolution(self, url: str) -> None:
        """Refuse a name that resolves to a refused address now (checked again per connection)."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            await asyncio.wait_for(
                resolve_and_check(host, port, allowlist=self.p.settings.destination_allowlist),
                RESOLVE_TIMEOUT_S,
            )
        except DestinationRefusedError as exc:
            raise InvalidRequestError(f"`url`: {exc}", field="url") from None
        except (OSError, TimeoutError):
            # Not resolvable yet: accepted; every delivery resolves and checks again.
            pass

    async def _ops(self, event_type: str, sub: Subscription, data: dict[str, Any]) -> None:
        event = ops_event(event_type, sub.tenant_id, {"subscription_id": sub.id, **data})
        await (await self.p.send(self.p.names.ops, sub.tenant_id, event.to_bytes()))

    async def _save(self, sub: Subscription) -> None:
        """Write ``sub`` and wait until this worker has read it back.

        Asks Kafka first, and answers 503 having written nothing when it does not
        answer: a record queued for an absent broker would be written whenever it came
        back, after the caller had been told the request failed. A record from before
        header values were encrypted is written encrypted now.
        """
        sub = header_rules.migrate(sub, self.p.box)
        await write(
            self.p,
            self.p.names.subscriptions,
            sub.id,
            sub.to_bytes(),
            check_with="GET /v1/subscriptions shows whether it was (a create retried with the "
            "same Idempotency-Key answers what it made)",
        )
        if not await self.p.subscriptions.wait_until(sub.id, sub.version, APPLY_TIMEOUT_S):
            log.warning("subscription %s written but not yet read back", sub.id)

    # -- handlers -------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        """Create; with an ``Idempotency-Key`` header, a repeat answers the first's result."""
        body = await json_body(request)
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        view, replayed = await self._create_once(principal(request), body, key)
        response = json_response(view, status=201)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    async def create_for(
        self, who: Principal, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create; the view carries ``signing_secret``, the only time it is shown."""
        view, _ = await self._create_once(who, body, idempotency_key)
        return view

    async def _create_once(
        self, who: Principal, body: dict[str, Any], key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """The created view, and whether it is an earlier create's answer replayed."""
        tenant = scope(who, body.get("tenant_id"))
        if tenant is None:
            raise InvalidRequestError(
                "`tenant_id`: required with the admin token", field="tenant_id"
            )
        if key is None:
            return await self._create(body, tenant, stamp=None), False
        slot = (tenant, key)
        lock, users = self._creating.get(slot, (asyncio.Lock(), 0))
        self._creating[slot] = (lock, users + 1)
        try:
            async with lock:  # the same key twice on this worker: one creates, one replays
                earlier = idempotency.created_with(
                    self.p.subscriptions.all(tenant_id=tenant), tenant, key, now=time.time()
                )
                if earlier is not None:
                    return self._created_before(earlier, body), True
                stamp = idempotency.stamp(tenant, key, body)
                return await self._create(body, tenant, stamp=stamp), False
        finally:
            lock, users = self._creating[slot]
            if users <= 1:
                del self._creating[slot]
            else:
                self._creating[slot] = (lock, users - 1)

    async def _create(
        self, body: dict[str, Any], tenant: str, *, stamp: dict[str, str] | None
    ) -> dict[str, Any]:
        sub, secret = model.build_subscription(
            body, tenant_id=tenant, settings=self.p.settings, box=self.p.box, now=time.time()
        )
        if stamp is not None:
            sub = dataclasses.replace(sub, idempotency=stamp)
        await self._check_resolution(sub.url)
        self._check_quota(sub.tenant_id)  # counts the creates under way: no await before
        self._pending[sub.tenant_id] += 1
        try:
            await self._save(sub)
        finally:
            self._pending[sub.tenant_id] -= 1
            if not self._pending[sub.tenant_id]:
                del self._pending[sub.tenant_id]
        view = self.view(sub)
        view["signing_secret"] = secret  # shown once, here and on rotation
        detected = model.detected_defaults(body)
        if detected is not None:
            view["detected"] = detected
        self._warn(view, sub.event_types)
        return view

    def _warn(self, view: dict[str, Any], patterns: list[str]) -> None:
        """``warnings``: patterns that match no known event type (typos, mostly)."""
        registry = self.p.registry
        found = model.event_type_warnings(
            patterns, domain=registry.event_types, operational=registry.operational_types
        )
        if found:
            view["warnings"] = found

    def _created_before(self, sub: Subscription, body: dict[str, Any]) -> dict[str, Any]:
        """The answer a create with this key gave: the subscription and its secret."""
        idempotency.check_same_request(sub, body)
        secret: str | None = None
        if sub.secrets:
            stored = idempotency.creation_secret(sub, now=time.time())
            if stored is None:
                raise ConflictError(
                    f"this {idempotency.HEADER} created {sub.id}, whose signing secret has "
                    "been rotated since: the secret it was created with is no longer valid "
                    "(rotate-secret shows a new one)"
                )
            secret = self.p.box.decrypt(stored)
        view = self.view(sub)
        view["signing_secret"] = secret
        self._warn(view, sub.event_types)
        return view

    async def list(self, request: web.Request) -> web.Response:
        who = principal(request)
        tenant = request.query.get("tenant_id")
        scope(who, tenant)  # a wrong tenant is named before any other field
        state = request.query.get("state")
        if state not in (None, "enabled", "disabled"):
            raise InvalidRequestError("`state`: enabled or disabled", field="state")
        try:
            limit = int(request.query.get("limit", "100"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise InvalidRequestError(
                "`limit` and `offset` are whole numbers", field="limit"
            ) from None
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidRequestError("`limit`: 1 to 1000; `offset`: 0 or more", field="limit")
        subs = self.visible(who, tenant, state=state)
        page = subs[offset : offset + limit]
        return json_response(
            {
                "data": [self.view(s) for s in page],
                "total": len(subs),
                "next_offset": offset + limit if offset + limit < len(subs) else None,
            }
        )

    async def show(self, request: web.Request) -> web.Response:
        return json_response(self.view(self._find(request)))

    async def update(self, request: web.Request) -> web.Response:
        self._find(request)  # an unknown id is named before anything wrong in the body
        body = await json_body(request)
        return json_response(
            await self.update_for(principal(request), request.match_info["id"], body)
        )

    async def update_for(self, who: Principal, sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH``: validate ``body`` against the subscription, write it, answer its view
        (with ``warnings`` for event types that match nothing known)."""
        current = self.find(who, sub_id)
        updated = model.apply_update(
            current, body, settings=self.p.settings, now=time.time(), box=self.p.box
        )
        if updated.url != current.url:
            await self._check_resolution(updated.url)
        await self._save(updated)
        view = self.view(updated)
        if "event_types" in body:
            self._warn(view, updated.event_types)
        return view

    async def delete(self, request: web.Request) -> web.Response:
        await self.delete_for(principal(request), request.match_info["id"])
        return web.Response(status=204)

    async def delete_for(self, who: Principal, sub_id: str) -> Subscription:
        """Write the subscription's tombstone and wait until this worker has read it;
        answers the subscription as it was."""
        sub = self.find(who, sub_id)
        await write(self.p, self.p.names.subscriptions, sub.id, None, check_with="GET it to see")
        await self.p.subscriptions.wait_until(sub.id, None, APPLY_TIMEOUT_S)
        return sub

    async def rotate_secret(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        return json_response(
            await self.rotate_for(principal(request), request.match_info["id"], body)
        )

    async def rotate_for(self, who: Principal, sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
        sub = self.find(who, sub_id)
        unknown = set(body) - {"secret", "grace"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(
                f"`{field}`: unknown field; allowed: grace, secret", field=field
            )
        try:
            grace = parse_seconds(body.get("grace", "24h"))  # "24h", "0s", or seconds: 3600
        except Exception:
            raise InvalidRequestError(
                '`grace`: a duration such as "24h" or "0s", or a number of seconds',
                field="grace",
            ) from None
        if grace > 7 * 86400:
            raise InvalidRequestError("`grace`: at most 7d", field="grace")
        if sub.signing == "none":
            raise ConflictError(
                f"subscription {sub.id} is unsigned (signing none): it has no secret to rotate"
            )
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise InvalidRequestError("`secret`: a string", field="secret")
        if secret is None:
            secret = generate_secret(sub.signing)
        else:
            try:
                validate_secret(sub.signing, str(secret))
            except SigningError as exc:
                raise InvalidRequestError(f"`secret`: {exc}", field="secret") from None
        now = time.time()
        secrets = secret_store.rotate(
            sub.secrets, self.p.box.encrypt(str(secret), now=now), now=now, grace_s=grace
        )
        rotated = dataclasses.replace(sub, secrets=secrets, updated_at=now, version=sub.version + 1)
        await self._save(rotated)
        view = self.view(rotated)
        view["signing_secret"] = secret
        return view

    async def enable(self, request: web.Request) -> web.Response:
        """Enable; report what was parked while disabled and replay it on request.

        Body (optional): ``{"replay_parked": true}`` replays the deliveries parked
        with reason ``subscription_disabled`` since the subscription was disabled.
        """
        body = await json_body(request, required=False)
        return json_response(
            await self.enable_for(principal(request), request.match_info["id"], body)
        )

    async def enable_for(self, who: Principal, sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
        sub = self.find(who, sub_id)
        unknown = set(body) - {"replay_parked"}
        if unknown:
            raise InvalidRequestError("`replay_parked`: the only field", field=sorted(unknown)[0])
        replay_parked = parse_flag(body, "replay_parked")
        updated = model.set_state(sub, enabled=True, reason=None, now=time.time())
        await self._save(updated)
        view = self.view(updated)
        if not sub.enabled:
            flt = dlq.DlqFilter(
                subscription_id=sub.id,
                reason="subscription_disabled",
                since=(sub.disabled_at - 60) if sub.disabled_at else None,
            )
            stop = stopping(self.p)  # a stopping worker ends the scan and the replay at once
            if replay_parked:
                done = await asyncio.to_thread(
                    functools.partial(dlq.replay, self.p.settings, flt, stop=stop)
                )
                view["parked"] = {
                    "count": done.matched,
                    "replayed": done.replayed,
                    "replay_id": done.replay_id,
                }
                if done.status != "finished":
                    view["parked"] |= {"status": done.status, "message": done.message()}
            else:
                counted = await asyncio.to_thread(
                    functools.partial(dlq.replay, self.p.settings, flt, dry_run=True, stop=stop)
                )
                view["parked"] = {
                    "count": counted.matched - counted.skipped,
                    # Not "enable again with replay_parked": it is enabled now, so a second
                    # enable finds nothing parked.
                    "replay": f'POST /v1/dlq/replay with {{"subscription_id": "{sub.id}", '
                    '"reason": "subscription_disabled"}, or `streams dlq replay --subscription '
                    f"{sub.id} --reason subscription_disabled`",
                }
            await self._ops(
                "endpoint.enabled",
                sub,
                {"enabled_at": _iso_now(), "parked": view["parked"]["count"]},
            )
        return view

    async def disable(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        return json_response(
            await self.disable_for(principal(request), request.match_info["id"], body)
        )

    async def disable_for(
        self, who: Principal, sub_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        sub = self.find(who, sub_id)
        reason = body.get("reason")
        if reason is not None and (
            not isinstance(reason, str) or len(reason) > 500 or model.has_control_characters(reason)
        ):
            raise InvalidRequestError(
                "`reason`: a string of at most 500 characters, no control characters",
                field="reason",
            )
        updated = model.set_state(sub, enabled=False, reason=reason, now=time.time())
        await self._save(updated)
        if sub.enabled:
            await self._ops(
                "endpoint.disabled",
                sub,
                {
                    "reason": updated.disabled_reason,
                    "automatic": False,
                    "disabled_at": _iso_now(),
                },
            )
        return self.view(updated)

    async def test(self, request: web.Request) -> web.Response:
        """Send a sample event to the subscription alone, at once: of the type the body
        names (``{"event_type": "..."}``, one it receives), else of its first type."""
        self._find(request)  # an unknown id is named before anything wrong in the body
        body = await json_body(request, required=False)
        unknown = set(body) - {"event_type"}
        if unknown:
            raise InvalidRequestError("`event_type`: the only field", field=sorted(unknown)[0])
        return json_response(
            await self.test_for(
                principal(request), request.match_info["id"], body.get("event_type")
            ),
            status=202,
        )

    def test_types(self, sub: Subscription) -> tuple[str, ...]:
        """The known event types ``sub`` receives: those a test event can be made of."""
        matcher = TypeMatcher(sub.event_types)
        return tuple(t for t in self.p.registry.event_types if matcher.matches(t))

    async def test_for(self, who: Principal, sub_id: str, event_type: Any = None) -> dict[str, Any]:
        sub = self.find(who, sub_id)
        if not sub.enabled:
            raise ConflictError(f"subscription {sub.id} is disabled: enable it before testing")
        if event_type is None:
            event_type = self._sample_type(sub)
        elif event_type not in self.test_types(sub):
            raise InvalidRequestError(
                "`event_type`: a known event type this subscription receives: "
                + (", ".join(self.test_types(sub)) or "it receives none"),
                field="event_type",
            )
        event = EventEnvelope(
            id=f"evt_test_{uuid.uuid4().hex}",
            type=event_type,
            tenant_id=sub.tenant_id,
            occurred_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            data=self.p.registry.sample(event_type),
        )
        now = time.time()
        (delivery,) = deliveries_for(
            event,
            [sub],
            body_key=self.p.registry.body_key(event_type),
            published_at=now,
            now=now,
            summary=self.p.registry.summary(event_type),
        )
        confirm = await self.p.send(self.p.names.deliveries, sub.id, delivery.to_bytes())
        await confirm
        return {
            "delivery_id": delivery.delivery_id,
            "event_id": event.id,
            "event_type": event_type,
            "status": "queued",
        }

    def _sample_type(self, sub: Subscription) -> str:
        first = sub.event_types[0]
        if "*" not in first:
            return first
        matcher = TypeMatcher([first])
        for known in self.p.registry.event_types:
            if matcher.matches(known):
                return known
        raise ConflictError(f"no known event type matches `{first}` to build a test event from")


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
