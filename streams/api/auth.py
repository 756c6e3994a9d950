"""Bearer tokens: the administrator's, and tenant-scoped ones the admin creates.

- The admin token is ``STREAMS_ADMIN_TOKEN``. In development, when unset, one
  is generated under ``STREAMS_STATE_DIR`` (mode 0600) and printed once to the
  terminal by ``streams worker``; it is never logged.
- A tenant token looks like ``stk_<id>.<secret>``. Only the SHA-256 of the
  secret part is stored (compacted topic ``tokens``, key = id), so a leaked
  topic does not leak usable tokens. The clear token is returned once.

A tenant token sees and changes only its own tenant's resources: every
handler resolves the tenant through :func:`scope` and answers 404 (never 403)
for another tenant's resource, so existence does not leak either.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from streams.config import Settings
from streams.errors import AuthError, ConfigError, DecodeError, InvalidRequestError
from streams.tenants import is_reserved

log = logging.getLogger(__name__)

TOKEN_PREFIX = "stk_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    admin: bool
    tenant_id: str | None = None
    token_id: str | None = None


ADMIN = Principal(admin=True)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def resolve_admin_token(settings: Settings) -> tuple[str, bool]:
    """The admin token, and whether it was generated just now (to print it once)."""
    configured = settings.admin_token.reveal()
    if configured:
        if len(configured) < 16:
            raise ConfigError("STREAMS_ADMIN_TOKEN is too short: use at least 16 random characters")
        return configured, False
    if not settings.development:
        raise ConfigError(
            "STREAMS_ADMIN_TOKEN is not set: production needs an admin bearer token "
            "(or set STREAMS_ENV=development to generate a local one)"
        )
    path = settings.state_dir / "dev-admin-token"
    if path.is_file():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "adm_" + secrets.token_urlsafe(24)
    path.write_text(token)
    path.chmod(0o600)
    return token, True


def new_tenant_token(tenant_id: str, description: str, now: float) -> tuple[str, dict[str, Any]]:
    """A new token: (the clear token, the record to store)."""
    token_id = "tok_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = {
        "id": token_id,
        "tenant_id": tenant_id,
        "description": description,
        "sha256": _digest(secret),
        "created_at": now,
    }
    return f"{TOKEN_PREFIX}{token_id}.{secret}", record


class TokenIndex:
    """Tenant tokens by id, fed from the compacted ``tokens`` topic."""

    def __init__(self) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}

    def apply(self, token_id: str, raw: bytes | None) -> str | None:
        """Apply one record of the tokens topic; returns why it was unusable, or None."""
        if raw is None:
            self._by_id.pop(token_id, None)
            return None
        try:
            record = orjson.loads(raw)
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("tenant_id"), str)
                or not isinstance(record.get("sha256"), str)
                or not isinstance(record.get("created_at", 0), int | float)
            ):
                raise DecodeError("token record without tenant_id/sha256 strings", raw)
        except (orjson.JSONDecodeError, DecodeError):
            self._by_id.pop(token_id, None)  # as the latest record of its key: no token
            return "not a token record (tenant_id and sha256 strings): it grants nothing"
        if is_reserved(record["tenant_id"]):
            # Made before the platform reserved its names (streams.tenants): kept, so the
            # admin can list and revoke it, but :func:`authenticate` refuses it.
            log.warning(
                "token %s belongs to reserved tenant %r and is refused: revoke it with "
                "DELETE /v1/tokens/%s",
                token_id,
                record["tenant_id"],
                token_id,
            )
        self._by_id[token_id] = record
        return None

    def get(self, token_id: str) -> dict[str, Any] | None:
        return self._by_id.get(token_id)

    def listing(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Token records without their digests."""
        return [
            {k: v for k, v in r.items() if k != "sha256"}
            for r in sorted(self._by_id.values(), key=lambda r: r.get("created_at", 0))
            if tenant_id is None or r["tenant_id"] == tenant_id
        ]


def authenticate(header: str | None, *, admin_token: str, tokens: TokenIndex) -> Principal:
    """Resolve an ``Authorization`` header to a principal, or raise :class:`AuthError`."""
    if not header or not header.startswith("Bearer "):
        raise AuthError("missing bearer token: send `Authorization: Bearer <token>`")
    token = header[len("Bearer ") :].strip()
    if not token.isascii():
        # Tokens are ASCII; aiohttp hands other bytes over as surrogates, which
        # would fail to encode below (a 500 instead of a 401).
        raise AuthError("unknown or revoked token")
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return ADMIN
    if token.startswith(TOKEN_PREFIX) and "." in token:
        token_id, _, secret = token[len(TOKEN_PREFIX) :].partition(".")
        record = tokens.get(token_id)
        if record is not None and hmac.compare_digest(_digest(secret), str(record["sha256"])):
            tenant = str(record["tenant_id"])
            if is_reserved(tenant):
                raise AuthError(
                    f"this token's tenant id `{tenant}` is reserved for the platform: the "
                    "admin must revoke it and make one for another tenant id"
                )
            return Principal(admin=False, tenant_id=tenant, token_id=token_id)
    raise AuthError("unknown or revoked token")


def scope(principal: Principal, requested: str | None) -> str | None:
    """The tenant a request acts on: a tenant token's own; an admin's choice (may be None).

    A tenant token naming another tenant is refused as a bad field, since the
    token already fixes the tenant.
    """
    if principal.admin:
        return requested
    if requested is not None and requested != principal.tenant_id:
        raise InvalidRequestError(
            "`tenant_id`: a tenant token acts only on its own tenant; omit tenant_id",
            field="tenant_id",
        )
    return principal.tenant_id


def visible(principal: Principal, tenant_id: str) -> bool:
    return principal.admin or principal.tenant_id == tenant_id


def now() -> float:
    return time.time()
