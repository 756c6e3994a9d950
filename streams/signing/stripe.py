"""The ``stripe`` profile: Stripe's webhook signature scheme.

Stripe documents the header as ``Stripe-Signature: t=<unix seconds>,v1=<hex>``
where the hex is the HMAC-SHA256 of ``"{t}.{body}"`` keyed by the endpoint
secret's text (the whole string, ``whsec_`` included: Stripe's libraries do not
decode it). While a secret is being rolled the header holds one ``v1=`` entry
per active secret, and verifiers accept a match on any of them; so do we.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.errors import SigningError
from streams.signing import (
    _generate_text_secret,
    _hmac_sha256_hex,
    _timestamp,
    _validate_text_secret,
)

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "stripe"

HEADER_SIGNATURE = "Stripe-Signature"


class StripeProfile:
    """``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]``, one ``v1`` per secret."""

    name = NAME
    reserved_headers = frozenset({HEADER_SIGNATURE.lower()})
    multiple_signatures = True

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        timestamp = _timestamp(inp, NAME)
        if not inp.secrets:
            raise SigningError(f"{NAME}: no signing secret is set; this profile always signs")
        content = f"{timestamp}.".encode() + inp.body
        parts = [f"t={timestamp}"]
        for secret in dict.fromkeys(inp.secrets):
            _validate_text_secret(secret, NAME)
            parts.append("v1=" + _hmac_sha256_hex(secret.encode("utf-8"), content))
        return {HEADER_SIGNATURE: ",".join(parts)}


PROFILE = StripeProfile()


def validate_secret(secret: str) -> None:
    """SigningError saying what to fix unless ``secret`` can key the HMAC."""
    _validate_text_secret(secret, NAME)


def generate_secret(nbytes: int = 32) -> str:
    """A random URL-safe string (receivers use its text as the HMAC key)."""
    return _generate_text_secret(nbytes)
