"""The console's aiohttp sub-application: sessions, CSRF, headers and error pages."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from streams.console import security
from streams.console.links import LinkRoutes
from streams.console.pages import ERRORS, ConsolePages, error_page
from streams.console.sessions import ConsoleLedger, SessionCodec

if TYPE_CHECKING:
    from streams.api.deliveries import DeliveryRoutes
    from streams.api.stats import StatsRoutes
    from streams.api.subscriptions import SubscriptionRoutes
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

HERE = Path(__file__).parent  # templates/ and static/ are package data
PREFIX = "/console"
#: Paths reachable without a session (relative to the console's root).
OPEN_PATHS = ("/login/", "/signin", "/static/")
#: The key derivation label of console tokens (see SecretBox.derive).
KEY_PURPOSE = "streams console sessions v1"


def make_middleware(codec: SessionCodec, ledger: ConsoleLedger, frame_ancestors: str) -> Any:
    headers = security.security_headers(frame_ancestors)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            resp = await _guarded(request, handler)
        except web.HTTPException as exc:  # redirects, 401/403: answered, with the headers
            resp = web.Response(status=exc.status, headers=exc.headers, body=exc.body)
        resp.headers.update(headers)
        # The server's own time for the response (browsers' developer tools show it;
        # `streams bench console-log` reads it): no client or network time in it.
        resp.headers["Server-Timing"] = security.server_timing(time.perf_counter() - started)
        if not request.path.startswith(PREFIX + "/static/"):
            resp.headers["Cache-Control"] = "no-store"  # pages may hold secrets
        return resp

    async def _guarded(request: web.Request, handler: Any) -> web.StreamResponse:
        local = request.path[len(PREFIX) :]
        raw = request.cookies.get(security.SESSION_COOKIE)
        session = codec.open_session(raw, time.time()) if raw else None
        if session is not None and ledger.ended(session.id):
            session = None
        request["session"] = session
        if not local.startswith(OPEN_PATHS) and session is None:
            if request.method == "GET" and not local.startswith("/api/"):
                return error_page(
                    request,
                    Exception(
                        "You are not signed in, or your session ended. Open a new sign-in "
                        "link (`streams console link`), or sign in as the operator."
                    ),
                    401,
                    "Signed out",
                )
            raise web.HTTPUnauthorized(text="no console session: sign in again")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if not security.same_origin(
                request.headers.get("Origin"), request.scheme, request.host
            ):
                raise web.HTTPForbidden(text="refused: the request came from another origin")
            if session is not None:
                sent = request.headers.get("X-CSRF-Token")
                if sent is None and request.content_type in (
                    "application/x-www-form-urlencoded",
                    "multipart/form-data",
                ):
                    sent = str((await request.post()).get("csrf_token", ""))
                if not security.csrf_ok(session.csrf, sent):
                    raise web.HTTPForbidden(
                        text="refused: the form's CSRF token is missing or wrong; reload the page"
                    )
        try:
            resp: web.StreamResponse = await handler(request)
            return resp
        except web.HTTPException:
            raise
        except tuple(kind for kind, _, _ in ERRORS) as exc:
            for kind, status, title in ERRORS:
                if isinstance(exc, kind):
                    if local.startswith("/api/"):
                        return web.json_response({"error": str(exc)}, status=status)
                    return error_page(request, exc, status, title)
            raise
        except Exception:
            log.exception("console %s %s failed", request.method, request.path)
            return error_page(
                request, Exception("Something failed; see the worker's log."), 500, "Error"
            )

    return middleware


def register_console(
    pipeline: Pipeline,
    *,
    router: web.UrlDispatcher,
    ledger: ConsoleLedger,
    admin_token: str,
    subscriptions: SubscriptionRoutes,
    deliveries: DeliveryRoutes,
    stats: StatsRoutes,
) -> ConsolePages:
    """Mount ``/console/`` on the worker's web app and add ``/v1/console/sessions``."""
    settings = pipeline.settings
    codec = SessionCodec(pipeline.box.derive(KEY_PURPOSE), settings.console_session_s)
    console = web.Application(
        middlewares=[make_middleware(codec, ledger, settings.console_frame_ancestors)]
    )
    aiohttp_jinja2.setup(
        console,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
    )
    pages = ConsolePages(
        pipeline,
        codec=codec,
        ledger=ledger,
        admin_token=admin_token,
        subscriptions=subscriptions,
        deliveries=deliveries,
        stats=stats,
    )
    pages.register(console.router)
    console.router.add_static("/static/", HERE / "static", follow_symlinks=False)
    web_app: web.Application = pipeline.app.web.web_app  # type: ignore[attr-defined]
    web_app.add_subapp(PREFIX, console)
    LinkRoutes(codec).register(router)
    return pages
