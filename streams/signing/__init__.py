"""Signing profiles: the headers that let a receiver trust a delivery.

Every function here is pure. The caller passes everything a signature
depends on, the attempt's timestamp included (it is stamped fresh at every
attempt, while ``msg_id`` stays the same across retries and replays), so the
same :class:`SignatureInput` always yields the same headers.

Profiles, by name (``standard`` is the default):

``standard``
    Standard Webhooks 1.0: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` carrying ``v1,<base64 HMAC-SHA256>`` for ``whsec_``
    secrets and ``v1a,<base64 ed25519>`` for ``whsk_`` keys, one signature per
    secret during a rotation.
``prowlo``
    What Prowlo's documentation tells its customers to verify.
``prospektr``
    What Prospektr's documentation tells its customers to verify.
``stripe``
    Stripe's ``Stripe-Signature: t=...,v1=...`` scheme.
``github``
    GitHub's ``X-Hub-Signature-256: sha256=...`` scheme.
``none``
    No signature and no secret: for Slack, Discord and Telegram, whose URLs
    carry their own credential and who verify no signature.

Errors are :class:`~streams.errors.SigningError` and never contain secret
material: they name the profile, the field and what to fix.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from streams.errors import SigningError

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "SignatureInput",
    "SigningProfile",
    "generate_secret",
    "get_profile",
    "validate_secret",
]

DEFAULT_PROFILE = "standard"

#: Bounds on the random bytes behind a generated secret (Standard Webhooks asks
#: for at least 24 bytes; 64 is as much as an HMAC-SHA256 key usefully holds).
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

#: Shortest secret accepted by the profiles keyed by the secret's UTF-8 text.
MIN_TEXT_SECRET_CHARS = 16


@dataclass(frozen=True, slots=True)
class SignatureInput:
    """Everything a signature depends on.

    ``secrets`` lists the current secret first, then the previous ones still in
    their rotation grace period; it may be empty. It is left out of ``repr`` so
    that logging an input never logs a secret.
    """

    msg_id: str
    timestamp: int
    body: bytes
    event_type: str
    secrets: tuple[str, ...] = field(repr=False)


class SigningProfile(Protocol):
    """One way of signing a request, named after who verifies it."""

    name: str
    #: Lower-case header names that custom headers may never override.
    reserved_headers: frozenset[str]
    #: Whether the header format can carry several signatures (secret rotation).
    multiple_signatures: bool

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        """The signing headers for one attempt; raises SigningError if it cannot sign."""
        ...


@dataclass(frozen=True, slots=True)
class _SecretRules:
    validate: Callable[[str], None]
    generate: Callable[[int], str]


# --------------------------------------------------------------------------
# Helpers shared by the profile modules (they import them from here).


def _header_value(value: str, what: str, profile: str) -> str:
    """``value`` if it can travel as an HTTP header value, else SigningError."""
    if not value:
        raise SigningError(f"{profile}: the {what} is empty; it is sent in a header")
    if not all(" " <= ch <= "~" for ch in value):
        raise SigningError(
            f"{profile}: the {what} must be printable ASCII to be sent in a header "
            "(no control characters, line breaks or non-ASCII letters)"
        )
    return value


def _timestamp(inp: SignatureInput, profile: str) -> str:
    ts = inp.timestamp
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise SigningError(f"{profile}: the timestamp must be a non-negative int of unix seconds")
    return str(ts)


def _hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _validate_text_secret(secret: str, profile: str) -> None:
    """Rules for the profiles whose HMAC key is the secret's UTF-8 text."""
    if not secret:
        raise SigningError(f"{profile}: the secret is empty; set a secret (generate one)")
    if secret != secret.strip():
        raise SigningError(
            f"{profile}: the secret starts or ends with whitespace; remove it "
            "(receivers that read it from an environment variable would not match)"
        )
    if any(ch < " " or ch == "\x7f" for ch in secret):
        raise SigningError(f"{profile}: the secret contains control characters; remove them")
    if len(secret) < MIN_TEXT_SECRET_CHARS:
        raise SigningError(
            f"{profile}: the secret is too short; use at least {MIN_TEXT_SECRET_CHARS} "
            "characters (generate one)"
        )


def _current_text_key(inp: SignatureInput, profile: str) -> bytes:
    """The UTF-8 bytes of the current secret, for single-signature profiles."""
    if not inp.secrets:
        raise SigningError(f"{profile}: no signing secret is set; this profile always signs")
    secret = inp.secrets[0]
    _validate_text_secret(secret, profile)
    return secret.encode("utf-8")


def _check_nbytes(nbytes: int) -> None:
    if isinstance(nbytes, bool) or not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise SigningError(
            f"a generated secret needs between {MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} "
            "random bytes"
        )


def _generate_text_secret(nbytes: int) -> str:
    """A random URL-safe string: customers paste it as a string into their HMAC."""
    _check_nbytes(nbytes)
    return _random.token_urlsafe(nbytes)


# --------------------------------------------------------------------------
# The registry.


def _load() -> tuple[Mapping[str, SigningProfile], Mapping[str, _SecretRules]]:
    # Imported here, after the helpers above exist, because the profile
    # modules import those helpers from this package.
    from streams.signing import github, none, prospektr, prowlo, standard, stripe

    # Spelled out (not looped over modules) so that mypy checks each profile
    # against the SigningProfile protocol and each pair of secret functions.
    entries: tuple[tuple[SigningProfile, _SecretRules], ...] = (
        (standard.PROFILE, _SecretRules(standard.validate_secret, standard.generate_secret)),
        (prowlo.PROFILE, _SecretRules(prowlo.validate_secret, prowlo.generate_secret)),
        (prospektr.PROFILE, _SecretRules(prospektr.validate_secret, prospektr.generate_secret)),
        (stripe.PROFILE, _SecretRules(stripe.validate_secret, stripe.generate_secret)),
        (github.PROFILE, _SecretRules(github.validate_secret, github.generate_secret)),
        (none.PROFILE, _SecretRules(none.validate_secret, none.generate_secret)),
    )
    profiles = {profile.name: profile for profile, _ in entries}
    rules = {profile.name: rule for profile, rule in entries}
    return MappingProxyType(profiles), MappingProxyType(rules)


PROFILES: Mapping[str, SigningProfile]
_RULES: Mapping[str, _SecretRules]
PROFILES, _RULES = _load()


def _unknown(name: str) -> SigningError:
    shown = name if len(name) <= 40 else name[:40] + "..."
    return SigningError(f"unknown signing profile {shown!r}; valid profiles: {', '.join(PROFILES)}")


def get_profile(name: str) -> SigningProfile:
    """The profile called ``name``; SigningError naming the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise _unknown(name) from None


def generate_secret(profile: str, nbytes: int = 32) -> str:
    """A new random secret in the format ``profile`` expects.

    ``standard``: ``whsec_`` + base64 of ``nbytes`` random bytes. Other
    profiles: a URL-safe random string of ``nbytes`` random bytes, because their
    receivers use the secret's text as the HMAC key.
    """
    if profile not in _RULES:
        raise _unknown(profile)
    return _RULES[profile].generate(nbytes)


def validate_secret(profile: str, secret: str) -> None:
    """Raise SigningError saying what to fix if ``profile`` cannot sign with ``secret``.

    The message never contains the secret.
    """
    if profile not in _RULES:
        raise _unknown(profile)
    _RULES[profile].validate(secret)
