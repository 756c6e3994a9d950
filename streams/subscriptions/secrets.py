"""Signing secrets: encryption at rest, generation, rotation with a grace period.

The same box encrypts the values of secret custom headers
(:mod:`streams.subscriptions.headers`).

Secrets travel in the ``subscriptions`` topic only as Fernet ciphertexts
(AES-128-CBC + HMAC-SHA256, from ``cryptography``). The key is
``STREAMS_SECRETS_KEY``; several keys separated by commas rotate the key
itself (the first encrypts, every one decrypts). In development, when no key
is configured, one is generated under ``STREAMS_STATE_DIR`` with a warning; in
production a missing key is a configuration error, because workers on other
hosts could not decrypt what this one wrote.

Rotation keeps the previous secret valid for a grace period (default 24 h):
during it, profiles that can carry several signatures sign with both.

A URL that carries a credential (a Telegram bot token, see
:mod:`streams.subscriptions.services`) is kept the same way, in the
subscription's ``url_secret``; :func:`destination_url` gives the clear URL to
send to.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from streams.config import Settings
from streams.errors import ConfigError, StreamsError
from streams.records import EncryptedSecret

if TYPE_CHECKING:
    from streams.records import Subscription

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600.0
#: At most this many secrets are kept (the current one and previous ones still in grace).
MAX_SECRETS = 4


class SecretBox:
    """Encrypt and decrypt signing secrets with the configured key(s)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("STREAMS_SECRETS_KEY is empty")
        fernets = []
        for i, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, TypeError):
                raise ConfigError(
                    f"STREAMS_SECRETS_KEY: key #{i} is not a Fernet key (urlsafe base64 of 32 "
                    'bytes); make one with python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"'
                ) from None
        self._fernet = MultiFernet(fernets)
        self._keys = [base64.urlsafe_b64decode(key.strip().encode()) for key in keys]

    def derive(self, purpose: str) -> MultiFernet:
        """A Fernet of its own for ``purpose`` (HKDF of each configured key, same order).

        Other features (console sessions) encrypt with keys derived from the
        one setting every worker shares, but never with the signing-secret key
        itself: a token of one kind can then never be read as another kind.
        """
        derived = []
        for raw in self._keys:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
            derived.append(Fernet(base64.urlsafe_b64encode(hkdf.derive(raw))))
        return MultiFernet(derived)

    def encrypt(
        self, secret: str, *, now: float, expires_at: float | None = None
    ) -> dict[str, Any]:
        token = self._fernet.encrypt(secret.encode()).decode("ascii")
        return asdict(EncryptedSecret(ciphertext=token, created_at=now, expires_at=expires_at))

    def decrypt(self, stored: dict[str, Any]) -> str:
        try:
            return self._fernet.decrypt(str(stored["ciphertext"]).encode()).decode()
        except (InvalidToken, KeyError):
            raise StreamsError(
                "a stored signing secret cannot be decrypted: STREAMS_SECRETS_KEY does not "
                "hold the key it was encrypted with (keep old keys listed after the new one)"
            ) from None

    def encrypt_text(self, value: str) -> str:
        """A Fernet token of ``value`` (a secret custom header value, say)."""
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt_text(self, token: str, *, what: str) -> str:
        """The clear text of :meth:`encrypt_text`; ``what`` names it in the error, which
        never holds the value."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError, TypeError):
            raise StreamsError(
                f"{what} cannot be decrypted: STREAMS_SECRETS_KEY does not hold the key it "
                "was encrypted with (keep old keys listed after the new one)"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        configured = settings.secrets_key.reveal()
        if configured:
            return cls([k for k in configured.split(",") if k.strip()])
        if not settings.development:
            raise ConfigError(
                "STREAMS_SECRETS_KEY is not set: production needs a Fernet key shared by every "
                "worker (or set STREAMS_ENV=development to generate a local one)"
            )
        path = settings.state_dir / "dev-secrets.key"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        log.warning(
            "STREAMS_SECRETS_KEY is not set: using the development key in %s; "
            "set STREAMS_SECRETS_KEY in production",
            path,
        )
        return cls([path.read_text().strip()])


def active(stored: Sequence[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Stored secrets still valid at ``now``, current (the one without expiry) first."""
    valid = [s for s in stored if s.get("expires_at") is None or float(s["expires_at"]) > now]
    return sorted(valid, key=lambda s: (s.get("expires_at") is not None, -float(s["created_at"])))


def rotate(
    stored: Sequence[dict[str, Any]], new: dict[str, Any], *, now: float, grace_s: float
) -> list[dict[str, Any]]:
    """The secrets after a rotation: ``new`` current, the old current valid for ``grace_s``.

    Already expired secrets are dropped; at most :data:`MAX_SECRETS` are kept.
    A grace of 0 revokes the old secret at once (for a leaked secret).
    """
    kept: list[dict[str, Any]] = [new]
    for s in active(stored, now):
        if s.get("expires_at") is None:
            if grace_s > 0:
                kept.append({**s, "expires_at": now + grace_s})
        else:
            kept.append(s)
    return kept[:MAX_SECRETS]


def decrypt_active(
    box: SecretBox, stored: Sequence[dict[str, Any]], now: float | None = None
) -> tuple[str, ...]:
    """The clear secrets to sign with at ``now``: current first."""
    return tuple(box.decrypt(s) for s in active(stored, time.time() if now is None else now))


#: Clear URLs by ciphertext (a Fernet decryption costs ~20 us; a delivery asks per attempt).
_clear_urls: dict[str, str] = {}


def destination_url(box: SecretBox, sub: Subscription) -> str:
    """The URL to send ``sub``'s deliveries to: ``url``, or the decrypted ``url_secret``."""
    stored = sub.url_secret
    if stored is None:
        return sub.url
    ciphertext = str(stored.get("ciphertext", ""))
    clear = _clear_urls.get(ciphertext)
    if clear is None:
        clear = box.decrypt(stored)
        if len(_clear_urls) >= 10_000:
            _clear_urls.clear()
        _clear_urls[ciphertext] = clear
    return clear
