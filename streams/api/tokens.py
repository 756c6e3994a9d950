"""Routes of ``/v1/tokens``: the admin creates, lists and revokes tenant tokens."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from streams.api.auth import TokenIndex, new_tenant_token
from streams.api.http import json_body, json_response, principal
from streams.api.writes import write
from streams.errors import AuthError, InvalidRequestError, NotFoundError
from streams.subscriptions.model import check_tenant

if TYPE_CHECKING:
    from streams.pipeline import Pipeline


class TokenRoutes:
    def __init__(self, pipeline: Pipeline, tokens: TokenIndex) -> None:
        self.p = pipeline
        self.tokens = tokens

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/tokens", self.create)
        router.add_get("/v1/tokens", self.list)
        router.add_delete("/v1/tokens/{id}", self.revoke)

    @staticmethod
    def _admin_only(request: web.Request) -> None:
        if not principal(request).admin:
            raise AuthError("only the admin token manages tokens")

    async def create(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        body = await json_body(request)
        unknown = set(body) - {"tenant_id", "description"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(f"`{field}`: unknown field", field=field)
        tenant = check_tenant(body.get("tenant_id"))
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise InvalidRequestError("`description`: at most 500 characters", field="description")
        token, record = new_tenant_token(tenant, description, time.time())
        import orjson

        raw = orjson.dumps(record)
        # Checked and bounded: a token written after its request failed is never shown.
        await write(
            self.p,
            self.p.names.tokens,
            record["id"],
            raw,
            check_with="GET /v1/tokens shows whether it was (revoke it: its token is lost)",
        )
        self.tokens.apply(record["id"], raw)  # usable here at once; other workers on read
        view = {k: v for k, v in record.items() if k != "sha256"}
        view["token"] = token  # shown once
        return json_response(view, status=201)

    async def list(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        return json_response({"data": self.tokens.listing(request.query.get("tenant_id"))})

    async def revoke(self, request: web.Request) -> web.Response:
        self._admin_only(request)
        token_id = request.match_info["id"]
        if self.tokens.get(token_id) is None:
            raise NotFoundError(f"no token {token_id}")
        await write(self.p, self.p.names.tokens, token_id, None, check_with="GET /v1/tokens")
        self.tokens.apply(token_id, None)  # revoked here at once; other workers on read
        return web.Response(status=204)
