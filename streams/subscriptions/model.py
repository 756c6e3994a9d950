"""Subscriptions as the API sees them: validating requests, and what may be shown.

Pure functions: a request body (already JSON-decoded) becomes a
:class:`~streams.records.Subscription` or an
:class:`~streams.errors.InvalidRequestError` naming the field at fault, and a
stored subscription becomes a public view that never contains a secret (custom
headers: :mod:`streams.subscriptions.headers`).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from streams import tenants
from streams.config import Settings
from streams.destinations import check_url
from streams.errors import DestinationRefusedError, InvalidRequestError, SigningError
from streams.fanout.matching import PatternError, unmatched_patterns, validate_pattern
from streams.ops.logs import redact
from streams.records import Subscription
from streams.retry.schedule import parse_schedule, parse_seconds, tiers_for
from streams.signing import PROFILES, get_profile, validate_secret
from streams.subscriptions import headers as header_rules
from streams.subscriptions import secrets as secret_store
from streams.subscriptions.services import (
    TELEGRAM_HOST,
    TELEGRAM_SEND,
    detect_service,
    masked_url,
)

MAX_EVENT_TYPES = 50
MAX_DESCRIPTION = 500
MAX_IN_FLIGHT = 256
MAX_RATE = 10_000.0
MAX_TIMEOUT_S = 30.0

#: Headers a subscription may never set: transport framing, and what every
#: request carries for the receiver's trust (content type, identity, signatures
#: of every profile, our own webhook-* headers).
ALWAYS_RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "user-agent",
        "traceparent",
        "tracestate",
    }
)

CREATE_FIELDS = frozenset(
    {
        "tenant_id",
        "url",
        "description",
        "event_types",
        "signing",
        "secret",
        "headers",
        "retry_schedule",
        "ordering",
        "rate_limit",
        "max_in_flight",
        "timeout",
        "body_format",
        "chat_id",
        "enabled",
    }
)
BODY_FORMATS = ("envelope", "keyed", "slack", "discord", "telegram")
#: A Telegram chat id: the chat's number (negative for groups and channels) or @channelusername.
_CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
UPDATE_FIELDS = CREATE_FIELDS - {"tenant_id", "secret", "enabled"}


def reserved_headers() -> frozenset[str]:
    names = set(ALWAYS_RESERVED)
    for profile in PROFILES.values():
        names |= profile.reserved_headers
    return frozenset(names)


def new_subscription_id() -> str:
    return f"sub_{uuid.uuid4().hex}"


def _bad(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"`{field}`: {message}", field=field)


def _check_unknown(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise _bad(key, f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _str(body: Mapping[str, Any], field: str, *, max_len: int) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise _bad(field, "must be a string")
    if len(value) > max_len:
        raise _bad(field, f"at most {max_len} characters")
    if has_control_characters(value):
        raise _bad(field, "no control characters (they would reach operators' terminals)")
    return value


def has_control_characters(text: str) -> bool:
    """C0 and C1 controls and DEL (ESC sequences retitle or rewrite terminals); tab is fine."""
    return any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in text)


def check_tenant(value: Any) -> str:
    """A customer's tenant id, or a 422 naming what is wrong (reserved ids included)."""
    wrong = tenants.problem(value)
    if wrong is not None:
        raise _bad("tenant_id", wrong)
    return str(value)


def _url(value: Any, settings: Settings) -> str:
    """The URL, checked. Messages pass through :func:`redact`: a URL may carry a bot token."""
    if not isinstance(value, str):
        raise _bad("url", "must be a string")
    try:
        check_url(value, allow_http=settings.development, allowlist=settings.destination_allowlist)
    except DestinationRefusedError as exc:
        raise _bad("url", redact(str(exc))) from None
    try:
        # The delivery stage parses it with httpx (streams.delivery.transport): a URL
        # httpx refuses (an IDNA 2003-only host such as ☃.net) could never be sent.
        parsed = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _bad(
            "url",
            redact(f"{exc}; write an internationalized host name in its xn-- (punycode) form"),
        ) from None
    # urlsplit, not parsed.host: httpx decodes xn-- labels by IDNA 2008 and may refuse them.
    if (urlsplit(value).hostname or "").rstrip(".") == TELEGRAM_HOST and (
        not TELEGRAM_SEND.fullmatch(parsed.path) or parsed.query or parsed.fragment
    ):
        raise _bad(
            "url",
            "a Telegram destination is https://api.telegram.org/bot<token>/sendMessage, with "
            "the token BotFather gave (digits, a colon, then letters, digits, - and _) and "
            "nothing after sendMessage; the chat goes in `chat_id`",
        )
    return value


