"""A small synchronous client of the management API, for the CLI.

:class:`ApiClient` has one method per route of the API (see ``streams.api``).
An error answer ``{"error": {"code", "message", "field"}}`` becomes the
:class:`~streams.errors.StreamsError` subclass the server raised (422 →
:class:`InvalidRequestError` with its ``field``, 401 → :class:`AuthError`,
404 → :class:`NotFoundError`, 409 → :class:`ConflictError`; anything else
:class:`ApiError`), so the CLI prints it as one line. No API answering is
:class:`ApiUnreachableError`, one line saying what to start or set.

The bearer token is never part of an error, a ``repr`` or a log line: if an
answer echoes it back, it is masked before it reaches a message.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from streams.config import Settings
from streams.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StreamsError,
)

#: Connect, read, write and pool timeout of every request, in seconds.
TIMEOUT_S = 10.0
#: The most subscriptions one list request asks for (the API's maximum).
PAGE_SIZE = 1000
#: The most pages :meth:`ApiClient.list_all_subscriptions` reads (a bound, not a limit in use).
MAX_PAGES = 1000
_MASK = "********"
#: Attempts of a create whose outcome is unknown (no answer in time, a 5xx), each with
#: the same Idempotency-Key, so a repeat answers what an earlier one made.
CREATE_ATTEMPTS = 3
#: The wait before the second attempt; doubled before each next one.
CREATE_RETRY_WAIT_S = 1.0


class ApiError(StreamsError):
    """The management API answered an error with no more specific class (5xx, ...)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ApiUnreachableError(ApiError):
    """No management API answered at the configured URL (or it did not answer in time)."""


def dev_token_path(settings: Settings) -> Path:
    """Where ``streams worker`` keeps the generated development admin token."""
    return settings.state_dir / "dev-admin-token"


def resolve_token(settings: Settings) -> str | None:
    """The token the CLI sends: STREAMS_API_TOKEN, STREAMS_ADMIN_TOKEN, the dev token file.

    None when there is none (``/healthz`` needs no token; every other route
    raises :class:`ConfigError` through :meth:`ApiClient.require_token`).
    """
    for secret in (settings.api_token, settings.admin_token):
        if secret:
            return secret.reveal().strip()
    path = dev_token_path(settings)
    try:
        token = path.read_text().strip() if path.is_file() else ""
    except OSError:
        token = ""
    return token or None


def _display(url: str) -> str:
    """``url`` without any userinfo, safe to print."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _outcome_unknown(exc: ApiError) -> bool:
    """Whether a request may have taken effect although it failed: no answer in time,
    a connection lost mid-request, or a 5xx. A refused connection sent nothing."""
    if isinstance(exc, ApiUnreachableError):
        return exc.code != "refused"
    return exc.status is not None and exc.status >= 500


def _path_part(value: str) -> str:
    """An id as one path segment: ``../tokens`` or ``..`` cannot reach another route."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


