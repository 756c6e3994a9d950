"""Idempotent creation of subscriptions: the ``Idempotency-Key`` request header.

A create that timed out on the client's side may still have been written (the
broker was slow, the worker answered after the client gave up). Its signing
secret is shown only in the create response, so a plain retry made a second
subscription and left the first one receiving deliveries signed with a secret
nobody had. With a key, the retry answers the subscription the first request
made, and its secret, instead.

The key is remembered *on the subscription record* in the compacted topic, as
a digest of (tenant, key) with a digest of the request, so every worker sees
it once its reader has applied the record, and a restart forgets nothing. A
key is honoured for :data:`KEY_TTL_S` after the creation; after that (or once
the subscription is deleted) the same key creates anew. Two requests with one
key that reach two different workers at the same moment can still both
create: the record is the only shared state, and it is written by whichever
finishes. The CLI's own retries are sequential, so they never race.

Pure functions; the route in :mod:`streams.api.subscriptions` wires them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streams.errors import InvalidRequestError
from streams.records import Subscription
from streams.subscriptions.secrets import active

#: The header, as the IETF draft (draft-ietf-httpapi-idempotency-key-header) names it.
HEADER = "Idempotency-Key"
#: How long after the creation a key still returns what it created.
KEY_TTL_S = 24 * 3600.0
#: The longest key accepted (a UUID is 36 characters).
MAX_KEY_LENGTH = 255


def parse_key(value: str | None) -> str | None:
    """The header's key, or None when it is absent; a malformed key is a 422 naming it.

    1 to 255 visible ASCII characters: a key with spaces or control characters is
    more likely a mistake than a key, and would not survive every HTTP client.
    """
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH or any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise InvalidRequestError(
            f"`{HEADER}`: 1 to {MAX_KEY_LENGTH} visible ASCII characters, no spaces "
            "(a new UUID per subscription you mean to create)",
            field=HEADER,
        )
    return value


def key_digest(tenant_id: str, key: str) -> str:
    """What the record stores instead of the key: keys are per tenant, and a stored
    digest cannot be replayed as a header by someone who reads the topic."""
    return hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()


def request_digest(body: Mapping[str, Any]) -> str:
    """A digest of the create request, to refuse a key reused for a different request.

    A caller's own ``secret`` is left out (only whether one was given, and whether
    it was null): a digest of a low-entropy secret could be searched for.
    """
    shown = {k: v for k, v in body.items() if k != "secret"}
    if "secret" in body:
        shown["secret"] = "(null)" if body["secret"] is None else "(given)"
    canonical = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def stamp(tenant_id: str, key: str, body: Mapping[str, Any]) -> dict[str, str]:
    """The ``idempotency`` field of a subscription created with ``key``."""
    return {"key": key_digest(tenant_id, key), "request": request_digest(body)}


def created_with(
    subs: Iterable[Subscription], tenant_id: str, key: str, *, now: float
) -> Subscription | None:
    """The tenant's subscription created with ``key`` less than :data:`KEY_TTL_S` ago."""
    digest = key_digest(tenant_id, key)
    for sub in subs:
        stamped = sub.idempotency
        if (
            stamped is not None
            and sub.tenant_id == tenant_id
            and stamped.get("key") == digest
            and now - sub.created_at < KEY_TTL_S
        ):
            return sub
    return None


def check_same_request(sub: Subscription, body: Mapping[str, Any]) -> None:
    """Refuse a key reused with a different request (422, as the IETF draft says)."""
    if (sub.idempotency or {}).get("request") != request_digest(body):
        raise InvalidRequestError(
            f"`{HEADER}`: this key created {sub.id} from a different request; use a new "
            "key for a new subscription",
            field=HEADER,
        )


def creation_secret(sub: Subscription, *, now: float) -> dict[str, Any] | None:
    """The stored secret the subscription was created with, if it is still current or
    in its grace period (``None`` once rotated away or expired, or when unsigned)."""
    for stored in active(sub.secrets, now):
        if float(stored["created_at"]) == sub.created_at:
            return stored
    return None