def _chat_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CHAT_ID.fullmatch(value):
        raise _bad(
            "chat_id",
            "the Telegram chat: its numeric id (e.g. -1001234567890 for a channel or group) "
            "or @channelusername",
        )
    return value


def _event_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad("event_types", "a non-empty list of event types or patterns (`prospect.*`, `*`)")
    if len(value) > MAX_EVENT_TYPES:
        raise _bad("event_types", f"at most {MAX_EVENT_TYPES} entries")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"event_types[{i}]", "must be a string")
        try:
            pattern = validate_pattern(item)
        except PatternError as exc:
            raise _bad(f"event_types[{i}]", str(exc)) from None
        if pattern not in out:
            out.append(pattern)
    return out


def _headers(value: Any) -> list[header_rules.Header]:
    """Each header with its value and whether it is secret (sealed by the callers)."""
    return header_rules.parse(value, reserved=reserved_headers())


def _retry_schedule(value: Any) -> list[float] | None:
    """``"default"``/None → the configured default; ``"none"`` → one attempt."""
    if value is None or value == "default":
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise _bad("retry_schedule", 'a list of durations such as ["5s", "5m"]')
        value = ",".join(value) if value else "none"
    if not isinstance(value, str):
        raise _bad("retry_schedule", '"default", "none", or durations such as "5s,5m,30m"')
    try:
        return list(parse_schedule(value, bare_seconds=True))
    except Exception as exc:
        raise _bad("retry_schedule", str(exc)) from None


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_seconds(value)
    except Exception:
        raise _bad("timeout", 'a duration such as "10s" or a number of seconds') from None
    if isinstance(value, bool) or not 0 < seconds <= MAX_TIMEOUT_S:
        raise _bad("timeout", f"above 0 and at most {MAX_TIMEOUT_S:g}s")
    return seconds


def _number(body: Mapping[str, Any], field: str, *, low: float, high: float, integer: bool) -> Any:
    value = body[field]
    if value is None and field == "rate_limit":
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise _bad(field, f"{kind} from {low:g} to {high:g}")
    return value


def _choice(body: Mapping[str, Any], field: str, choices: tuple[str, ...]) -> str:
    value = body[field]
    if value not in choices:
        raise _bad(field, f"one of {', '.join(choices)}")
    return str(value)


def _apply(fields: dict[str, Any], body: Mapping[str, Any], settings: Settings) -> None:
    """Validate every field present in ``body`` into ``fields`` (record field names)."""
    if "url" in body:
        fields["url"] = _url(body["url"], settings)
    if "description" in body:
        fields["description"] = _str(body, "description", max_len=MAX_DESCRIPTION)
    if "event_types" in body:
        fields["event_types"] = _event_types(body["event_types"])
    if "signing" in body:
        try:
            fields["signing"] = get_profile(str(body["signing"])).name
        except SigningError as exc:
            raise _bad("signing", str(exc)) from None
    if "headers" in body:
        fields["headers"] = _headers(body["headers"])
    if "retry_schedule" in body:
        schedule = _retry_schedule(body["retry_schedule"])
        if tiers_for([schedule or ()]) and not tiers_for([parse_schedule(settings.retry_schedule)]):
            # No tier topics exist (`streams topics create` makes them from the default).
            raise _bad(
                "retry_schedule",
                "this deployment runs without retries (STREAMS_RETRY_SCHEDULE=none), so it "
                'has no retry tiers: use "none" or "default"',
            )
        fields["retry_schedule"] = schedule
    if "ordering" in body:
        fields["ordering"] = _choice(body, "ordering", ("unordered", "ordered"))
    if "rate_limit" in body:
        fields["rate_limit"] = _number(body, "rate_limit", low=0.01, high=MAX_RATE, integer=False)
    if "max_in_flight" in body:
        fields["max_in_flight"] = _number(
            body, "max_in_flight", low=1, high=MAX_IN_FLIGHT, integer=True
        )
    if "timeout" in body:
        fields["timeout_s"] = _timeout(body["timeout"])
    if "body_format" in body:
        fields["body_format"] = _choice(body, "body_format", BODY_FORMATS)
    if "chat_id" in body:
        fields["chat_id"] = _chat_id(body["chat_id"])


