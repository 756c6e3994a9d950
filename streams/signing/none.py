"""The ``none`` profile: unsigned requests, for receivers that verify nothing.

Slack's and Discord's incoming webhooks and Telegram's Bot API authenticate
the sender by the secret in the URL itself and ignore any signature header,
so a signature would only cost CPU. A subscription with this profile has no
secret at all: none is generated, one given is refused, and rotating is
refused (there is nothing to rotate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.errors import SigningError

if TYPE_CHECKING:
    from streams.signing import SignatureInput

NAME = "none"


class UnsignedProfile:
    """No signing headers at all."""

    name = NAME
    reserved_headers: frozenset[str] = frozenset()
    multiple_signatures = False

    def headers(self, inp: SignatureInput) -> dict[str, str]:
        return {}


PROFILE = UnsignedProfile()


def validate_secret(secret: str) -> None:
    """Always refused: an unsigned subscription has no secret."""
    raise SigningError(
        "none: this profile sends unsigned requests and takes no secret; leave `secret` out, "
        "or choose a signing profile"
    )


def generate_secret(nbytes: int = 32) -> str:
    """Always refused: an unsigned subscription has no secret to generate."""
    raise SigningError("none: this profile sends unsigned requests and has no secret")
