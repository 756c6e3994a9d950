"""The management API, served by every worker on Faust's web server (aiohttp).

Routes live one resource per module (``subscriptions.py``, ``tokens.py``);
``http.py`` holds JSON, errors and authentication; ``openapi.py`` describes it
all at ``/openapi.json``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from streams.api.auth import TokenIndex, resolve_admin_token
from streams.api.deliveries import DeliveryRoutes
from streams.api.events import EventTypeRoutes
from streams.api.http import json_response, make_middleware
from streams.api.openapi import openapi_document
from streams.api.stats import StatsRoutes
from streams.api.subscriptions import SubscriptionRoutes
from streams.api.tokens import TokenRoutes
from streams.console.sessions import ConsoleLedger
from streams.log.service import DeliveryLog
from streams.subscriptions.store import CompactedReader

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)


def register_api(pipeline: Pipeline) -> None:
    admin_token, generated = resolve_admin_token(pipeline.settings)
    pipeline.extras["admin_token_generated"] = generated
    tokens = TokenIndex()
    ledger = ConsoleLedger()  # the console's opened links and logouts share the topic
    pipeline.readers.append(
        CompactedReader(
            pipeline.settings, pipeline.names.tokens, ledger.wrap(tokens.apply), name="tokens"
        )
    )
    web_app: web.Application = pipeline.app.web.web_app  # type: ignore[attr-defined]
    web_app.middlewares.append(make_middleware(admin_token, tokens))
    router = web_app.router

    async def healthz(request: web.Request) -> web.Response:
        ready = pipeline.is_ready
        return json_response(
            {
                "status": "ok" if ready else "starting",
                "subscriptions": len(pipeline.subscriptions),
            },
            status=200 if ready else 503,
        )

    document = openapi_document()

    async def openapi(request: web.Request) -> web.Response:
        return json_response(document)

    router.add_get("/healthz", healthz)
    router.add_get("/openapi.json", openapi)
    # Built with the app (streams.app); a pipeline built without it keeps no log.
    delivery_log: DeliveryLog = pipeline.extras.get("delivery_log") or DeliveryLog(
        pipeline.settings, pipeline.names.attempts, enabled=False
    )
    subscriptions = SubscriptionRoutes(pipeline)
    subscriptions.register(router)
    deliveries = DeliveryRoutes(pipeline, delivery_log)
    deliveries.register(router)
    # Before the server waits for requests in progress: their Kafka reads end at once.
    web_app.on_shutdown.append(deliveries.on_shutdown)
    TokenRoutes(pipeline, tokens).register(router)
    stats = StatsRoutes(pipeline, delivery_log)
    stats.register(router)
    EventTypeRoutes(pipeline.registry).register(router)
    from streams.console.app import register_console  # the console builds on the routes above

    pipeline.extras["console"] = register_console(
        pipeline,
        router=router,
        ledger=ledger,
        admin_token=admin_token,
        subscriptions=subscriptions,
        deliveries=deliveries,
        stats=stats,
    )