def _check_combination(record: Subscription) -> None:
    """Rules between fields, on the record as it would be saved."""
    if record.body_format == "telegram" and record.chat_id is None:
        raise _bad(
            "chat_id",
            "required with body_format telegram: the chat the bot posts to (its numeric id, "
            "or @channelusername)",
        )
    if record.chat_id is not None and record.body_format != "telegram":
        raise _bad("chat_id", "only with body_format telegram (set it to null to remove it)")


def detected_defaults(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a create request gets because its URL is a known chat service, or None.

    A Slack, Discord or Telegram URL (:func:`~streams.subscriptions.services.detect_service`)
    without an explicit ``body_format`` gets that service's format, and without an
    explicit ``signing`` the ``none`` profile (those services verify no signature).
    The create response shows this as ``detected``.
    """
    url = body.get("url")
    service = detect_service(url) if isinstance(url, str) else None
    if service is None:
        return None
    applied: dict[str, str] = {}
    if "body_format" not in body:
        applied["body_format"] = service
    if "signing" not in body:
        applied["signing"] = "none"
    chosen = ", ".join(f"{k} {v}" for k, v in applied.items())
    label = {
        "slack": "a Slack incoming webhook",
        "discord": "a Discord webhook",
        "telegram": "Telegram's Bot API",
    }[service]
    message = f"the URL is {label}" + (
        f": {chosen} chosen for it (give them explicitly to choose otherwise)"
        if applied
        else "; body_format and signing as given"
    )
    return {"service": service, "applied": applied, "message": message}


def _protect_url(fields: dict[str, Any], box: secret_store.SecretBox, now: float) -> None:
    """A URL that carries a credential is kept encrypted, and only masked in ``url``."""
    if "url" not in fields:
        return
    masked = masked_url(fields["url"])
    if masked is None:
        fields["url_secret"] = None
        return
    fields["url_secret"] = box.encrypt(fields["url"], now=now)
    fields["url"] = masked


def _secret_for(profile: str, body: Mapping[str, Any]) -> str | None:
    """The caller's secret, validated; or a generated one; or None (prospektr, unsigned)."""
    from streams.signing import generate_secret

    if profile == "none":
        if body.get("secret") is not None:
            raise _bad("secret", "signing none sends unsigned requests: leave `secret` out")
        return None
    if "secret" in body and body["secret"] is not None:
        secret = body["secret"]
        if not isinstance(secret, str):
            raise _bad("secret", "must be a string")
        try:
            validate_secret(profile, secret)
        except SigningError as exc:
            raise _bad("secret", str(exc)) from None
        return secret
    if "secret" in body and profile == "prospektr":
        return None  # Prospektr's secret is optional: an explicit null means unsigned
    return generate_secret(profile)


def build_subscription(
    body: Mapping[str, Any],
    *,
    tenant_id: str,
    settings: Settings,
    box: secret_store.SecretBox,
    now: float,
) -> tuple[Subscription, str | None]:
    """Validate a create request. Returns the record and the clear secret (shown once)."""
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the request body must be a JSON object")
    _check_unknown(body, CREATE_FIELDS)
    for required in ("url", "event_types"):
        if required not in body:
            raise _bad(required, "required")
    fields: dict[str, Any] = {}
    detected = detected_defaults(body)
    if detected is not None:
        fields.update(detected["applied"])
    _apply(fields, body, settings)
    # Secret header values are encrypted like the signing secret; never kept in clear.
    fields["headers"], fields["secret_headers"] = header_rules.seal(fields.get("headers", []), box)
    profile = fields.get("signing", "standard")
    if profile == "prospektr":
        # Prospektr's document: the keyed body and a single attempt (the README's table).
        fields.setdefault("body_format", "keyed")
        fields.setdefault("retry_schedule", [0.0])
    secret = _secret_for(profile, body)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad("enabled", "true or false")
    record = Subscription(
        id=new_subscription_id(),
        tenant_id=check_tenant(tenant_id),
        secrets=[box.encrypt(secret, now=now)] if secret is not None else [],
        state="enabled" if enabled else "disabled",
        disabled_reason=None if enabled else "created disabled",
        disabled_at=None if enabled else now,
        created_at=now,
        updated_at=now,
        **fields,
    )
    _check_combination(record)
    protected: dict[str, Any] = {"url": record.url}
    _protect_url(protected, box, now)
    return dataclasses.replace(record, **protected), secret


def event_type_warnings(
    patterns: list[str], *, domain: list[str], operational: list[str]
) -> list[str]:
    """One warning per pattern that matches no known event type, with the nearest names.

    Operational types count only for patterns that name their family (``endpoint.*``;
    ``*`` does not reach them, see ``streams.subscriptions.index.ops_patterns``).
    """
    import difflib

    misses = unmatched_patterns(patterns, domain)
    family = [p for p in misses if not p.startswith("*")]
    reach_ops = set(family) - set(unmatched_patterns(family, operational))
    warnings = []
    for pattern in misses:
        if pattern in reach_ops:
            continue
        near = difflib.get_close_matches(pattern, [*domain, *operational], n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        warnings.append(
            f"`{pattern}` matches no known event type, so it receives nothing until one is "
            f"added (known: {', '.join(domain)}; operational: {', '.join(operational)}){hint}"
        )
    return warnings


def apply_update(
    current: Subscription,
    body: Mapping[str, Any],
    *,
    settings: Settings,
    now: float,
    box: secret_store.SecretBox,
) -> Subscription:
    """Validate a PATCH and return the updated record (signing secrets are not changed
    here). ``box`` encrypts secret header values and a new URL that carries a credential."""
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the request body must be a JSON object")
    _check_unknown(body, UPDATE_FIELDS)
    fields: dict[str, Any] = {}
    _apply(fields, body, settings)
    if "headers" in fields:
        fields["headers"], fields["secret_headers"] = header_rules.seal(fields["headers"], box)
    if "signing" in fields and fields["signing"] != current.signing:
        raise _bad("signing", "cannot change the signing profile: create a new subscription")
    updated = dataclasses.replace(current, **fields, updated_at=now, version=current.version + 1)
    _check_combination(updated)
    _protect_url(fields, box, now)
    return dataclasses.replace(
        updated, **{k: fields[k] for k in ("url", "url_secret") if k in fields}
    )


def set_state(
    current: Subscription, *, enabled: bool, reason: str | None, now: float
) -> Subscription:
    return dataclasses.replace(
        current,
        state="enabled" if enabled else "disabled",
        disabled_reason=None if enabled else (reason or "disabled by an operator"),
        disabled_at=None if enabled else now,
        updated_at=now,
        version=current.version + 1,
    )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def public_view(
    sub: Subscription, *, now: float, public_keys: list[str] | None = None
) -> dict[str, Any]:
    """What the API and CLI show: everything but secret material (a URL that carries a
    credential is shown masked, ``url_masked`` true)."""
    valid = secret_store.active(sub.secrets, now)
    rotating = [s["expires_at"] for s in valid if s.get("expires_at") is not None]
    view: dict[str, Any] = {
        "id": sub.id,
        "tenant_id": sub.tenant_id,
        "url": sub.url,
        "url_masked": sub.url_secret is not None,
        "description": sub.description,
        "event_types": list(sub.event_types),
        "signing": sub.signing,
        "secret": {
            "set": bool(valid),
            "previous_valid_until": _iso(max(rotating)) if rotating else None,
        },
        "headers": header_rules.view(sub),  # secret values masked
        "secret_headers": header_rules.secret_names(sub),
        "retry_schedule": "default"
        if sub.retry_schedule is None
        else ("none" if list(sub.retry_schedule) == [0] else list(sub.retry_schedule)),
        "ordering": sub.ordering,
        "rate_limit": sub.rate_limit,
        "max_in_flight": sub.max_in_flight,
        "timeout": sub.timeout_s,
        "body_format": sub.body_format,
        "chat_id": sub.chat_id,
        "state": sub.state,
        "disabled_reason": sub.disabled_reason,
        "disabled_at": _iso(sub.disabled_at),
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
        "version": sub.version,
    }
    if public_keys:
        view["public_keys"] = public_keys
    return view
