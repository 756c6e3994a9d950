"""Routes of ``/v1/subscriptions``: create, list, show, update, delete, rotate,
enable, disable, test. One tenant never sees another's subscriptions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.auth import scope, visible
from streams.api.http import json_body, json_response, parse_flag, principal
from streams.deadletter import replay as dlq
from streams.destinations import resolve_and_check
from streams.errors import (
    ConflictError,
    DestinationRefusedError,
    InvalidRequestError,
    NotFoundError,
    SigningError,
)
from streams.fanout.agent import deliveries_for
from streams.fanout.matching import TypeMatcher
from streams.health import ops_event
from streams.records import EventEnvelope, Subscription
from streams.retry.schedule import parse_duration
from streams.signing import generate_secret, validate_secret
from streams.signing.standard import public_key
from streams.subscriptions import model
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
        sub_id = request.match_info["id"]
        sub = self.p.subscriptions.get(sub_id)
        if sub is None or not visible(principal(request), sub.tenant_id):
            raise NotFoundError(f"no subscription {sub_id}")
        return sub

    def _view(self, sub: Subscription) -> dict[str, Any]:
        keys: list[str] = []
        if sub.signing == "standard":
            for clear in secret_store.decrypt_active(self.p.box, sub.secrets):
                if clear.startswith("whsk_"):
                    keys.append(public_key(clear))
        return model.public_view(sub, now=time.time(), public_keys=keys)

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
        confirm = await self.p.send(self.p.names.subscriptions, sub.id, sub.to_bytes())
        await confirm
        if not await self.p.subscriptions.wait_until(sub.id, sub.version, APPLY_TIMEOUT_S):
            log.warning("subscription %s written but not yet read back", sub.id)

    # -- handlers -------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        who = principal(request)
        tenant = scope(who, body.get("tenant_id"))
        if tenant is None:
            raise InvalidRequestError(
                "`tenant_id`: required with the admin token", field="tenant_id"
            )
        sub, secret = model.build_subscription(
            body, tenant_id=tenant, settings=self.p.settings, box=self.p.box, now=time.time()
        )
        await self._check_resolution(sub.url)
        await self._save(sub)
        view = self._view(sub)
        view["signing_secret"] = secret  # shown once, here and on rotation
        return json_response(view, status=201)

    async def list(self, request: web.Request) -> web.Response:
        who = principal(request)
        tenant = scope(who, request.query.get("tenant_id"))
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
        subs = list(self.p.subscriptions.all(tenant_id=tenant, state=state))
        page = subs[offset : offset + limit]
        return json_response(
            {
                "data": [self._view(s) for s in page],
                "total": len(subs),
                "next_offset": offset + limit if offset + limit < len(subs) else None,
            }
        )

    async def show(self, request: web.Request) -> web.Response:
        return json_response(self._view(self._find(request)))

    async def update(self, request: web.Request) -> web.Response:
        current = self._find(request)
        body = await json_body(request)
        updated = model.apply_update(current, body, settings=self.p.settings, now=time.time())
        if updated.url != current.url:
            await self._check_resolution(updated.url)
        await self._save(updated)
        return json_response(self._view(updated))

    async def delete(self, request: web.Request) -> web.Response:
        sub = self._find(request)
        confirm = await self.p.send(self.p.names.subscriptions, sub.id, None)
        await confirm
        await self.p.subscriptions.wait_until(sub.id, None, APPLY_TIMEOUT_S)
        return web.Response(status=204)

    async def rotate_secret(self, request: web.Request) -> web.Response:
        sub = self._find(request)
        body = await json_body(request, required=False)
        unknown = set(body) - {"secret", "grace"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(
                f"`{field}`: unknown field; allowed: grace, secret", field=field
            )
        try:
            grace = parse_duration(str(body.get("grace", "24h")))
        except Exception:
            raise InvalidRequestError(
                '`grace`: a duration such as "24h" or "0s"', field="grace"
            ) from None
        if grace > 7 * 86400:
            raise InvalidRequestError("`grace`: at most 7d", field="grace")
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
        view = self._view(rotated)
        view["signing_secret"] = secret
        return json_response(view)

    async def enable(self, request: web.Request) -> web.Response:
        """Enable; report what was parked while disabled and replay it on request.

        Body (optional): ``{"replay_parked": true}`` replays the deliveries parked
        with reason ``subscription_disabled`` since the subscription was disabled.
        """
        sub = self._find(request)
        body = await json_body(request, required=False)
        unknown = set(body) - {"replay_parked"}
        if unknown:
            raise InvalidRequestError("`replay_parked`: the only field", field=sorted(unknown)[0])
        replay_parked = parse_flag(body, "replay_parked")
        updated = model.set_state(sub, enabled=True, reason=None, now=time.time())
        await self._save(updated)
        view = self._view(updated)
        if not sub.enabled:
            flt = dlq.DlqFilter(
                subscription_id=sub.id,
                reason="subscription_disabled",
                since=(sub.disabled_at - 60) if sub.disabled_at else None,
            )
            if replay_parked:
                done = await asyncio.to_thread(dlq.replay, self.p.settings, flt)
                view["parked"] = {
                    "count": done.matched,
                    "replayed": done.replayed,
                    "replay_id": done.replay_id,
                }
            else:
                counted = await asyncio.to_thread(dlq.replay, self.p.settings, flt, dry_run=True)
                view["parked"] = {
                    "count": counted.matched - counted.skipped,
                    "replay": 'POST this path again with {"replay_parked": true}, or '
                    "POST /v1/dlq/replay with subscription_id and reason=subscription_disabled",
                }
            await self._ops(
                "endpoint.enabled",
                sub,
                {"enabled_at": _iso_now(), "parked": view["parked"]["count"]},
            )
        return json_response(view)

    async def disable(self, request: web.Request) -> web.Response:
        sub = self._find(request)
        body = await json_body(request, required=False)
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
        return json_response(self._view(updated))

    async def test(self, request: web.Request) -> web.Response:
        """Send a sample event of the subscription's first type, to it alone, at once."""
        sub = self._find(request)
        if not sub.enabled:
            raise ConflictError(f"subscription {sub.id} is disabled: enable it before testing")
        event_type = self._sample_type(sub)
        event = EventEnvelope(
            id=f"evt_test_{uuid.uuid4().hex}",
            type=event_type,
            tenant_id=sub.tenant_id,
            occurred_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            data=self.p.registry.sample(event_type),
        )
        now = time.time()
        (delivery,) = deliveries_for(
            event, [sub], body_key=self.p.registry.body_key(event_type), published_at=now, now=now
        )
        confirm = await self.p.send(self.p.names.deliveries, sub.id, delivery.to_bytes())
        await confirm
        return json_response(
            {
                "delivery_id": delivery.delivery_id,
                "event_id": event.id,
                "event_type": event_type,
                "status": "queued",
            },
            status=202,
        )

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
