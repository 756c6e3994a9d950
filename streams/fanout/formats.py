"""Bodies for chat services: Slack, Discord and Telegram messages, pure.

A Slack incoming webhook answers ``400 no_text`` to a body without ``text``
or ``blocks``, and a Discord webhook ``400`` (code 50006) to one without
``content`` or ``embeds``; Telegram's ``sendMessage`` wants ``chat_id`` and
``text``. So a subscription to one of them gets a message rendered from the
event instead of the event itself (``body_format`` ``slack``, ``discord``,
``telegram``), within each service's documented limits:

``slack``
    ``text`` (the notification and fallback line: the event's summary) and
    ``blocks``: a header with the event type, a section with the summary and
    up to 10 fields (the event's key fields and its time), and the event's
    JSON in a code block, cut to fit a section's 3,000 characters, with a
    note saying how much was shown. Limits: text 40,000 characters, a section
    3,000, a header 150, a field 2,000, at most 10 fields and 50 blocks.
``discord``
    ``content`` (the summary, at most 2,000 characters) and one embed: title
    (the event type, at most 256), description (the JSON in a code block, at
    most 4,096), fields (key fields, at most 25, names 256 and values 1,024),
    the event time as its timestamp, the event id in its footer, and at most
    6,000 characters in all.
``telegram``
    ``chat_id`` and ``text`` (plain text, no ``parse_mode``: summary, key
    fields, time and the JSON, at most 4,096 characters) with link previews
    off.

Lengths are counted in UTF-16 code units, which is never fewer than the
characters the services count, so a message that fits here fits there.

The summary line comes from the event type's template
(:mod:`streams.fanout.summary`). Key fields are the fields the template
names, then the other top-level scalar fields of ``data`` in their order, at
most 9 (the time is the 10th).

Hostile text (it comes from events, so from anyone upstream) can neither
notify people nor break out of the layout:

- mentions: an ``@`` before a letter, digit or ``_``, and a ``<`` before
  ``!``, ``@`` or ``#``, get a zero-width space after them everywhere
  (``@channel``, ``@here``, ``@everyone``, ``@username``, ``<!here>``,
  ``<@U1>`` stay readable and ping no one); Slack's mrkdwn texts also have
  ``&``, ``<`` and ``>`` escaped, and plain text objects are used for
  everything but the code block; Discord messages also carry
  ``allowed_mentions: {"parse": []}``, Discord's own switch for "ping no one";
- markup: Slack's human text is ``plain_text``; Discord's is escaped with
  backslashes (``\\*``, ``\\_``, ``\\```...); Telegram's is plain text;
- code blocks: a run of backticks in the JSON gets zero-width spaces between
  them, so no fence can close the block early.

Summaries and field values are one line each (:func:`streams.fanout.summary.one_line`),
so a line start in them is the start of the text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from streams.fanout.summary import (
    DEFAULT_SUMMARY,
    MISSING,
    lookup,
    one_line,
    placeholders,
    render_summary,
    show_value,
)
from streams.records import EventEnvelope

SLACK_TEXT_MAX = 40_000
SLACK_SECTION_MAX = 3_000
SLACK_HEADER_MAX = 150
SLACK_FIELD_MAX = 2_000
SLACK_FIELDS_MAX = 10
SLACK_BLOCKS_MAX = 50
DISCORD_CONTENT_MAX = 2_000
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4_096
DISCORD_FIELDS_MAX = 25
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1_024
DISCORD_FOOTER_MAX = 2_048
DISCORD_EMBED_TOTAL_MAX = 6_000
TELEGRAM_TEXT_MAX = 4_096

#: Key fields shown at most (the time makes Slack's 10th section field).
KEY_FIELDS = 9
#: Longest key field name shown, in characters.
MAX_NAME_CHARS = 60
#: The least room kept for the JSON in a Discord embed or a Telegram message.
MIN_JSON_ROOM = 200

CHAT_FORMATS = ("slack", "discord", "telegram")
ZWSP = "\u200b"
ELLIPSIS = "\u2026"

_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Discord markdown characters escaped with a backslash in human text, anywhere...
_DISCORD_MARKDOWN = frozenset("\\*_~`|<[]")
#: ... and these at the start of a line (headings, lists, quotes).
_DISCORD_LINE_START = frozenset("#->")


# --- lengths --------------------------------------------------------------------------------


def units(text: str) -> int:
    """Length in UTF-16 code units (a character beyond U+FFFF counts 2)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def fit(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` units long, else cut with an ellipsis to fit."""
    if len(text) * 2 <= limit or units(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > limit - 1:
            break
        out.append(char)
        used += width
    return "".join(out) + ELLIPSIS


# --- escaping -------------------------------------------------------------------------------


def _defuse(char: str, following: str) -> bool:
    """Whether ``char`` needs a zero-width space after it: it would start a mention,
    or continue a run of backticks (a code fence)."""
    if char == "@":
        return following.isalnum() or following == "_"
    if char == "`":
        return following == "`"
    return char == "<" and following in ("!", "@", "#")


def escape(text: str, service: str, budget: int | None = None) -> tuple[str, int]:
    """``text`` made safe for ``service``'s text, whole escapes kept within ``budget`` units.

    Returns the escaped text and how many characters of ``text`` it holds
    (``len(text)`` when all fit). ``service`` is ``slack`` (mrkdwn: ``&<>``
    escaped), ``discord`` (markdown characters backslash-escaped), ``code``
    (inside a code block: nothing but mentions and fences) or ``plain``.
    """
    out: list[str] = []
    used = 0
    length = len(text)
    for index, char in enumerate(text):
        following = text[index + 1] if index + 1 < length else ""
        if service == "slack" and char in _SLACK_ESCAPES:
            piece = _SLACK_ESCAPES[char]
        elif service == "discord" and (
            char in _DISCORD_MARKDOWN
            or (char in _DISCORD_LINE_START and (index == 0 or text[index - 1] == "\n"))
        ):
            piece = "\\" + char
        else:
            piece = char
        if _defuse(char, following):
            piece += ZWSP
        if budget is not None:
            width = len(piece) + (1 if ord(char) > 0xFFFF else 0)
            if used + width > budget:
                return "".join(out), index
            used += width
        out.append(piece)
    return "".join(out), length


def safe(text: str, service: str, limit: int) -> str:
    """``text`` escaped for ``service`` and cut to ``limit`` units (with an ellipsis)."""
    escaped, taken = escape(text, service, limit)
    if taken == len(text):
        return escaped
    shorter, _ = escape(text, service, limit - 1)
    return shorter + ELLIPSIS


def _cut_note(shown: int, total: int) -> str:
    return f"JSON cut: {shown:,} of {total:,} characters shown"


# --- what a message says --------------------------------------------------------------------


def key_fields(event: EventEnvelope, template: str | None) -> list[tuple[str, str]]:
    """(name, value) of the event's key fields: see the module docstring."""
    names = [p for p in placeholders(template or DEFAULT_SUMMARY) if not p.startswith("event.")]
    for name, value in event.data.items():
        if name not in names and isinstance(value, (str, int, float)):
            names.append(name)
    out: list[tuple[str, str]] = []
    for name in names:
        shown = show_value(lookup(event, name))
        if shown == MISSING:
            continue
        out.append((one_line(name, MAX_NAME_CHARS) or MISSING, shown))
        if len(out) == KEY_FIELDS:
            break
    return out


def event_json(event: EventEnvelope) -> str:
    """The event as the ``envelope`` body shows it, indented for people to read."""
    body = {
        "type": event.type,
        "created_at": event.occurred_at,
        "id": event.id,
        "data": event.data,
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode("utf-8")


def _timestamp(text: str) -> str | None:
    """``text`` as an ISO 8601 timestamp Discord accepts, or None when it is not one."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None


# --- the three messages ---------------------------------------------------------------------


def slack_message(event: EventEnvelope, template: str | None) -> dict[str, Any]:
    summary = render_summary(template, event)
    fields = [*key_fields(event, template), ("time", one_line(event.occurred_at, 100))]
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "plain_text", "text": safe(summary, "plain", SLACK_SECTION_MAX)},
        "fields": [
            {"type": "plain_text", "text": safe(f"{name}: {value}", "plain", SLACK_FIELD_MAX)}
            for name, value in fields[:SLACK_FIELDS_MAX]
        ],
    }
    text = event_json(event)
    opening, closing = "```\n", "\n```"
    room = SLACK_SECTION_MAX - len(opening) - len(closing)
    code, taken = escape(text, "slack", room)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": safe(event.type, "plain", SLACK_HEADER_MAX)},
        },
        section,
        {"type": "section", "text": {"type": "mrkdwn", "text": opening + code + closing}},
    ]
    if taken < len(text):
        note = {"type": "plain_text", "text": _cut_note(taken, len(text))}
        blocks.append({"type": "context", "elements": [note]})
    return {"text": safe(summary, "slack", SLACK_TEXT_MAX), "blocks": blocks}


def discord_message(event: EventEnvelope, template: str | None) -> dict[str, Any]:
    summary = render_summary(template, event)
    embed: dict[str, Any] = {"title": safe(event.type, "discord", DISCORD_TITLE_MAX)}
    fields: list[dict[str, Any]] = [
        {
            "name": safe(name, "discord", DISCORD_FIELD_NAME_MAX),
            "value": safe(value, "discord", DISCORD_FIELD_VALUE_MAX),
            "inline": True,
        }
        for name, value in key_fields(event, template)[:DISCORD_FIELDS_MAX]
    ]
    timestamp = _timestamp(event.occurred_at)
    if timestamp is None:
        time_text = safe(one_line(event.occurred_at, 100) or MISSING, "discord", 100)
        fields.append({"name": "time", "value": time_text, "inline": True})
    else:
        embed["timestamp"] = timestamp
    footer = safe(f"event {one_line(event.id, 200)}", "plain", DISCORD_FOOTER_MAX)

    def used() -> int:
        named = sum(units(str(f["name"])) + units(str(f["value"])) for f in fields)
        return units(embed["title"]) + named + units(footer)

    opening, closing = "```json\n", "\n```"
    text = event_json(event)
    note_room = len("\n" + _cut_note(len(text), len(text)))
    while fields and DISCORD_EMBED_TOTAL_MAX - used() < MIN_JSON_ROOM + note_room:
        fields.pop()  # never happens with the bounded key fields; kept for the 6,000 rule
    room = min(DISCORD_DESCRIPTION_MAX, DISCORD_EMBED_TOTAL_MAX - used())
    room -= len(opening) + len(closing) + note_room
    code, taken = escape(text, "code", room)
    description = opening + code + closing
    if taken < len(text):
        description += "\n" + _cut_note(taken, len(text))
    embed["description"] = description
    if fields:
        embed["fields"] = fields
    embed["footer"] = {"text": footer}
    return {
        "content": safe(summary, "discord", DISCORD_CONTENT_MAX),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


def telegram_chat_id(chat_id: str) -> int | str:
    """A numeric chat id as the integer Telegram documents; ``@channelusername`` as is."""
    digits = chat_id[1:] if chat_id.startswith("-") else chat_id
    return int(chat_id) if digits.isascii() and digits.isdigit() else chat_id


def telegram_message(
    event: EventEnvelope, template: str | None, chat_id: str | None
) -> dict[str, Any]:
    summary = render_summary(template, event)
    lines = [safe(summary, "plain", 1_000), ""]
    lines += [safe(f"{name}: {value}", "plain", 300) for name, value in key_fields(event, template)]
    lines.append(safe(f"time: {one_line(event.occurred_at, 100)}", "plain", 200))
    head = "\n".join(lines) + "\n\n"
    text = event_json(event)
    note_room = len("\n" + _cut_note(len(text), len(text)))
    room = TELEGRAM_TEXT_MAX - units(head) - note_room
    if room < MIN_JSON_ROOM:  # never with bounded summaries and fields; kept for the limit
        head = fit(head, TELEGRAM_TEXT_MAX - MIN_JSON_ROOM - note_room) + "\n\n"
        room = TELEGRAM_TEXT_MAX - units(head) - note_room
    code, taken = escape(text, "code", room)
    message = head + code
    if taken < len(text):
        message += "\n" + _cut_note(taken, len(text))
    return {
        "chat_id": telegram_chat_id(chat_id or ""),
        "text": message,
        "link_preview_options": {"is_disabled": True},
    }


def chat_body(
    event: EventEnvelope, body_format: str, template: str | None, chat_id: str | None = None
) -> dict[str, Any]:
    """The message for one of :data:`CHAT_FORMATS`."""
    if body_format == "slack":
        return slack_message(event, template)
    if body_format == "discord":
        return discord_message(event, template)
    if body_format == "telegram":
        return telegram_message(event, template, chat_id)
    raise ValueError(f"not a chat format: {body_format!r}")
