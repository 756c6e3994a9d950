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
from streams.api.http import json_response, make_middleware
from streams.api.openapi import openapi_document
from streams.api.stats import StatsRoutes
from streams.api.subscriptions import SubscriptionRoutes
from streams.api.tokens import TokenRoutes
from streams.log.attempts import AttemptLog
from streams.subscriptions.store import CompactedReader

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: How long the broker may hold a fetch of the attempts topic for the delivery log.
ATTEMPT_LOG_BATCH_WAIT_MS = 500


def register_api(pipeline: Pipeline) -> None:
    admin_token, generated = resolve_admin_token(pipeline.settings)
    pipeline.extras["admin_token_generated"] = generated
    tokens = TokenIndex()
    pipeline.readers.append(
        CompactedReader(pipeline.settings, pipeline.names.tokens, tokens.apply, name="tokens")
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
    attempt_log = AttemptLog(pipeline.settings.attempt_log_memory)
    pipeline.extras["attempt_log"] = attempt_log
    if attempt_log.enabled:  # every worker reads every attempt: delivery-only workers opt out
        pipeline.readers.append(
            CompactedReader(
                pipeline.settings,
                pipeline.names.attempts,
                attempt_log.apply,
                name="attempts",
                since_s=pipeline.settings.attempt_log_window_s,
                gates_readiness=False,
                # One fetch per record trickling in cost each worker ~0.1 ms of CPU per
                # attempt of the cluster; batched, the log lags by at most this much.
                batch_wait_ms=ATTEMPT_LOG_BATCH_WAIT_MS,
            )
        )
    SubscriptionRoutes(pipeline).register(router)
    DeliveryRoutes(pipeline, attempt_log).register(router)
    TokenRoutes(pipeline, tokens).register(router)
    StatsRoutes(pipeline, attempt_log).register(router)
