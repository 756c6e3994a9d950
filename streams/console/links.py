"""``POST /v1/console/sessions``: a single-use sign-in link to the console.

An admin token asks for any tenant's link (``tenant_id``), or for the
operator's (no ``tenant_id``); a tenant token for its own tenant only, through
the API's :func:`~streams.api.auth.scope`. ``"embed": true`` asks for a link
that opens inside another site's frame (a partitioned cookie, see
:mod:`streams.console.security`).

The answer's ``url`` is built on the address the request came to; ``path``
alone is given too, for callers that know the console's public address.
"""

from __future__ import annotations

import time

from aiohttp import web

from streams.api.auth import scope
from streams.api.http import json_body, json_response, parse_flag, principal
from streams.console.sessions import LINK_TTL_S, Grant, SessionCodec
from streams.errors import InvalidRequestError
from streams.subscriptions.model import check_tenant


class LinkRoutes:
    def __init__(self, codec: SessionCodec) -> None:
        self.codec = codec

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/console/sessions", self.create)

    async def create(self, request: web.Request) -> web.Response:
        body = await json_body(request, required=False)
        unknown = set(body) - {"tenant_id", "embed"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(
                f"`{field}`: unknown field; allowed: embed, tenant_id", field=field
            )
        requested = body.get("tenant_id")
        if requested is not None:
            requested = check_tenant(requested)
        who = principal(request)
        tenant = scope(who, requested)
        embed = parse_flag(body, "embed")
        operator = who.admin and tenant is None
        grant = Grant(tenant_id=tenant, admin=operator, embed=embed)
        token, link = self.codec.issue_link(grant, time.time())
        path = f"/console/login/{token}"
        return json_response(
            {
                "url": f"{request.scheme}://{request.host}{path}",
                "path": path,
                "tenant_id": tenant,
                "operator": operator,
                "embed": embed,
                "expires_at": link.expires_at,
                "valid_for_s": LINK_TTL_S,
            },
            status=201,
        )
