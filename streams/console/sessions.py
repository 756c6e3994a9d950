"""Sign-in links and sessions of the web console, valid on every worker.

A link and a session are both Fernet tokens (AES + HMAC, from
``cryptography``) under a key derived from ``STREAMS_SECRETS_KEY``
(:meth:`~streams.subscriptions.secrets.SecretBox.derive`), which every worker
shares: any worker behind a load balancer opens what another issued, and
nothing is kept per session in memory. A token says what it is (``k``), whom
it grants (tenant, admin, embedded) and when it ends (``x``); the client can
read none of it and change none of it.

What a stateless token cannot do alone is be used once, or be revoked before
it expires. :class:`ConsoleLedger` keeps both facts on the compacted
``tokens`` topic, which every worker already follows for the API's tenant
tokens:

- ``csl_<link id>``: a link was opened. Two workers opening the same link at
  once both write one; both wait until their reader has passed their own
  record, and the one whose record comes first in the topic wins (one
  partition, so one order for everyone). The other refuses the link.
- ``css_<session id>``: a session was ended by logout.

Records name the time they stop mattering; a worker forgets them after it
(an expired link or session is refused on its own expiry time anyway), so
the ledger's memory is bounded by the links and logouts of one session lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from cryptography.fernet import InvalidToken, MultiFernet

log = logging.getLogger(__name__)

#: How long a sign-in link may wait before it is opened.
LINK_TTL_S = 600.0
#: Key prefixes of the ledger's records on the ``tokens`` topic.
LINK_PREFIX = "csl_"
SESSION_PREFIX = "css_"
#: How long opening a link waits for this worker's reader to pass its own record.
CLAIM_TIMEOUT_S = 10.0
#: Fernet's own age limit, far above any lifetime: expiry is checked on ``x``.
_FERNET_TTL_S = 10 * 366 * 86400
#: Forgotten records are swept after this many applied records.
_SWEEP_EVERY = 256


class LinkRefused(Exception):
    """A sign-in link that cannot be used; the message says why, for the person holding it."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Whom a link or session speaks for: one tenant, or the operator (admin, no tenant)."""

    tenant_id: str | None
    admin: bool
    embed: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    grant: Grant
    expires_at: float


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    grant: Grant
    csrf: str
    expires_at: float


