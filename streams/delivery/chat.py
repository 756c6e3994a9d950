"""What Slack, Discord and Telegram mean by their answers, pure.

A chat service answers in its own terms, which the generic outcome table
(:mod:`streams.delivery.outcome`) cannot read from a status alone. For a
subscription whose ``body_format`` names the service, :func:`interpret`
reads the answer's body and adds what it says to the attempt's result:

- **rate limits.** A 429 is retried after the delay the service asks for:
  the ``Retry-After`` header when present (Slack sends one, and so does
  Discord, in whole seconds), else Discord's JSON ``retry_after`` (seconds,
  fractional) or Telegram's ``parameters.retry_after``, rounded up.
- **deleted hooks.** Slack's ``404 no_service`` (the incoming webhook was
  removed or its app uninstalled) and Discord's ``404`` with code ``10015``
  (``Unknown Webhook``) mean the hook no longer exists and never will again:
  the delivery gives up and the subscription is disabled with that reason,
  like a ``410 Gone``.

Anything else keeps the generic rules (every other 4xx is retried: a
channel that was archived can be restored, a bot that was removed can be
added back).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from streams.delivery.engine import SendResult

SLACK_GONE = (
    "Slack answered 404 no_service: the incoming webhook was removed or its app "
    "uninstalled; create a new webhook and update the subscription's URL"
)
DISCORD_GONE = (
    "Discord answered 404 Unknown Webhook (code 10015): the webhook was deleted; "
    "create a new one and update the subscription's URL"
)
#: Discord's JSON error code for a webhook that does not exist.
DISCORD_UNKNOWN_WEBHOOK = 10015


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _seconds(value: Any) -> str | None:
    """A JSON number of seconds as ``Retry-After`` delay-seconds (rounded up), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return str(math.ceil(value)) if value < 1e15 else "999999999999999"


def gone_reason(service: str, status: int | None, body: bytes) -> str | None:
    """The reason to disable when the answer says the hook was deleted, else None."""
    if status != 404:
        return None
    if service == "slack" and body.strip() == b"no_service":
        return SLACK_GONE
    if service == "discord":
        answer = _json(body)
        if isinstance(answer, dict) and answer.get("code") == DISCORD_UNKNOWN_WEBHOOK:
            return DISCORD_GONE
    return None


def body_retry_after(service: str, status: int | None, body: bytes) -> str | None:
    """The delay a 429's JSON body asks for (Discord, Telegram), as delay-seconds."""
    if status != 429 or service not in ("discord", "telegram"):
        return None
    answer = _json(body)
    if not isinstance(answer, dict):
        return None
    if service == "discord":
        return _seconds(answer.get("retry_after"))
    parameters = answer.get("parameters")
    return _seconds(parameters.get("retry_after")) if isinstance(parameters, dict) else None


def interpret(service: str, result: SendResult) -> SendResult:
    """``result`` with what ``service``'s answer says: a ``Retry-After`` and/or ``gone``."""
    if service not in ("slack", "discord", "telegram") or result.status not in (404, 429):
        return result  # the hot path: nothing to read
    gone = gone_reason(service, result.status, result.body)
    retry_after = result.retry_after
    if retry_after is None or not retry_after.strip():
        retry_after = body_retry_after(service, result.status, result.body) or retry_after
    if gone is None and retry_after == result.retry_after:
        return result
    return dataclasses.replace(result, retry_after=retry_after, gone=gone)
