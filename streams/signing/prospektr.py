"""The ``prospektr`` profile: requests Prospektr's customers verify with Prospektr's docs.

What the Prospektr API-webhook reference tells its customers: when a secret
is set, every request carries ``X-Prospektr-Signature: sha256=<hex>``, the
HMAC-SHA256 of the raw body keyed by the secret (``createHmac('sha256',
secret)``, so the secret's UTF-8 text). The secret is optional there: with no
secret, requests go unsigned, and so do ours (no header at all).

The verifier compares the whole header with one expected value, so it
carries one signature: the current secret's (``multiple_signatures`` False).
Nothing else is signed: no timestamp, no id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.signing import (
    _current_text_key,
    _generate_text_secret,
    _hmac_sha256_hex,
    _validate_text_secret,
)

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "prospektr"

HEADER_SIGNATURE = "X-Prospektr-Signature"


class ProspektrProfile:
    """``X-Prospektr-Signature: sha256=<hex of HMAC-SHA256(body)>``, when a secret is set."""

    name = NAME
    # Reserved even when unsigned: a custom header must never pose as a signature.
    reserved_headers = frozenset({HEADER_SIGNATURE.lower()})
    multiple_signatures = False

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        if not inp.secrets:
            return {}
        key = _current_text_key(inp, NAME)
        return {HEADER_SIGNATURE: "sha256=" + _hmac_sha256_hex(key, inp.body)}


PROFILE = ProspektrProfile()


def validate_secret(secret: str) -> None:
    """SigningError saying what to fix unless ``secret`` can key Prospektr's HMAC.

    An empty string is refused: to send unsigned requests, set no secret at all.
    """
    _validate_text_secret(secret, NAME)


def generate_secret(nbytes: int = 32) -> str:
    """A random URL-safe string (customers use its text as the HMAC key)."""
    return _generate_text_secret(nbytes)
