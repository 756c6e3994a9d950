"""Structured logs: one JSON object per line on stderr.

``streams worker`` logs through :class:`JsonFormatter`; Faust's and aiokafka's
own log lines go through the same handler (the worker hands
:func:`dict_config` to Faust as its ``logging_config``), so everything the
process says is one JSON object per line::

    {"time": "2026-04-29T19:12:33.120Z", "level": "WARNING", "logger": "streams.delivery.engine",
     "message": "delivery dead-lettered (exhausted) after 3 attempt(s)",
     "event_id": "evt_1", "delivery_id": "msg_...", "subscription_id": "sub_..."}

Ids reach a line through ``extra=`` (:func:`log_ids` builds it from a
delivery); only the fields in :data:`ID_FIELDS` are copied, never arbitrary
attributes. Secrets are never logged: messages and tracebacks pass through
:func:`redact`, which masks signing secrets and keys (``whsec_``, ``whsk_``),
API tokens (``stk_``, ``adm_``), bearer credentials, the credentials of chat
URLs (a Telegram bot token, also bare; a Slack incoming webhook's secret
segment; a Discord webhook token: masked ``***`` as the API shows those URLs,
``https://api.telegram.org/bot***/sendMessage``), and the exact values of
the secret settings of this process (registered with :func:`register_secret`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

#: Attributes copied from a record's ``extra=`` into the JSON object.
ID_FIELDS = ("event_id", "delivery_id", "subscription_id", "tenant_id", "replay_id")
MASK = "********"

_PATTERNS = re.compile(
    r"(?P<prefixed>\b(?:whsec|whsk|stk|adm)_[A-Za-z0-9+/=_.\-]{4,})"
    r"|(?P<bearer>(?i:bearer)\s+[^\s\"',]+)"
    # Chat URL credentials: the group is what gets masked.
    r"|/bot(?P<bot>\d+:[^/\s\"'?#]+)"
    r"|\bhooks\.slack\.com/services/[^/\s]+/[^/\s]+/(?P<slack>[^/\s\"'?#]+)"
    r"|\b(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api(?:/v\d+)?/webhooks/[^/\s]+/"
    r"(?P<discord>[^/\s\"'?#]+)"
    r"|(?P<token>\b\d{5,20}:[A-Za-z0-9_-]{30,}\b)"
)
#: What a chat URL's credential is replaced by (as in the API's masked URLs).
URL_MASK = "***"
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Mask this exact value wherever it would appear in a log line (ignores short ones)."""
    if len(value) >= 8:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every secret-looking token and every registered secret masked."""
    for value in _known_secrets:
        if value in text:
            text = text.replace(value, MASK)

    def mask(match: re.Match[str]) -> str:
        for group in ("bot", "slack", "discord", "token"):
            if match.group(group) is not None:
                start, end = match.span(group)
                whole = match.group(0)
                offset = match.start(0)
                return whole[: start - offset] + URL_MASK + whole[end - offset :]
        if match.group("bearer"):
            return match.group(0).split(None, 1)[0] + " " + MASK
        prefix = match.group(0).split("_", 1)[0]
        return f"{prefix}_{MASK}"

    return _PATTERNS.sub(mask, text)


def log_ids(delivery: Any) -> dict[str, Any]:
    """``extra=`` for a log line about one delivery."""
    return {
        "event_id": delivery.event_id,
        "delivery_id": delivery.delivery_id,
        "subscription_id": delivery.subscription_id,
        "tenant_id": delivery.tenant_id,
    }


def _iso(ts: float) -> str:
    whole = int(ts)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
        }
        for name in ID_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(out, default=str).decode()


class ClientFaultFilter(logging.Filter):
    """One WARNING line, no traceback, for a request aiohttp could not parse.

    aiohttp logs such a request (a ``Content-Encoding`` it has no decoder for, such as
    ``br`` without Brotli installed; a malformed header) as an ERROR with a traceback,
    after answering it 400 itself: any client could fill the worker's log with
    tracebacks at will, and none of them is a fault of ours.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1]
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {exc.message} (answered {exc.code})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


def dict_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: JSON lines on stderr at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"client_fault": {"()": ClientFaultFilter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "level": level,
                "filters": ["client_fault"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def setup(level: str, secrets: tuple[str, ...] = ()) -> None:
    """Configure this process's logging as JSON lines (for commands Faust does not run)."""
    import logging.config

    for value in secrets:
        register_secret(value)
    logging.config.dictConfig(dict_config(level))
