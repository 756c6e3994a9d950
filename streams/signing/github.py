"""The ``github`` profile: GitHub's webhook signature scheme.

GitHub documents ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the
raw body keyed by the secret's text. The header holds one signature, so only
the current secret signs (``multiple_signatures`` False). Like GitHub, the
delivery id and the event name travel as ``X-GitHub-Delivery`` and
``X-GitHub-Event``, which receivers built on GitHub's tooling read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.signing import (
    _current_text_key,
    _generate_text_secret,
    _header_value,
    _hmac_sha256_hex,
    _validate_text_secret,
)

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "github"

HEADER_SIGNATURE = "X-Hub-Signature-256"
HEADER_DELIVERY = "X-GitHub-Delivery"
HEADER_EVENT = "X-GitHub-Event"
# GitHub's older SHA-1 header: never sent, but reserved so that no custom
# header can pose as a signature.
HEADER_LEGACY_SIGNATURE = "X-Hub-Signature"


class GitHubProfile:
    """``X-Hub-Signature-256: sha256=<hex of HMAC-SHA256(body)>``."""

    name = NAME
    reserved_headers = frozenset(
        h.lower()
        for h in (HEADER_SIGNATURE, HEADER_DELIVERY, HEADER_EVENT, HEADER_LEGACY_SIGNATURE)
    )
    multiple_signatures = False

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        delivery = _header_value(inp.msg_id, "message id", NAME)
        event = _header_value(inp.event_type, "event type", NAME)
        key = _current_text_key(inp, NAME)
        return {
            HEADER_SIGNATURE: "sha256=" + _hmac_sha256_hex(key, inp.body),
            HEADER_DELIVERY: delivery,
            HEADER_EVENT: event,
        }


PROFILE = GitHubProfile()


def validate_secret(secret: str) -> None:
    """SigningError saying what to fix unless ``secret`` can key the HMAC."""
    _validate_text_secret(secret, NAME)


def generate_secret(nbytes: int = 32) -> str:
    """A random URL-safe string (receivers use its text as the HMAC key)."""
    return _generate_text_secret(nbytes)
