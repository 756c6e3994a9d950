"""The ``prowlo`` profile: requests Prowlo's customers verify with Prowlo's docs.

What the Prowlo webhook reference tells its customers (Node.js, Python and
curl/openssl recipes):

* ``Prowlo-Timestamp``: unix seconds.
* ``Prowlo-Signature``: ``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``, keyed
  by the secret's UTF-8 text (``createHmac('sha256', SECRET)``,
  ``os.environ[...].encode('utf-8')``, ``openssl dgst -hmac "$SECRET"``).
* ``Prowlo-Event``: the event type.

The verifiers strip ``v1=`` and compare everything that is left with one
digest, so the header carries one signature: the current secret's. Previous
secrets are not used (``multiple_signatures`` is False).

The Node verifier decodes the body as UTF-8 before hashing it; JSON bodies
are UTF-8, so that gives back the bytes we signed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.signing import (
    _current_text_key,
    _generate_text_secret,
    _header_value,
    _hmac_sha256_hex,
    _timestamp,
    _validate_text_secret,
)

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "prowlo"

HEADER_TIMESTAMP = "Prowlo-Timestamp"
HEADER_SIGNATURE = "Prowlo-Signature"
HEADER_SIGNATURE_ALIAS = "X-Prowlo-Signature"
HEADER_EVENT = "Prowlo-Event"


class ProwloProfile:
    """``Prowlo-Timestamp``, ``Prowlo-Signature: v1=<hex>`` and ``Prowlo-Event``."""

    name = NAME
    reserved_headers = frozenset(
        h.lower()
        for h in (HEADER_TIMESTAMP, HEADER_SIGNATURE, HEADER_SIGNATURE_ALIAS, HEADER_EVENT)
    )
    multiple_signatures = False

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        event = _header_value(inp.event_type, "event type", NAME)
        timestamp = _timestamp(inp, NAME)
        key = _current_text_key(inp, NAME)
        signature = "v1=" + _hmac_sha256_hex(key, f"{timestamp}.".encode() + inp.body)
        return {
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: signature,
            # Prowlo's docs name the header two ways: the introduction says
            # X-Prowlo-Signature, every verification recipe reads Prowlo-Signature.
            # Both are sent, with the same value, so a receiver written from
            # either part of the docs finds it.
            HEADER_SIGNATURE_ALIAS: signature,
            HEADER_EVENT: event,
        }


PROFILE = ProwloProfile()


def validate_secret(secret: str) -> None:
    """SigningError saying what to fix unless ``secret`` can key Prowlo's HMAC."""
    _validate_text_secret(secret, NAME)


def generate_secret(nbytes: int = 32) -> str:
    """A random URL-safe string (customers use its text as the HMAC key)."""
    return _generate_text_secret(nbytes)
