"""The OpenAPI 3.1 document of the management API, served at ``/openapi.json``.

Written by hand next to the routes it describes; a test checks that every
route the server registers is documented and vice versa.
"""

from __future__ import annotations

from typing import Any

from streams.schemas import record_schema

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}

_CREATE = {
    "type": "object",
    "required": ["url", "event_types"],
    "additionalProperties": False,
    "properties": {
        "tenant_id": {
            "type": "string",
            "description": "Required with the admin token; omit with a tenant token.",
        },
        "url": {
            "type": "string",
            "description": (
                "https (http only in development); no credentials; must not resolve to "
                "private/loopback/metadata addresses unless allowlisted. A Slack, Discord or "
                "Telegram URL carries its own credential: it is stored encrypted and shown "
                "masked; without `body_format` / `signing` it gets that service's format and "
                "signing `none` (see `detected` in the response)."
            ),
        },
        "description": {"type": "string", "maxLength": 500},
        "event_types": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Exact types or patterns: `prospect.*`, `*`.",
        },
        "signing": {
            "enum": ["standard", "prowlo", "prospektr", "stripe", "github", "none"],
            "default": "standard",
            "description": "`none`: unsigned, no secret (chat services verify no signature).",
        },
        "secret": {
            "type": ["string", "null"],
            "description": (
                "Your own secret; generated when omitted; null = unsigned (prospektr only)."
            ),
        },
        "headers": {
            "description": (
                "Sent with every delivery. A bare string value is secret (encrypted at rest, "
                'shown masked); `{"value": ..., "secret": false}`, or the list form with '
                '`"secret": false`, stores and shows it in clear. On update, replaces them all.'
            ),
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "string"},
                            {
                                "type": "object",
                                "required": ["value"],
                                "additionalProperties": False,
                                "properties": {
                                    "value": {"type": "string"},
                                    "secret": {"type": "boolean", "default": True},
                                },
                            },
                        ]
                    },
                },
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "value"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "value": {"type": "string"},
                            "secret": {"type": "boolean", "default": True},
                        },
                    },
                },
            ],
        },
        "retry_schedule": {
            "description": (
                "`default`, `none` (one attempt), or durations such as `5s,5m,30m` (a bare "
                "number is seconds); `none` by default with `signing: prospektr`."
            ),
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        },
        "ordering": {"enum": ["unordered", "ordered"], "default": "unordered"},
        "rate_limit": {"type": ["number", "null"], "description": "Requests per second."},
        "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 256, "default": 16},
        "timeout": {
            "description": "Whole-request timeout, at most 30s: `10s`, or seconds (`10`).",
            "oneOf": [{"type": "string"}, {"type": "number"}],
        },
        "body_format": {
            "enum": ["envelope", "keyed", "slack", "discord", "telegram"],
            "default": "envelope",
            "description": (
                "slack/discord/telegram: a chat message rendered from the event; "
                "`keyed` by default with `signing: prospektr`."
            ),
        },
        "chat_id": {
            "type": ["string", "integer", "null"],
            "description": "Telegram only (required there): numeric chat id or @channelusername.",
        },
        "enabled": {"type": "boolean", "default": True},
    },
}

_VIEW = {
    "type": "object",
    "description": (
        "A subscription as shown: never any secret material, except `signing_secret` "
        "in the responses of create and rotate-secret."
    ),
    "properties": {
        "id": {"type": "string"},
        "tenant_id": {"type": "string"},
        "url": {"type": "string", "description": "Masked (`***`) when it carries a credential."},
        "url_masked": {"type": "boolean"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "signing": {"type": "string"},
        "secret": {
            "type": "object",
            "properties": {
                "set": {"type": "boolean"},
                "previous_valid_until": {"type": ["string", "null"]},
            },
        },
        "signing_secret": {
            "type": "string",
            "description": "Only in create and rotate-secret responses.",
        },
        "public_keys": {
            "type": "array",
            "items": {"type": "string"},
            "description": "whpk_ keys for v1a (ed25519) subscriptions.",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Custom headers; the value of a secret one is `********`.",
        },
        "secret_headers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The names of the custom headers whose values are secret.",
        },
        "state": {"enum": ["enabled", "disabled"]},
        "disabled_reason": {"type": ["string", "null"]},
        "body_format": {"type": "string"},
        "chat_id": {"type": ["string", "null"]},
        "detected": {
            "type": "object",
            "description": (
                "Only in the create response, for a Slack, Discord or Telegram URL: the "
                "service, what was chosen for it (`applied`), and a sentence saying so."
            ),
            "properties": {
                "service": {"enum": ["slack", "discord", "telegram"]},
                "applied": {"type": "object", "additionalProperties": {"type": "string"}},
                "message": {"type": "string"},
            },
        },
        "warnings": {
            "type": "array",
            "items": {"type": "string"},
            "description": (
                "Create and update: event-type patterns that match no known event type "
                "(accepted; most often a typo), with the nearest known names."
            ),
        },
        "parked": {
            "type": "object",
            "description": (
                "Enable of a disabled subscription: `count` of deliveries parked while it "
                "was disabled, and `replay` (how to send them) or, with `replay_parked`, "
                "`replayed` and `replay_id`."
            ),
        },
    },
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "A new key (a UUID) per subscription to create. Repeating the request with the "
        "same key within 24 h answers the subscription it created and its secret "
        "(header `Idempotent-Replayed: true`) instead of creating another; the same key "
        "with a different request is a 422. Kept on the subscription record, so every "
        "worker answers it."
    ),
}


