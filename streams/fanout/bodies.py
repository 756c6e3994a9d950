"""Request bodies: the exact bytes a subscription receives for an event.

Rendered once by the fan-out and carried in the delivery, so every attempt,
retry and replay signs and sends the same bytes. Two shapes:

``envelope`` (default; the shape of Prowlo's document)::

    {"type": "crawl.run.completed", "created_at": "...", "id": "<event id>",
     "event_id": "<event id>", "data": {...}}

  ``id`` is the event id, stable across retries and replays. ``event_id``
  repeats it because Prowlo's document tells receivers to use "the event_id
  field" as their idempotency key, while its payload example names it ``id``:
  both readings work.

``keyed`` (the shape of Prospektr's document)::

    {"type": "prospect.added", "tenant": {"id": "...", "name": "..."},
     "prospect": {...}}

  The data's key is declared by the event type's schema (``x-body-key``).

``slack``, ``discord``, ``telegram``: a chat message rendered from the event
  and its type's summary template (``x-summary``), see
  :mod:`streams.fanout.formats`. A Telegram body also carries the
  subscription's ``chat_id``, so the fan-out renders one per chat id.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.fanout.formats import CHAT_FORMATS, chat_body
from streams.records import EventEnvelope


def render_body(
    event: EventEnvelope,
    body_format: str,
    body_key: str,
    *,
    summary: str | None = None,
    chat_id: str | None = None,
) -> bytes:
    """The request body for one subscription's body format.

    ``summary`` is the event type's summary template (None: the default one),
    ``chat_id`` the subscription's Telegram chat; both matter to chat formats only.
    """
    body: dict[str, Any]
    if body_format in CHAT_FORMATS:
        body = chat_body(event, body_format, summary, chat_id)
    elif body_format == "keyed":
        body = {
            "type": event.type,
            "tenant": {"id": event.tenant_id, "name": event.tenant_name},
            body_key: event.data,
        }
    else:
        body = {
            "type": event.type,
            "created_at": event.occurred_at,
            "id": event.id,
            "event_id": event.id,
            "data": event.data,
        }
    return orjson.dumps(body)
