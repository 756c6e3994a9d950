"""Summary lines of events: one human sentence per event, from its type's template.

Chat destinations (Slack, Discord, Telegram: :mod:`streams.fanout.formats`)
show people a line such as ``SaaS founders: 5 new posts in r/SaaS``, not JSON.
Each event type's schema may declare the template as ``"x-summary"``::

    "x-summary": "{watcher_name}: {new_posts} new posts in r/{subreddit}"

Placeholders name fields of the event's ``data``; a dotted path reaches into
nested objects (``{post.title}``). ``{event.type}``, ``{event.id}``,
``{event.tenant_id}``, ``{event.tenant_name}`` and ``{event.occurred_at}``
name the envelope's fields (any other ``{event.x}`` is the data path
``event.x``). ``{{`` and ``}}`` are literal braces. A schema
without a template gets :data:`DEFAULT_SUMMARY`.

Rendering never fails, whatever the event holds: a missing field, a null, an
object or a list renders as ``?`` (a sentence with ``?`` in it is still worth
sending; an exception would lose the delivery), text is put on one line, and
every value and the whole line are cut to a bounded length. Anything in a
template that is not a well-formed placeholder is kept as written.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from streams.records import EventEnvelope

#: The template of an event type whose schema declares none.
DEFAULT_SUMMARY = "New {event.type} event"
#: What a missing, null or non-scalar field renders as.
MISSING = "?"
#: Longest rendered value, and longest summary line, in characters.
MAX_VALUE_CHARS = 200
MAX_SUMMARY_CHARS = 500

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_SPACE = re.compile(r"\s+")
_ENVELOPE = ("type", "id", "tenant_id", "tenant_name", "occurred_at")


def placeholders(template: str) -> list[str]:
    """The field paths a template names, in order, without duplicates."""
    out: list[str] = []
    for match in _TOKEN.finditer(template):
        path = match.group(1)
        if path is not None and path not in out:
            out.append(path)
    return out


def lookup(event: EventEnvelope, path: str) -> Any:
    """The value at ``path`` (see the module docstring), or None when there is none."""
    if path.startswith("event.") and path[6:] in _ENVELOPE:
        return getattr(event, path[6:])
    value: Any = event.data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def one_line(text: str, limit: int) -> str:
    """``text`` with runs of whitespace (line breaks included) as one space, and control
    characters dropped, cut to ``limit`` characters with an ellipsis."""
    flat = _SPACE.sub(" ", text).strip()
    flat = "".join(c for c in flat if not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F))
    if len(flat) > limit:
        return flat[: limit - 1].rstrip() + "\u2026"
    return flat


def show_value(value: Any) -> str:
    """A scalar as people read it: text as is, numbers in JSON form, ``true``/``false``;
    anything else (missing, null, objects, lists) is :data:`MISSING`."""
    if isinstance(value, str):
        return one_line(value, MAX_VALUE_CHARS) or MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # an int beyond 64 bits
            return one_line(str(value), MAX_VALUE_CHARS)
    return MISSING


def render_summary(template: str | None, event: EventEnvelope) -> str:
    """The summary line of ``event`` by ``template`` (:data:`DEFAULT_SUMMARY` when None)."""
    text = DEFAULT_SUMMARY if template is None else template

    def replace(match: re.Match[str]) -> str:
        path = match.group(1)
        if path is None:  # {{ or }}
            return match.group(0)[0]
        return show_value(lookup(event, path))

    rendered = one_line(_TOKEN.sub(replace, text), MAX_SUMMARY_CHARS)
    return rendered or one_line(event.type, MAX_SUMMARY_CHARS) or MISSING