_WINDOW = {
    "type": "object",
    "properties": {
        "attempts": {"type": "integer"},
        "delivered": {"type": "integer"},
        "retried": {"type": "integer"},
        "failed": {"type": "integer", "description": "Attempts after which the delivery gave up."},
        "success_rate": {"type": ["number", "null"], "description": "delivered / attempts"},
        "latency_ms": {
            "type": "object",
            "description": "Request duration percentiles (nearest rank over a histogram of "
            "9%-wide bins: within 4.5%).",
            "properties": {
                "p50": {"type": ["number", "null"]},
                "p99": {"type": ["number", "null"]},
            },
        },
        "status_classes": {"type": "object", "additionalProperties": {"type": "integer"}},
        "last_error": {"type": ["object", "null"]},
    },
}

_STATS = {
    "type": "object",
    "properties": {
        "windows": {
            "type": "object",
            "description": "Counted in whole minutes (up to 24h) and hours (7d): each "
            "window reaches up to one of them further back than its name.",
            "properties": {"5m": _WINDOW, "1h": _WINDOW, "24h": _WINDOW, "7d": _WINDOW},
        },
        "failing": {"type": "array", "items": {"type": "object"}},
        "consecutive_failures": {"type": ["integer", "null"]},
        "hourly": {
            "type": "array",
            "items": {"type": "object"},
            "description": "Subscription stats: attempts and delivered per hour, last 24 h.",
        },
        "attempt_log": {
            "type": "object",
            "description": "How much of the log this node holds (attempts, deliveries, "
            "oldest_at): the caller's tenant only for a tenant token.",
        },
        "log_node": {"type": "object", "description": "Admin only: this node's store and indexer."},
    },
}

_DELIVERY = {
    "type": "object",
    "description": "A delivery: its latest attempt by time, and how many there were.",
    "properties": {
        "delivery_id": {"type": "string"},
        "event_id": {"type": "string"},
        "event_type": {"type": "string"},
        "tenant_id": {"type": "string"},
        "subscription_id": {"type": "string"},
        "outcome": {"enum": ["delivered", "retry", "give_up"]},
        "status": {"type": ["integer", "null"]},
        "attempts": {"type": "integer"},
        "first_attempt_at": {"type": "number"},
        "last_attempt_at": {"type": "number"},
        "last_attempt": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
    },
}

_PAGE = {
    "type": "object",
    "properties": {
        "data": {"type": "array", "items": _DELIVERY},
        "next_cursor": {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null on the last one.",
        },
    },
}


