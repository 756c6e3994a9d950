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


class UnreadableBodyError(InvalidRequestError):
    """The body could not be read as sent: a compressed body that does not decompress
    (``Content-Encoding: gzip`` over bytes that are not gzip), a broken chunked body.
    A 400, not a 422: the bytes never became JSON for any field to be wrong in."""


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return json_response({"error": err}, status=status)


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await read_body(request)
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


async def read_body(request: web.Request) -> bytes:
    """The request's body, decompressed; an undecodable one is :class:`UnreadableBodyError`.

    aiohttp decompresses ``gzip``, ``deflate`` (and ``br``/``zstd`` when their
    libraries are installed) while the body is read, and reports corrupt data as a
    ``RequestPayloadError``, which reached the catch-all as a 500 with a traceback.
    """
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        # Nothing more will be read: without this, aiohttp's lingering read of the rest
        # after the answer raised the same error again and logged it as unhandled.
        request.content.feed_eof()
        encoding = request.headers.get("Content-Encoding", "").strip()
        cause = exc.__cause__ or exc.__context__
        detail = getattr(cause, "message", None) or str(cause or exc)
        if encoding and encoding.lower() != "identity":
            raise UnreadableBodyError(
                f"the request body is not valid {encoding} ({detail}): send it as valid "
                f"{encoding}, or uncompressed without the Content-Encoding header"
            ) from None
        raise UnreadableBodyError(f"the request body could not be read: {detail}") from None


def principal(request: web.Request) -> Principal:
    found: Principal = request["principal"]
    return found


def _unreadable(exc: UnreadableBodyError) -> web.Response:
    resp = error_response(400, "bad_request", str(exc))
    resp.force_close()  # where the next request would start is unknown: close
    return resp


def make_middleware(admin_token: str, tokens: TokenIndex) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/console" or request.path.startswith("/console/"):
            # The console's own middleware answers for it; only an unreadable body is
            # answered here, the same way for every route.
            if request.body_exists:
                try:
                    await read_body(request)
                except UnreadableBodyError as exc:
                    return _unreadable(exc)
            return await handler(request)
        try:
            if request.path not in PUBLIC_PATHS:
                request["principal"] = authenticate(
                    request.headers.get("Authorization"), admin_token=admin_token, tokens=tokens
                )
            if request.body_exists:
                # Read (and decompress) every body here, once (aiohttp keeps it for the
                # handler): a route that ignores its body would otherwise leave a corrupt
                # one to aiohttp, which logged it as an unhandled error after answering.
                await read_body(request)
            return await handler(request)
        except AuthError as exc:
            resp = error_response(401, "unauthorized", str(exc))
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        except UnreadableBodyError as exc:
            return _unreadable(exc)
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
