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
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.records import EventEnvelope


def render_body(event: EventEnvelope, body_format: str, body_key: str) -> bytes:
    """The request body for one subscription's body format."""
    body: dict[str, Any]
    if body_format == "keyed":
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