def _op(
    summary: str,
    *,
    body: Any = None,
    ok: int = 200,
    schema: Any = None,
    params: list[dict[str, Any]] | None = None,
    also: dict[int, str] | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): {
                "description": "OK",
                **({"content": {"application/json": {"schema": schema}}} if schema else {}),
            },
            "400": {
                "description": "The body could not be read as sent (e.g. corrupt gzip)",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "401": {
                "description": "Missing or unknown token",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "404": {
                "description": "Not found (or another tenant's)",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "422": {
                "description": "A bad field, named in `error.field`",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "503": {
                "description": (
                    "Kafka did not answer (a write then writes nothing) or did not confirm in "
                    "5 s (it may still land: repeat a create with its Idempotency-Key)"
                ),
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    for status, description in (also or {}).items():
        op["responses"][str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": schema if status < 400 else _ERROR}},
        }
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    if params:
        op["parameters"] = params
    return op


def _q(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

_REPLAY_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "subscription_id": {"type": "string"},
        "tenant_id": {"type": "string", "description": "admin only"},
        "event_type": {"type": "string"},
        "reason": {
            "enum": [
                "exhausted",
                "not_retryable",
                "subscription_disabled",
                "subscription_deleted",
                "gone",
            ]
        },
        "since": {"type": ["string", "number"], "description": "RFC 3339 or unix seconds"},
        "until": {"type": ["string", "number"], "description": "RFC 3339 or unix seconds"},
        "force": {"type": "boolean", "description": "send letters replayed before again"},
        "rate": {"type": "number", "minimum": 0.01, "description": "letters per second at most"},
        "dry_run": {"type": "boolean", "description": "only count (answers 200)"},
    },
}

_REPLAY = {
    "type": "object",
    "description": "A replay's summary. `matched`, `replayed` and `skipped` grow letter by "
    "letter; `total` (the count made before it started) is where they end. Cancelled, "
    "interrupted (the worker stopped) and failed replays say where in `stopped_at` and "
    "`message`, and can be resumed.",
    "properties": {
        "replay_id": {"type": "string"},
        "status": {"enum": ["running", "finished", "failed", "cancelled", "interrupted"]},
        "message": {"type": "string", "description": "where it is or stopped, in a sentence"},
        "matched": {"type": "integer", "description": "letters gone through so far"},
        "replayed": {"type": "integer", "description": "sent by this replay (resumes too)"},
        "skipped": {"type": "integer", "description": "replayed before (force sends them)"},
        "total": {"type": ["integer", "null"], "description": "letters matching at the start"},
        "to_send": {"type": ["integer", "null"], "description": "of those, not replayed before"},
        "position": {"type": ["string", "null"], "description": "last letter, partition:offset"},
        "stopped_at": {"type": ["string", "null"], "description": "position where it stopped"},
        "tenant_id": {"type": ["string", "null"], "description": "null: every tenant's"},
        "request": {"type": "object", "description": "filters, force, rate (for resume)"},
        "resumes": {"type": "integer"},
        "error": {"type": ["string", "null"]},
        "started_at": {"type": "number"},
        "finished_at": {"type": ["number", "null"]},
        "updated_at": {"type": "number"},
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "streams management API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Subscription": _VIEW,
                "SubscriptionRecord": record_schema("subscription"),
                "Error": _ERROR,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    **_op("Liveness and readiness (503 until the subscriptions are read)"),
                    "security": [],
                }
            },
            "/openapi.json": {"get": {**_op("This document"), "security": []}},
            "/v1/subscriptions": {
                "post": _op(
                    "Create a subscription; the response holds the secret, once",
                    body=_CREATE,
                    ok=201,
                    schema=_VIEW,
                    params=[_IDEMPOTENCY_KEY],
                    also={
                        409: "`quota_exceeded`: the tenant has STREAMS_TENANT_MAX_SUBSCRIPTIONS "
                        "subscriptions; `conflict`: the Idempotency-Key's subscription had "
                        "its secret rotated since"
                    },
                ),
                "get": _op(
                    "List subscriptions",
                    schema={"type": "object"},
                    params=[
                        _q("tenant_id", "admin only"),
                        _q("state", "enabled|disabled"),
                        _q("limit", "1-1000"),
                        _q("offset", "0+"),
                    ],
                ),
            },
            "/v1/subscriptions/{id}": {
                "get": _op("Show a subscription", schema=_VIEW, params=_ID),
                "patch": _op(
                    "Change fields (not the tenant, secret or signing profile)",
                    body={**_CREATE, "required": []},
                    schema=_VIEW,
                    params=_ID,
                ),
                "delete": _op("Delete a subscription", ok=204, params=_ID),
            },
            "/v1/subscriptions/{id}/rotate-secret": {
                "post": _op(
                    "Rotate the signing secret; the old one stays valid for `grace` (default 24h)",
                    body={
                        "type": "object",
                        "properties": {
                            "secret": {"type": "string"},
                            "grace": {
                                "oneOf": [{"type": "string"}, {"type": "number"}],
                                "description": "`24h`, `0s`, or seconds (`3600`); at most 7d",
                            },
                        },
                    },
                    schema=_VIEW,
                    params=_ID,
                )
            },
            "/v1/subscriptions/{id}/enable": {"post": _op("Enable", schema=_VIEW, params=_ID)},
            "/v1/subscriptions/{id}/disable": {
                "post": _op(
                    "Disable with a reason",
                    body={"type": "object", "properties": {"reason": {"type": "string"}}},
                    schema=_VIEW,
                    params=_ID,
                )
            },
            "/v1/subscriptions/{id}/test": {
                "post": _op(
                    "Send a sample event to this subscription now: of `event_type` (a known "
                    "type it receives), else of its first event type",
                    body={"type": "object", "properties": {"event_type": {"type": "string"}}},
                    body_required=False,
                    ok=202,
                    schema={"type": "object"},
                    params=_ID,
                )
            },
            "/v1/tokens": {
                "post": _op(
                    "Create a tenant token (admin); the response holds the token, once",
                    body={
                        "type": "object",
                        "required": ["tenant_id"],
                        "properties": {
                            "tenant_id": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                    ok=201,
                    schema={"type": "object"},
                ),
                "get": _op(
                    "List tenant tokens (admin), without secrets",
                    schema={"type": "object"},
                    params=[_q("tenant_id", "filter")],
                ),
            },
            "/v1/deliveries": {
                "get": _op(
                    "The delivery log: one row per delivery, newest first by its first "
                    "attempt (a delivery keeps its place when retried, so a cursor neither "
                    "skips nor repeats one while attempts arrive); 503 on a worker that "
                    "keeps no log, with where to ask",
                    schema=_PAGE,
                    params=[
                        _q("tenant_id", "admin only"),
                        _q("subscription_id", "filter"),
                        _q("status", "delivered|failed|retrying or an HTTP status"),
                        _q("event_type", "filter"),
                        _q("since", "first attempt at or after: RFC 3339 or unix seconds"),
                        _q("until", "first attempt before: RFC 3339 or unix seconds"),
                        _q("limit", "1-1000"),
                        _q("cursor", "the previous page's next_cursor"),
                    ],
                )
            },
            "/v1/deliveries/{id}": {
                "get": _op(
                    "A delivery with all its attempts, oldest first (each with `source`: "
                    "where the request it sent is in Kafka)",
                    schema={"type": "object"},
                    params=_ID,
                )
            },
            "/v1/deliveries/{id}/redeliver": {
                "post": _op(
                    "Send a past delivery again (same webhook-id, marked as a replay; its "
                    "attempts are numbered on after the delivery's history)",
                    ok=202,
                    schema={"type": "object"},
                    params=_ID,
                )
            },
            "/v1/dlq": {
                "get": _op(
                    "Dead letters matching the filters",
                    schema={"type": "object"},
                    params=[
                        _q("subscription_id", "filter"),
                        _q("tenant_id", "admin only"),
                        _q("event_type", "filter"),
                        _q("reason", "exhausted|not_retryable|subscription_disabled|..."),
                        _q("since", "RFC 3339 or unix seconds"),
                        _q("until", "RFC 3339 or unix seconds"),
                        _q("limit", "1-1000"),
                    ],
                )
            },
            "/v1/dlq/replay": {
                "post": _op(
                    "Replay matching dead letters in a thread of this worker (answers 202 "
                    "with `replay_id`, `total`), or count them (`dry_run`: 200). A worker runs "
                    "STREAMS_REPLAY_SLOTS replays at once; a tenant STREAMS_REPLAYS_PER_TENANT "
                    "of them, and tenants leave one slot for the admin",
                    body=_REPLAY_REQUEST,
                    ok=202,
                    schema={"type": "object"},
                    also={
                        200: "The dry run's counts",
                        409: "No replay slot free for this caller (the message says which limit)",
                    },
                )
            },
            "/v1/dlq/replays/{id}": {
                "get": _op(
                    "A replay's progress or how it ended (this worker's live, else the last "
                    "summary any worker wrote)",
                    schema=_REPLAY,
                    params=_ID,
                ),
                "delete": _op(
                    "Cancel a running replay: it stops between two letters and records where "
                    "(200 once stopped, 202 while stopping). Tenant-scoped like GET",
                    schema=_REPLAY,
                    params=_ID,
                    also={
                        202: "Stopping: GET it again for where it stopped",
                        409: "Not running, or running on another worker",
                    },
                ),
            },
            "/v1/dlq/replays/{id}/resume": {
                "post": _op(
                    "Run a cancelled, interrupted or failed replay again under the same id, "
                    "with its filters: what it sent before is not sent again (with force too)",
                    ok=202,
                    schema=_REPLAY,
                    params=_ID,
                    also={409: "Running, finished, or no replay slot free"},
                )
            },
            "/v1/tokens/{id}": {"delete": _op("Revoke a tenant token (admin)", ok=204, params=_ID)},
            "/v1/stats": {
                "get": _op(
                    "Delivery statistics over the last 5m, 1h, 24h and 7d, and the "
                    "subscriptions failing most (a tenant token sees its own tenant only)",
                    schema=_STATS,
                    params=[_q("tenant_id", "admin only"), _q("limit", "failing rows, 1-100")],
                )
            },
            "/v1/subscriptions/{id}/stats": {
                "get": _op(
                    "One subscription's statistics over the last 5m, 1h, 24h and 7d, its "
                    "attempts per hour over the last day, and its current run of "
                    "consecutive failures",
                    schema=_STATS,
                    params=_ID,
                )
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of this worker (404 when STREAMS_METRICS=off)",
                    "security": [],
                    "responses": {"200": {"description": "Prometheus text exposition format"}},
                }
            },
        },
    }
