"""HTTP plumbing of the management API: JSON in and out, errors, authentication.

Every error is JSON ``{"error": {"code", "message", "field"}}``. Bad input is
always a 4xx naming the field; a 5xx means a fault of ours or of Kafka, and
its message names no secret.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from streams.api.auth import Principal, TokenIndex, authenticate
from streams.errors import (
    AuthError,
    ConflictError,
    DestinationRefusedError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
    StreamsError,
    UnavailableError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/metrics"})
MAX_BODY_BYTES = 64 * 1024


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return json_response({"error": err}, status=status)


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        if required:
            raise InvalidRequestError("the request needs a JSON object body")
        return {}
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return body


def principal(request: web.Request) -> Principal:
    found: Principal = request["principal"]
    return found


def make_middleware(admin_token: str, tokens: TokenIndex) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in PUBLIC_PATHS:
                request["principal"] = authenticate(
                    request.headers.get("Authorization"), admin_token=admin_token, tokens=tokens
                )
            return await handler(request)
        except AuthError as exc:
            resp = error_response(401, "unauthorized", str(exc))
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        except InvalidRequestError as exc:
            return error_response(422, "invalid_request", str(exc), exc.field)
        except DestinationRefusedError as exc:
            return error_response(422, "invalid_request", str(exc), exc.field)
        except NotFoundError as exc:
            return error_response(404, "not_found", str(exc))
        except QuotaExceededError as exc:
            return error_response(409, "quota_exceeded", str(exc))
        except ConflictError as exc:
            return error_response(409, "conflict", str(exc))
        except UnavailableError as exc:
            return error_response(503, "unavailable", str(exc))
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
            raise
        except StreamsError as exc:
            log.error("API %s %s failed: %s", request.method, request.path, exc)
            return error_response(503, "unavailable", str(exc))
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return error_response(500, "internal", "internal error; see the worker's log")

    return middleware


def parse_flag(body: dict[str, Any], field: str) -> bool:
    """A JSON ``true``/``false`` (absent: false). ``"false"`` is refused, not taken as true."""
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise InvalidRequestError(f"`{field}`: true or false (JSON booleans)", field=field)
    return value