class ApiClient:
    """One method per route of the management API; JSON in, JSON out."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        unset_hint: str = "set STREAMS_API_TOKEN (or STREAMS_ADMIN_TOKEN)",
    ) -> None:
        base_url = base_url.rstrip("/")
        if "@" in urlsplit(base_url).netloc:
            raise ConfigError(
                "STREAMS_API_URL must not carry credentials (user:password@): "
                "set STREAMS_API_TOKEN instead"
            )
        if token is not None and (not token or any(not 0x21 <= ord(c) <= 0x7E for c in token)):
            # Never echo it: say what is wrong, not what it is.
            raise ConfigError(
                "the API token is empty or has characters a bearer token cannot carry "
                "(spaces, control or non-ASCII characters): check STREAMS_API_TOKEN"
            )
        self.base_url = base_url
        self._token = token
        self._unset_hint = unset_hint
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "streams-cli"},
            follow_redirects=False,
            trust_env=False,
        )
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ApiClient:
        hint = (
            "set STREAMS_API_TOKEN (a tenant or admin token) or STREAMS_ADMIN_TOKEN; "
            f"in development, run `streams worker` once to generate {dev_token_path(settings)}"
        )
        return cls(settings.api_url, resolve_token(settings), unset_hint=hint, **kwargs)

    def __repr__(self) -> str:
        return f"ApiClient({_display(self.base_url)!r})"

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------

    def require_token(self) -> str:
        if self._token is None:
            raise ConfigError(f"no API token: {self._unset_hint}")
        return self._token

    def _mask(self, text: str) -> str:
        if self._token and self._token in text:
            return text.replace(self._token, _MASK)
        return text

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        ok: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = f"Bearer {self.require_token()}"
        content: bytes | None = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        shown = _display(self.base_url)
        try:
            resp = self._http.request(
                method, path, content=content, params=query or None, headers=headers
            )
        except httpx.ConnectError:
            raise ApiUnreachableError(
                f"no API answered at {shown}: is `streams worker` running? (set STREAMS_API_URL)",
                code="refused",
            ) from None
        except httpx.TimeoutException:
            raise ApiUnreachableError(
                f"the API at {shown} did not answer within {self.timeout:g}s: "
                "is `streams worker` running and healthy? (set STREAMS_API_URL)"
            ) from None
        except httpx.HTTPError as exc:
            raise ApiUnreachableError(
                f"the API at {shown} failed to answer ({type(exc).__name__}): "
                "is STREAMS_API_URL the address of `streams worker`?"
            ) from None
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise self._error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise ApiError(
                f"the API at {shown} answered {resp.status_code} with a body that is not JSON: "
                "is STREAMS_API_URL the address of `streams worker`?",
                status=resp.status_code,
            ) from None

    def _error(self, resp: httpx.Response) -> StreamsError:
        status = resp.status_code
        code, message, field = "", "", ""
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            doc = None
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or "")
            message = str(err.get("message") or "")
            field = str(err.get("field") or "")
        message = self._mask(message) or f"HTTP {status} {resp.reason_phrase}".strip()
        field = self._mask(field)
        if status in (400, 422):
            return InvalidRequestError(message, field=field)
        if status in (401, 403):
            return AuthError(f"{message} (the API refused the token: check STREAMS_API_TOKEN)")
        if status == 404:
            return NotFoundError(message)
        if status == 409:
            return ConflictError(message)
        return ApiError(f"the API answered {status}: {message}", status=status, code=code)

    # -- subscriptions ---------------------------------------------------------

    def create_subscription(
        self,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        attempts: int = CREATE_ATTEMPTS,
        retry_wait_s: float = CREATE_RETRY_WAIT_S,
    ) -> dict[str, Any]:
        """POST /v1/subscriptions. The answer holds ``signing_secret``, shown only here.

        Sent with an ``Idempotency-Key`` (a new UUID unless given), and sent again with
        the same key when the outcome is unknown: no answer in time, or a 5xx (Kafka
        away: the API writes nothing then). A repeat answers the subscription an earlier
        attempt made, with its secret, instead of making a second one. A refused
        connection is not retried (nothing was sent). If every attempt fails, the error
        names the key, to repeat the command with ``--idempotency-key``.
        """
        key = idempotency_key or str(uuid.uuid4())
        headers = {"Idempotency-Key": key}
        wait = retry_wait_s
        attempt = 1
        while True:  # at most `attempts` times
            try:
                result: dict[str, Any] = self._request(
                    "POST", "/v1/subscriptions", body=body, headers=headers
                )
                return result
            except ApiError as exc:
                if not _outcome_unknown(exc):
                    raise
                if attempt >= attempts:
                    raise type(exc)(
                        f"{exc} (the subscription may have been created: repeat the command "
                        f"with --idempotency-key {key} to get it and its secret, not a second one)",
                        status=exc.status,
                        code=exc.code,
                    ) from None
            time.sleep(wait)
            wait *= 2
            attempt += 1

    def list_subscriptions(
        self,
        *,
        tenant_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """GET /v1/subscriptions: one page ``{"data", "total", "next_offset"}``."""
        params = {"tenant_id": tenant_id, "state": state, "limit": limit, "offset": offset}
        result: dict[str, Any] = self._request("GET", "/v1/subscriptions", params=params)
        return result

    def list_all_subscriptions(
        self, *, tenant_id: str | None = None, state: str | None = None
    ) -> dict[str, Any]:
        """Every page of :meth:`list_subscriptions`, as one page of the same shape."""
        data: list[dict[str, Any]] = []
        offset = 0
        total = 0
        for _ in range(MAX_PAGES):
            page = self.list_subscriptions(
                tenant_id=tenant_id, state=state, limit=PAGE_SIZE, offset=offset
            )
            data.extend(page.get("data") or [])
            total = int(page.get("total") or len(data))
            nxt = page.get("next_offset")
            if not isinstance(nxt, int) or nxt <= offset:
                break
            offset = nxt
        return {"data": data, "total": total, "next_offset": None}

    def show_subscription(self, sub_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/subscriptions/{_path_part(sub_id)}")
        return result

    def update_subscription(self, sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "PATCH", f"/v1/subscriptions/{_path_part(sub_id)}", body=body
        )
        return result

    def delete_subscription(self, sub_id: str) -> None:
        self._request("DELETE", f"/v1/subscriptions/{_path_part(sub_id)}")

    def rotate_secret(
        self, sub_id: str, *, grace: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """POST .../rotate-secret. The answer holds the new ``signing_secret``, shown once."""
        body: dict[str, Any] = {}
        if grace is not None:
            body["grace"] = grace
        if secret is not None:
            body["secret"] = secret
        result: dict[str, Any] = self._request(
            "POST", f"/v1/subscriptions/{_path_part(sub_id)}/rotate-secret", body=body
        )
        return result

    def enable(self, sub_id: str, *, replay_parked: bool = False) -> dict[str, Any]:
        """POST .../enable. ``parked`` in the answer: what was parked while it was disabled
        (and, with ``replay_parked``, what was replayed)."""
        body = {"replay_parked": True} if replay_parked else {}
        result: dict[str, Any] = self._request(
            "POST", f"/v1/subscriptions/{_path_part(sub_id)}/enable", body=body
        )
        return result

    def disable(self, sub_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason is not None else {}
        result: dict[str, Any] = self._request(
            "POST", f"/v1/subscriptions/{_path_part(sub_id)}/disable", body=body
        )
        return result

    def test(self, sub_id: str) -> dict[str, Any]:
        """POST .../test: queue a sample event to this subscription alone."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/subscriptions/{_path_part(sub_id)}/test", body={}
        )
        return result

    # -- tokens ----------------------------------------------------------------

    def create_token(self, tenant_id: str, description: str | None = None) -> dict[str, Any]:
        """POST /v1/tokens (admin only). The answer holds ``token``, shown only here."""
        body: dict[str, Any] = {"tenant_id": tenant_id}
        if description is not None:
            body["description"] = description
        result: dict[str, Any] = self._request("POST", "/v1/tokens", body=body)
        return result

    def list_tokens(self, tenant_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/tokens", params={"tenant_id": tenant_id})
        return result

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/v1/tokens/{_path_part(token_id)}")

    # -- the delivery log ------------------------------------------------------

    def list_deliveries(self, **filters: Any) -> dict[str, Any]:
        """GET /v1/deliveries: one page ``{"data", "next_cursor"}``, newest first.

        ``filters``: tenant_id, subscription_id, event_type, status, since, until,
        limit, cursor (None values are left out)."""
        result: dict[str, Any] = self._request("GET", "/v1/deliveries", params=filters)
        return result

    def show_delivery(self, delivery_id: str) -> dict[str, Any]:
        """GET /v1/deliveries/{id}: the summary and every attempt."""
        result: dict[str, Any] = self._request("GET", f"/v1/deliveries/{_path_part(delivery_id)}")
        return result

    def redeliver(self, delivery_id: str) -> dict[str, Any]:
        """POST /v1/deliveries/{id}/redeliver: send it again (202, queued)."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/deliveries/{_path_part(delivery_id)}/redeliver", body={}
        )
        return result

    # -- statistics ------------------------------------------------------------

    def stats(self, *, tenant_id: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """GET /v1/stats: windows (5m, 1h, 24h, 7d) and the subscriptions failing most."""
        params = {"tenant_id": tenant_id, "limit": limit}
        result: dict[str, Any] = self._request("GET", "/v1/stats", params=params)
        return result

    def subscription_stats(self, sub_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/v1/subscriptions/{_path_part(sub_id)}/stats"
        )
        return result

    # -- health ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /healthz (no token): ``{"status": "ok"|"starting", "subscriptions": n}``."""
        result: dict[str, Any] = self._request("GET", "/healthz", auth=False, ok=(503,))
        return result

    # -- dead-letter replays ---------------------------------------------------

    def cancel_replay(self, replay_id: str) -> dict[str, Any]:
        """DELETE /v1/dlq/replays/{id}: the summary, stopped (200) or stopping (202)."""
        result: dict[str, Any] = self._request("DELETE", f"/v1/dlq/replays/{_path_part(replay_id)}")
        return result

    # -- console ---------------------------------------------------------------

    def console_link(self, *, tenant_id: str | None = None, embed: bool = False) -> dict[str, Any]:
        """POST /v1/console/sessions: a single-use sign-in link to the web console.

        A tenant's link (``tenant_id``; a tenant token may name only its own), or
        with the admin token and no ``tenant_id`` the operator's. The answer's
        ``url`` signs in whoever opens it first, within ``valid_for_s``.
        """
        body: dict[str, Any] = {}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        if embed:
            body["embed"] = True
        result: dict[str, Any] = self._request("POST", "/v1/console/sessions", body=body)
        return result
