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
API tokens (``stk_``, ``adm_``), bearer credentials, and the exact values of
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
)
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


def dict_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: JSON lines on stderr at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "level": level,
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