class SessionCodec:
    """Issue and open links and sessions (pure: the time is an argument)."""

    def __init__(self, fernet: MultiFernet, session_s: float) -> None:
        self._fernet = fernet
        self.session_s = session_s

    def _seal(self, claims: Mapping[str, object], now: float) -> str:
        return self._fernet.encrypt_at_time(orjson.dumps(claims), int(now)).decode("ascii")

    def _open(self, token: str, kind: str, now: float) -> dict[str, object] | None:
        if not token or not token.isascii() or len(token) > 4096:
            return None
        try:
            raw = self._fernet.decrypt_at_time(token.encode(), _FERNET_TTL_S, int(now))
            claims = orjson.loads(raw)
        except (InvalidToken, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("k") != kind:
            return None  # a session is never a link, nor the other way round
        return claims

    @staticmethod
    def _grant(claims: dict[str, object]) -> Grant:
        tenant = claims.get("t")
        return Grant(
            tenant_id=tenant if isinstance(tenant, str) else None,
            admin=claims.get("a") is True,
            embed=claims.get("e") is True,
        )

    def issue_link(self, grant: Grant, now: float) -> tuple[str, Link]:
        link = Link(id=secrets.token_hex(12), grant=grant, expires_at=now + LINK_TTL_S)
        claims = {
            "k": "link",
            "i": link.id,
            "t": grant.tenant_id,
            "a": grant.admin,
            "e": grant.embed,
            "x": link.expires_at,
        }
        return self._seal(claims, now), link

    def open_link(self, token: str, now: float) -> Link:
        """The link's claims; :class:`LinkRefused` when it is not ours or has expired."""
        claims = self._open(token, "link", now)
        if claims is None:
            raise LinkRefused(
                "This sign-in link is not valid: it may be cut short or changed. "
                "Ask for a new link."
            )
        expires_at = float(claims.get("x", 0))  # type: ignore[arg-type]
        if now >= expires_at:
            raise LinkRefused(
                f"This sign-in link expired: links are valid for {LINK_TTL_S / 60:.0f} minutes. "
                "Ask for a new link."
            )
        return Link(id=str(claims["i"]), grant=self._grant(claims), expires_at=expires_at)

    def seal_once(self, claims: dict[str, object], now: float) -> str:
        """A short-lived value for one page load (a new secret on its way to its dialog)."""
        return self._seal({**claims, "k": "once"}, now)

    def open_once(self, token: str, now: float, *, ttl_s: float) -> dict[str, object] | None:
        claims = self._open(token, "once", now)
        if claims is None:
            return None
        try:
            issued = self._fernet.extract_timestamp(token.encode())
        except InvalidToken:
            return None
        return claims if now - issued < ttl_s else None

    def issue_session(self, grant: Grant, now: float) -> tuple[str, Session]:
        session = Session(
            id=secrets.token_hex(12),
            grant=grant,
            csrf=secrets.token_urlsafe(24),
            expires_at=now + self.session_s,
        )
        claims = {
            "k": "session",
            "i": session.id,
            "t": grant.tenant_id,
            "a": grant.admin,
            "e": grant.embed,
            "c": session.csrf,
            "x": session.expires_at,
        }
        return self._seal(claims, now), session

    def open_session(self, token: str, now: float) -> Session | None:
        """The session a cookie holds, or None (absent, forged, or expired)."""
        claims = self._open(token, "session", now)
        if claims is None:
            return None
        expires_at = float(claims.get("x", 0))  # type: ignore[arg-type]
        if now >= expires_at:
            return None
        return Session(
            id=str(claims["i"]),
            grant=self._grant(claims),
            csrf=str(claims["c"]),
            expires_at=expires_at,
        )


#: Writes one ``tokens`` record and returns when the broker acknowledged it.
Send = Callable[[str, bytes], Awaitable[None]]


class ConsoleLedger:
    """Opened links and ended sessions, as every worker reads them from ``tokens``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._links: dict[str, tuple[str, float]] = {}  # link id -> (first nonce, until)
        self._ended: dict[str, float] = {}  # session id -> until
        self._waiters: dict[str, asyncio.Event] = {}
        self._applied = 0

    @staticmethod
    def owns(key: str) -> bool:
        return key.startswith((LINK_PREFIX, SESSION_PREFIX))

    def wrap(
        self, apply: Callable[[str, bytes | None], str | None]
    ) -> Callable[[str, bytes | None], str | None]:
        """``apply`` of the tokens reader, with the ledger's keys routed here.

        Like every state reader's ``apply``, the result is why a record was unusable
        (logged and counted by the reader), or None.
        """

        def both(key: str, raw: bytes | None) -> str | None:
            if self.owns(key):
                self.apply(key, raw)
                return None
            return apply(key, raw)

        return both

    def apply(self, key: str, raw: bytes | None) -> None:
        self._applied += 1
        if self._applied % _SWEEP_EVERY == 0:
            self.sweep()
        if raw is None:
            return
        try:
            record = orjson.loads(raw)
            until = float(record["until"])
            nonce = str(record.get("nonce", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("console ledger: unreadable record %s skipped", key)
            return
        if until <= self._clock():
            return  # expired anyway
        if key.startswith(LINK_PREFIX):
            link_id = key[len(LINK_PREFIX) :]
            self._links.setdefault(link_id, (nonce, until))  # the first record wins
            waiter = self._waiters.get(link_id)
            if waiter is not None:
                waiter.set()
        elif key.startswith(SESSION_PREFIX):
            self._ended[key[len(SESSION_PREFIX) :]] = until

    def sweep(self) -> None:
        now = self._clock()
        self._links = {k: v for k, v in self._links.items() if v[1] > now}
        self._ended = {k: v for k, v in self._ended.items() if v > now}

    def used(self, link_id: str) -> bool:
        return link_id in self._links

    def ended(self, session_id: str) -> bool:
        return session_id in self._ended

    async def claim(self, link: Link, send: Send) -> bool:
        """Mark ``link`` opened; True only for the first opening anywhere in the cluster.

        Raises :class:`LinkRefused` when this
        worker's reader does not pass the record in time (try again).
        """
        if self.used(link.id):
            return False
        nonce = secrets.token_hex(8)
        waiter = self._waiters.setdefault(link.id, asyncio.Event())
        try:
            record = orjson.dumps({"nonce": nonce, "until": link.expires_at, "at": self._clock()})
            await send(LINK_PREFIX + link.id, record)
            try:
                await asyncio.wait_for(waiter.wait(), CLAIM_TIMEOUT_S)
            except TimeoutError:
                raise LinkRefused(
                    "The console could not record that this link was opened (Kafka is slow "
                    "or unavailable). Try the link again in a minute."
                ) from None
        finally:
            self._waiters.pop(link.id, None)
        return self._links.get(link.id, ("", 0.0))[0] == nonce

    async def end(self, session: Session, send: Send) -> None:
        """Record a logout, so no worker accepts the session's cookie again."""
        record = orjson.dumps({"until": session.expires_at, "at": self._clock()})
        await send(SESSION_PREFIX + session.id, record)
        self._ended[session.id] = session.expires_at  # here at once; elsewhere on read
