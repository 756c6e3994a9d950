"""The ``standard`` profile: Standard Webhooks 1.0.

Source: the specification, spec/standard-webhooks.md in
github.com/standard-webhooks/standard-webhooks, and its reference libraries.

* Signed content: ``{msg_id}.{timestamp}.{body}``.
* ``whsec_<base64>`` secrets sign with HMAC-SHA256 keyed by the base64-decoded
  bytes; the signature is written ``v1,<base64>``.
* ``whsk_<base64>`` keys sign with ed25519; the signature is written
  ``v1a,<base64>``. The base64 holds the 32-byte ed25519 seed, as the reference
  Go library reads it (``ed25519.NewKeyFromSeed``). The 64-byte form (seed then
  public key, as Go's and libsodium's private keys are laid out) is accepted too.
  The matching public key is ``whpk_<base64 of the raw 32-byte public key>``.
* ``webhook-signature`` is a space-separated list: one signature per secret, so
  a receiver holding either the new or the old secret verifies during rotation.
  Symmetric and asymmetric secrets may be mixed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets as _random
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streams.errors import SigningError
from streams.signing import (
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    _check_nbytes,
    _header_value,
    _timestamp,
)

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "standard"

SYMMETRIC_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"

_SEED_BYTES = 32
_PUBLIC_BYTES = 32

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


def _b64decode(text: str, prefix: str) -> bytes:
    try:
        # validate=True: no stray characters, correct padding, standard alphabet.
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(
            f"{NAME}: the part after {prefix!r} is not valid base64 (standard alphabet "
            "A-Z a-z 0-9 + /, padded with '='); copy the whole secret again"
        ) from None


@functools.lru_cache(maxsize=4096)  # per request otherwise (ed25519 keys are costly to load)
def _parse(secret: str) -> bytes | Ed25519PrivateKey:
    """The HMAC key of a ``whsec_`` secret, or the ed25519 key of a ``whsk_`` one."""
    if not secret:
        raise SigningError(f"{NAME}: the secret is empty; generate one")
    if secret.startswith(SYMMETRIC_PREFIX):
        key = _b64decode(secret[len(SYMMETRIC_PREFIX) :], SYMMETRIC_PREFIX)
        if len(key) < MIN_SECRET_BYTES:
            raise SigningError(
                f"{NAME}: the secret is too short; a {SYMMETRIC_PREFIX} secret must decode "
                f"to at least {MIN_SECRET_BYTES} bytes (generate a new one)"
            )
        if len(key) > MAX_SECRET_BYTES:
            raise SigningError(
                f"{NAME}: the secret is too long; a {SYMMETRIC_PREFIX} secret must decode "
                f"to at most {MAX_SECRET_BYTES} bytes"
            )
        return key
    if secret.startswith(PRIVATE_KEY_PREFIX):
        raw = _b64decode(secret[len(PRIVATE_KEY_PREFIX) :], PRIVATE_KEY_PREFIX)
        if len(raw) not in (_SEED_BYTES, _SEED_BYTES + _PUBLIC_BYTES):
            raise SigningError(
                f"{NAME}: a {PRIVATE_KEY_PREFIX} key must decode to a 32-byte ed25519 seed "
                "(or 64 bytes: the seed followed by its public key)"
            )
        private = Ed25519PrivateKey.from_private_bytes(raw[:_SEED_BYTES])
        if len(raw) > _SEED_BYTES and not hmac.compare_digest(
            raw[_SEED_BYTES:], _raw_public(private)
        ):
            raise SigningError(
                f"{NAME}: the last 32 bytes of the {PRIVATE_KEY_PREFIX} key are not the "
                "public key of its first 32; the key is corrupt"
            )
        return private
    if secret.startswith(PUBLIC_KEY_PREFIX):
        raise SigningError(
            f"{NAME}: this is a {PUBLIC_KEY_PREFIX} public key, which only verifies; "
            f"sign with its {PRIVATE_KEY_PREFIX} private key"
        )
    raise SigningError(
        f"{NAME}: the secret must start with {SYMMETRIC_PREFIX!r} (HMAC-SHA256) or "
        f"{PRIVATE_KEY_PREFIX!r} (ed25519)"
    )


def _raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _sign(key: bytes | Ed25519PrivateKey, content: bytes) -> str:
    if isinstance(key, bytes):
        digest = hmac.new(key, content, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")
    return "v1a," + base64.b64encode(key.sign(content)).decode("ascii")


class StandardProfile:
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""

    name = NAME
    reserved_headers = frozenset({HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE})
    multiple_signatures = True

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        msg_id = _header_value(inp.msg_id, "message id", NAME)
        if "." in msg_id:
            # The spec: ids must not contain '.', the separator of the signed content.
            raise SigningError(f"{NAME}: the message id must not contain '.'")
        timestamp = _timestamp(inp, NAME)
        if not inp.secrets:
            raise SigningError(f"{NAME}: no signing secret is set; this profile always signs")
        content = f"{msg_id}.{timestamp}.".encode() + inp.body
        # One signature per secret, current first; a secret listed twice signs once.
        signatures = dict.fromkeys(_sign(_parse(s), content) for s in inp.secrets)
        return {
            HEADER_ID: msg_id,
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: " ".join(signatures),
        }


PROFILE = StandardProfile()


def validate_secret(secret: str) -> None:
    """SigningError saying what to fix unless ``secret`` is a usable whsec_/whsk_ secret."""
    _parse(secret)


def generate_secret(nbytes: int = 32) -> str:
    """``whsec_`` + base64 of ``nbytes`` random bytes (24 to 64)."""
    _check_nbytes(nbytes)
    return SYMMETRIC_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def generate_asymmetric_secret() -> str:
    """A new ed25519 signing key: ``whsk_`` + base64 of a random 32-byte seed."""
    seed = _random.token_bytes(_SEED_BYTES)
    return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode("ascii")


def public_key(secret: str) -> str:
    """The ``whpk_`` public key receivers verify ``v1a`` signatures with."""
    key = _parse(secret)
    if isinstance(key, bytes):
        raise SigningError(
            f"{NAME}: a {SYMMETRIC_PREFIX} secret is symmetric and has no public key; "
            f"use a {PRIVATE_KEY_PREFIX} key"
        )
    return PUBLIC_KEY_PREFIX + base64.b64encode(_raw_public(key)).decode("ascii")
