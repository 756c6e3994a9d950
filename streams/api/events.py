"""``GET /v1/event-types``: the event catalog (built-in schemas plus ``STREAMS_EVENT_SCHEMAS``).

Each entry has the type's name, its description, its JSON Schema and an
example payload (the schema's first ``examples`` entry, the one test
deliveries send). Operational types (``x-operational``, emitted by the
platform itself) are listed with ``"operational": true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from streams.api.http import json_response

if TYPE_CHECKING:
    from streams.schemas import SchemaRegistry


def catalog(registry: SchemaRegistry) -> list[dict[str, Any]]:
    """Every event type, domain types first, each group by name."""
    out = []
    for operational, names in ((False, registry.event_types), (True, registry.operational_types)):
        for name in names:
            schema = registry.schemas[name]
            out.append(
                {
                    "type": name,
                    "description": schema.get("description") or schema.get("title") or "",
                    "operational": operational,
                    "schema": schema,
                    "example": registry.sample(name),
                }
            )
    return out


class EventTypeRoutes:
    def __init__(self, registry: SchemaRegistry) -> None:
        self.document = {"data": catalog(registry)}

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/event-types", self.list)

    async def list(self, request: web.Request) -> web.Response:
        return json_response(self.document)
