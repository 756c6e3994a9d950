"""The console's pages: thin handlers over the API's own principal-taking methods.

Every handler turns the session into a :class:`~streams.api.auth.Principal`
and calls the same code the ``/v1`` handlers call
(:class:`~streams.api.subscriptions.SubscriptionRoutes`,
:class:`~streams.api.deliveries.DeliveryRoutes`, :func:`~streams.api.auth.scope`):
a tenant's session reaches exactly what that tenant's API token reaches, and
an operator's what the admin token reaches. Nothing here decides who may see
what.

Forms post back to the page they belong to and redirect (303) after success,
so a reload never sends a form twice. A failed form is shown again with the
error beside the field it names.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import shlex
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp_jinja2
import orjson
from aiohttp import web
from markupsafe import Markup

from streams.api.auth import ADMIN, Principal, scope
from streams.api.deliveries import attempt_view, parse_limit
from streams.console import charts, listing, security
from streams.console.live import LiveView
from streams.console.sessions import (
    ConsoleLedger,
    Grant,
    LinkRefused,
    Session,
    SessionCodec,
)
from streams.console.verify import RECIPES
from streams.deadletter.replay import REASONS, RESUMABLE
from streams.deadletter.scan import read_at
from streams.delivery.request import build_request
from streams.errors import (
    ConfigError,
    ConflictError,
    DecodeError,
    DestinationRefusedError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
    StreamsError,
    UnavailableError,
)
from streams.log.store import Cursor, StoreFault, delivery_key
from streams.records import Attempt, Delivery, delivery_id_for
from streams.retry.schedule import parse_duration
from streams.signing import PROFILES
from streams.subscriptions import headers as header_rules
from streams.subscriptions import secrets as secret_store
from streams.subscriptions.model import BODY_FORMATS, reserved_headers

if TYPE_CHECKING:
    from streams.api.deliveries import DeliveryRoutes
    from streams.api.stats import StatsRoutes
    from streams.api.subscriptions import SubscriptionRoutes
    from streams.pipeline import Pipeline
    from streams.records import Subscription

log = logging.getLogger(__name__)

#: How long the one-time cookie with a new secret waits for the page that shows it.
ONCE_TTL_S = 300
#: Rows on one page of the delivery log and of the dead letters.
PAGE_ROWS = 50
#: The most endpoints an event id is looked up under (one delivery id each).
FIND_ENDPOINTS = 2000
#: The endpoint list's chart: the last 24 h in hourly bars (the store's hour buckets).
CHART_HOURS = 24
#: The windows of the endpoint page's statistics (keys of the stats' ``windows``).
STATS_WINDOWS = (("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"))
#: The endpoint page's delivery chart: ``?chart=`` -> (title, period, hourly bars or days).
CHART_TABS = {"24h": ("24 hours", "24 hours", None), "7d": ("7 days", "7 days", 7)}
#: Hours between the 24-hour chart's x-axis labels.
CHART_LABEL_HOURS = 6
#: Rows of the endpoint page's recent deliveries.
RECENT_ROWS = 10
#: The most characters of an endpoint's URL shown in a column (the whole one in its title).
URL_SHOWN = 48
#: The console's status word for "not delivered": retrying or given up. The store has
#: a word for each (``retrying``, ``failed``); a page of both is the two pages merged.
UNDELIVERED = "undelivered"
NOT_DELIVERED_WORDS = ("retrying", "failed")
#: The endpoint page's "Recover failed deliveries" windows: (form value, label).
RECOVER_WINDOWS = (
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
)
RECOVER_DEFAULT = "24h"
#: The longest window recovered from the endpoint page (its longest choice); the
#: dead-letters page replays any range.
RECOVER_MAX_S = 7 * 86_400
#: How the refusal of a bad window says what to send.
_WINDOW_FORMS = "how far back to recover: 1h, 6h, 24h or 7d (or another duration up to 7d)"
#: How the edit form's notice names each field of the PATCH body it sent.
FIELD_NAMES = {
    "url": "URL",
    "description": "description",
    "event_types": "event types",
    "body_format": "body format",
    "chat_id": "Telegram chat id",
    "retry_schedule": "retries",
    "headers": "custom headers",
}
#: What each body format sends, as the add-endpoint form names it.
BODY_FORMAT_LABELS = {
    "envelope": "envelope (the whole event)",
    "keyed": "keyed (the data under its key)",
    "slack": "slack (a Slack message)",
    "discord": "discord (a Discord message)",
    "telegram": "telegram (a Telegram message; needs the chat id)",
}


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: A JSON body's tokens: a string (escapes included), a bracket, comma or colon, a
#: literal (number, true, false, null), or whitespace between them.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+|\s+')


#: The largest body the delivery page indents (characters): a bigger one is shown as
#: sent, so one page view never spends more than ~0.1 s of the worker's loop on it
#: (1.7 MB took 0.85 s).
PRETTY_MAX_CHARS = 200_000


def pretty_json(text: str) -> str | None:
    """``text`` indented (two spaces) when it is JSON, else None (also when it is over
    :data:`PRETTY_MAX_CHARS`).

    Only whitespace outside strings is changed: keys keep their order, numbers and
    strings stay exactly as sent, and taking the added whitespace out gives the
    compact body back.
    """
    if len(text) > PRETTY_MAX_CHARS:
        return None
    try:
        json.loads(text)  # the standard library's: any size of integer is JSON
    except ValueError:
        return None
    parts = [t for t in _JSON_TOKEN.findall(text) if not t.isspace()]
    out: list[str] = []
    depth = 0
    for i, part in enumerate(parts):
        if part in ("{", "["):
            closing = i + 1 < len(parts) and parts[i + 1] in ("}", "]")
            depth += 1
            out.append(part if closing else part + "\n" + "  " * depth)
        elif part in ("}", "]"):
            depth -= 1
            empty = i > 0 and parts[i - 1] in ("{", "[")
            out.append(part if empty else "\n" + "  " * depth + part)
        elif part == ",":
            out.append(",\n" + "  " * depth)
        elif part == ":":
            out.append(": ")
        else:
            out.append(part)
    return "".join(out)


#: An outcome as the console shows it: the words of the delivery log's status filter
#: (the records and the API keep ``retry`` and ``give_up``).
OUTCOME_LABELS = {"delivered": "delivered", "retry": "retrying", "give_up": "failed"}


def outcome_label(outcome: str) -> str:
    """``give_up`` -> ``failed``, ``retry`` -> ``retrying``; anything else as it is."""
    return OUTCOME_LABELS.get(outcome, outcome)


def full_url(url: str) -> str:
    """An endpoint's URL as the console shows it: as stored (a chat service's token is
    stored masked, see :func:`~streams.subscriptions.services.masked_url`), without a
    ``user:password@``. Registration refuses those (:func:`~streams.destinations.check_url`);
    dropped here too, so no record from elsewhere prints one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2] if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def short_url(url: str, limit: int = URL_SHOWN) -> str:
    """:func:`full_url`, or when longer than ``limit`` its scheme and host, ``/…`` and
    the end of its path (from a ``/`` where one is near), e.g.
    ``https://hooks.example.com/…/orders/created``: the host and the last segments are
    what tells endpoints apart."""
    full = full_url(url)
    if len(full) <= limit:
        return full
    try:
        parts = urlsplit(full)
    except ValueError:
        parts = None
    if parts is None or not (parts.scheme and parts.netloc):  # not a URL: its start
        return full[: limit - 1] + "…"
    scheme = f"{parts.scheme}://"
    host = parts.netloc
    if len(scheme) + len(host) > limit - 12:  # a very long host: its end (the domain)
        host = "…" + host[len(scheme) + len(host) - (limit - 13) :]
    head = scheme + host
    tail = full[len(scheme) + len(parts.netloc) :]
    if len(head) + len(tail) <= limit:
        return head + tail
    room = limit - len(head) - 2
    end = tail[-room:]
    cut = end.find("/", 1)
    if not end.startswith("/") and 0 < cut < len(end) - 1:
        end = end[cut:]
    return head + "/…" + end


def outcome_note(outcome: str, status: int | None, last_at: float | None) -> str:
    """What a delivery's outcome means for its owner, in one sentence."""
    answer = f"answered {status}" if status is not None else "gave no HTTP answer"
    when = iso(last_at)
    if outcome == "delivered":
        return f"Delivered: the endpoint {answer} at {when}."
    if outcome == "retry":
        return (
            f"Not delivered yet: at the last attempt ({when}) the endpoint {answer}. "
            "It is tried again on the endpoint's retry schedule."
        )
    return (
        f"Given up: at the last attempt ({when}) the endpoint {answer}, and no more "
        "attempts will be made. Redeliver sends it again now."
    )


def recover_since(window: str, now: float) -> int:
    """The unix second a "Recover failed deliveries" window starts at: ``now`` less
    ``window``, a duration as :func:`parse_duration` reads it (``"24h"``, ``"7d"``,
    ``"90m"``), more than zero and at most :data:`RECOVER_MAX_S`.

    Whole seconds, rounded down (the window reaches up to a second further back), so
    the dry run's page carries the same start to the confirm: the confirm replays from
    where the dry run counted, not from a window moved on by the time between.
    Raises :class:`InvalidRequestError` (field ``window``) saying what to send.
    """
    shown = window if len(window) <= 20 else window[:20] + "..."
    try:
        seconds = parse_duration(window)
    except ConfigError:
        raise InvalidRequestError(
            f"`window`: {shown!r} is not a window; {_WINDOW_FORMS}", field="window"
        ) from None
    if not 0 < seconds <= RECOVER_MAX_S:
        raise InvalidRequestError(
            f"`window`: {shown!r} is {'empty' if seconds == 0 else 'over 7 days'}; "
            f"{_WINDOW_FORMS}. For an older range use the dead-letters page.",
            field="window",
        )
    return int(now - seconds)


def curl_command(url: str, headers: Mapping[str, str], body: str) -> str:
    """A shell command that sends this request again: every value shell-quoted."""
    lines = [f"curl -X POST {shlex.quote(url)}"]
    lines += [f"-H {shlex.quote(f'{k}: {v}')}" for k, v in headers.items()]
    lines.append(f"--data-raw {shlex.quote(body)}")
    return " \\\n  ".join(lines)


def _form_tenant(values: Mapping[str, str]) -> str | None:
    return values.get("tenant") or None


class ConsolePages:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        codec: SessionCodec,
        ledger: ConsoleLedger,
        admin_token: str,
        subscriptions: SubscriptionRoutes,
        deliveries: DeliveryRoutes,
        stats: StatsRoutes,
    ) -> None:
        self.p = pipeline
        self.codec = codec
        self.ledger = ledger
        self.admin_token = admin_token
        self.subs = subscriptions
        self.deliveries = deliveries
        self.stats = stats
        self.live = LiveView(pipeline, stats)
        self.secure = not pipeline.settings.development

    # -- routes -------------------------------------------------------------------

    def register(self, router: web.UrlDispatcher) -> None:
        get, post = router.add_get, router.add_post
        get("/", self.home)
        get("/login/{token}", self.login)
        get("/signin", self.signin_form)
        post("/signin", self.signin)
        post("/logout", self.logout)
        get("/endpoints", self.endpoints)
        get("/endpoints/new", self.endpoint_form)
        post("/endpoints", self.endpoint_create)
        get("/endpoints/{id}", self.endpoint)
        post("/endpoints/{id}/test", self.endpoint_test)
        post("/endpoints/{id}/disable", self.endpoint_disable)
        post("/endpoints/{id}/enable", self.endpoint_enable)
        post("/endpoints/{id}/rotate", self.endpoint_rotate)
        get("/endpoints/{id}/verify", self.endpoint_verify)
        get("/endpoints/{id}/edit", self.endpoint_edit_form)
        post("/endpoints/{id}/edit", self.endpoint_update)
        get("/endpoints/{id}/delete", self.endpoint_delete_form)
        post("/endpoints/{id}/delete", self.endpoint_delete)
        get("/deliveries", self.delivery_log)
        get("/deliveries/{id}", self.delivery)
        post("/deliveries/{id}/redeliver", self.redeliver)
        get("/events", self.events)
        get("/dlq", self.dlq)
        post("/dlq/replay", self.dlq_replay)
        post("/dlq/replays/{id}/cancel", self.replay_cancel)
        post("/dlq/replays/{id}/resume", self.replay_resume)
        get("/live", self.live_page)
        get("/tenants", self.tenants)
        get("/api/deliveries/{id}", self.api_delivery)
        get("/api/replays/{id}", self.api_replay)
        get("/api/live", self.api_live)

    # -- sessions -----------------------------------------------------------------

    @staticmethod
    def session(request: web.Request) -> Session:
        found: Session | None = request.get("session")
        if found is None:
            raise web.HTTPSeeOther("/console/signin")
        return found

    @classmethod
    def who(cls, request: web.Request) -> Principal:
        grant = cls.session(request).grant
        if grant.admin:
            return ADMIN
        return Principal(admin=False, tenant_id=grant.tenant_id)

    def _start(
        self, grant: Grant, location: str, *, via: web.Request | None = None
    ) -> web.StreamResponse:
        """Set the session cookie and go to ``location``.

        After a sign-in link (``via``) the answer is a page that moves on by
        itself (meta refresh) rather than a redirect: when the link was clicked
        on another site (a mail or chat page), a redirect continues that
        cross-site navigation, and the browser withholds the new SameSite=Strict
        cookie from it. The refresh is a navigation of our own page, so the
        cookie goes with it.
        """
        value, _ = self.codec.issue_session(grant, time.time())
        resp: web.StreamResponse
        if via is not None and not grant.embed:
            resp = self.render(via, "continue.html", {"location": location}, session=None)
        else:
            resp = web.HTTPSeeOther(location)
        resp.headers["Set-Cookie"] = security.cookie_header(
            security.SESSION_COOKIE,
            value,
            max_age=int(self.codec.session_s),
            embed=grant.embed,
            secure=self.secure,
        )
        return resp

    async def _send_token_record(self, key: str, value: bytes) -> None:
        await (await self.p.send(self.p.names.tokens, key, value))

    async def home(self, request: web.Request) -> web.StreamResponse:
        grant = self.session(request).grant
        raise web.HTTPSeeOther("/console/live" if grant.admin else "/console/endpoints")

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            link = self.codec.open_link(request.match_info["token"], time.time())
            if not await self.ledger.claim(link, self._send_token_record):
                raise LinkRefused(
                    "This sign-in link was already used: each link opens the console once. "
                    "Ask for a new link."
                )
        except LinkRefused as exc:
            return self.render(request, "refused.html", {"reason": str(exc)}, status=403)
        return self._start(link.grant, "/console/", via=request)

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        token = secrets.token_urlsafe(24)
        resp = self.render(request, "signin.html", {"signin_token": token, "error": None})
        resp.headers["Set-Cookie"] = security.cookie_header(
            security.SIGNIN_COOKIE, token, max_age=900, embed=False, secure=self.secure
        )
        return resp

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        # Double submit: the form's token must match the cookie set with the form.
        if not security.csrf_ok(
            request.cookies.get(security.SIGNIN_COOKIE, ""), str(form.get("signin_token", ""))
        ):
            raise web.HTTPForbidden(text="the sign-in form expired: reload it and try again")
        token = str(form.get("admin_token", "")).strip()
        if not token.isascii() or not hmac.compare_digest(
            token.encode(), self.admin_token.encode()
        ):
            fresh = secrets.token_urlsafe(24)
            resp = self.render(
                request,
                "signin.html",
                {"signin_token": fresh, "error": "That is not the admin token."},
                status=401,
            )
            resp.headers["Set-Cookie"] = security.cookie_header(
                security.SIGNIN_COOKIE, fresh, max_age=900, embed=False, secure=self.secure
            )
            return resp
        return self._start(Grant(tenant_id=None, admin=True), "/console/")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self.session(request)
        await self.ledger.end(session, self._send_token_record)
        resp = self.render(request, "signed_out.html", {}, session=None)
        resp.headers["Set-Cookie"] = security.cookie_header(
            security.SESSION_COOKIE, "", max_age=0, embed=session.grant.embed, secure=self.secure
        )
        return resp

    # -- rendering ------------------------------------------------------------------

    def render(
        self,
        request: web.Request,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        session: Session | bool | None = True,
    ) -> web.Response:
        current = request.get("session") if session is True else session
        tenant_param = request.query.get("tenant") or None
        base = {
            "session": current,
            "csrf": current.csrf if isinstance(current, Session) else "",
            "is_admin": bool(isinstance(current, Session) and current.grant.admin),
            "viewing_tenant": tenant_param if isinstance(current, Session) else None,
            "iso": iso,
            "outcome_label": outcome_label,
            "full_url": full_url,
            "short_url": short_url,
            "path": request.path,
        }
        return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)

    def tenant_of(
        self, request: web.Request, values: Mapping[str, str] | None = None
    ) -> str | None:
        """The tenant a page acts on, through the API's :func:`scope` (never a second check)."""
        requested = _form_tenant(values if values is not None else request.query)
        return scope(self.who(request), requested)

    @staticmethod
    def with_tenant(path: str, tenant: str | None, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if tenant:
            query["tenant"] = tenant
        return path + ("?" + urlencode(query) if query else "")

    # -- endpoints ------------------------------------------------------------------

    async def endpoints(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenant_of(request)
        who = self.who(request)
        try:
            chosen = listing.parse_filter(request.query)
        except InvalidRequestError as exc:
            return error_page(request, exc, 400, "Unknown filter")
        listed, hours, log_error = await self._last_24h(who, self.subs.visible(who, tenant))
        filtered = listing.filter_endpoints(listed, chosen)
        rows = []
        for item in filtered.shown:  # charts for the rows shown only
            attempts, delivered = item.attempts, item.delivered
            rate = f"{100 * delivered / attempts:.1f}%" if attempts else "no attempts"
            label = f"{attempts} attempts in the last 24 hours, success rate {rate}"
            rows.append(
                {
                    "sub": item.sub,
                    "attempts": attempts,
                    "rate": rate,
                    "chart": Markup(charts.bar_chart(hours[item.sub.id], label=label)),  # noqa: S704
                    "last_error": self._last_error(item.sub.id),
                }
            )
        shown = tenant if who.admin else None
        search = chosen.search or None
        here = "/console/endpoints"
        return self.render(
            request,
            "endpoints.html",
            {
                "rows": rows,
                "tenant": tenant,
                "log_error": log_error,
                "notice": request.query.get("notice"),
                "filter": chosen,
                "total": filtered.total,
                "tabs": [
                    (
                        key,
                        label,
                        filtered.counts[key],
                        self.with_tenant(
                            here, shown, state=None if key == "all" else key, q=search
                        ),
                    )
                    for key, label in listing.STATES.items()
                ],
                "clear_link": self.with_tenant(here, shown),
                "failing_means": listing.FAILING_MEANS,
            },
            status=422 if chosen.error else 200,
        )

    async def _last_24h(
        self, who: Principal, subs: list[Subscription]
    ) -> tuple[list[listing.Listed], dict[str, list[charts.Bucket]], str | None]:
        """Each endpoint with its last 24 hours (the endpoint list and the Tenants page):
        one read of the store's hour buckets for all of them, as
        /v1/subscriptions/{id}/stats charts them. Also each one's hourly bars, and why
        there are no figures when the log cannot be read (then every count is zero)."""
        log_error = None
        try:
            health = await self.stats.hourly_for(who, subs, CHART_HOURS)
        except (UnavailableError, StoreFault) as exc:  # the lists still list
            health, log_error = {}, str(exc)
        hours: dict[str, list[charts.Bucket]] = {}
        listed = []
        for sub in subs:
            found = health.get(sub.id)
            buckets = [
                charts.Bucket(h["attempts"], h["delivered"])
                for h in (found["chart"] if found else [])
            ] or [charts.Bucket() for _ in range(CHART_HOURS)]
            hours[sub.id] = buckets
            listed.append(
                listing.Listed(
                    sub,
                    attempts=sum(b.attempts for b in buckets),
                    delivered=sum(b.delivered for b in buckets),
                )
            )
        return listed, hours, log_error

    def _last_error(self, sub_id: str) -> dict[str, Any] | None:
        health = self.p.extras.get("health")
        state = health.state(sub_id) if health is not None else None
        if state is not None and state.last_error:
            return {"error": state.last_error, "since": state.failing_since}
        return None

    def _form_context(self, request: web.Request, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "values": values,
            "event_types": self.p.registry.event_types,
            "profiles": list(PROFILES),
            "body_formats": [(f, BODY_FORMAT_LABELS.get(f, f)) for f in BODY_FORMATS],
            "tenant": self.tenant_of(request),
            "error": None,
        }

    async def endpoint_form(self, request: web.Request) -> web.StreamResponse:
        return self.render(request, "endpoint_new.html", self._form_context(request, {}))

    @staticmethod
    def create_body(form: Mapping[str, Any], event_types: list[str]) -> dict[str, Any]:
        """The ``POST /v1/subscriptions`` body a form means (validated by the API's model).

        Signing and body format left on "automatic" (empty) are left out of the
        body, so the API chooses them: its defaults, or for a Slack, Discord or
        Telegram URL that service's message and no signature (``detected``).
        Any other value is passed on for the API to accept or name as wrong.
        """
        chosen = [t for t in event_types if t]
        typed = [t.strip() for t in str(form.get("event_types_other", "")).split(",") if t.strip()]
        body: dict[str, Any] = {
            "url": str(form.get("url", "")).strip(),
            "description": str(form.get("description", "")),
            "event_types": chosen + typed,
        }
        for key in ("signing", "body_format", "chat_id"):
            value = str(form.get(key, "")).strip()
            if value:
                body[key] = value
        headers: dict[str, str] = {}
        for number, line in enumerate(str(form.get("headers", "")).splitlines(), 1):
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise InvalidRequestError(
                    f"`headers`: line {number} needs the form `Name: value`", field="headers"
                )
            headers[name.strip()] = value.strip()
        if headers:
            body["headers"] = headers
        if form.get("retry_schedule") in ("default", "none"):
            body["retry_schedule"] = form["retry_schedule"]
        return body

    async def endpoint_create(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values = {k: str(v) for k, v in form.items() if k != "event_types"}
        picked = [str(v) for v in form.getall("event_types", [])]
        values["picked"] = ",".join(picked)
        try:
            body = self.create_body(values, picked)
            tenant = self.tenant_of(request, values)
            if tenant is not None:
                body["tenant_id"] = tenant
            created = await self.subs.create_for(self.who(request), body)
        except (InvalidRequestError, DestinationRefusedError) as exc:
            context = self._form_context(request, values)
            context["error"] = {"field": exc.field, "message": str(exc)}
            return self.render(request, "endpoint_new.html", context, status=422)
        except QuotaExceededError as exc:
            # The tenant's subscription quota (create_for checks it, as for the API).
            context = self._form_context(request, values)
            context["error"] = {"field": None, "message": str(exc)}
            return self.render(request, "endpoint_new.html", context, status=409)
        shown = tenant if self.who(request).admin else None
        resp = web.HTTPSeeOther(self.with_tenant(f"/console/endpoints/{created['id']}", shown))
        detected = (created.get("detected") or {}).get("message")
        self._show_once(request, resp, created["id"], created.get("signing_secret"), detected)
        return resp

    def _show_once(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        sub_id: str,
        secret: str | None,
        detected: str | None = None,
    ) -> None:
        """Hand a new secret (and what the API detected from the URL) to the next page
        load alone, in a cookie only that page gets."""
        if not secret and not detected:
            return
        session = self.session(request)
        value = self.codec.seal_once(
            {"s": session.id, "sub": sub_id, "secret": secret, "detected": detected},
            time.time(),
        )
        resp.headers["Set-Cookie"] = security.cookie_header(
            security.ONCE_COOKIE,
            value,
            max_age=ONCE_TTL_S,
            embed=session.grant.embed,
            secure=self.secure,
            path=f"/console/endpoints/{sub_id}",
        )

    def _take_once(self, request: web.Request, sub_id: str) -> tuple[str | None, str | None]:
        """The new secret and the detected-defaults note handed to this page, if any."""
        raw = request.cookies.get(security.ONCE_COOKIE)
        if not raw:
            return None, None
        claims = self.codec.open_once(raw, time.time(), ttl_s=ONCE_TTL_S)
        if claims is None:
            return None, None
        if claims.get("s") != self.session(request).id or claims.get("sub") != sub_id:
            return None, None
        secret, detected = claims.get("secret"), claims.get("detected")
        return (
            secret if isinstance(secret, str) else None,
            detected if isinstance(detected, str) else None,
        )

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        sub = self.subs.find(self.who(request), request.match_info["id"])
        secret, detected = self._take_once(request, sub.id)
        q = request.query
        stats, stats_error = None, None
        try:
            # What GET /v1/subscriptions/{id}/stats answers, read the same way.
            stats = await self.stats.subscription_for(self.who(request), sub.id)
        except (UnavailableError, StoreFault) as exc:  # the page still shows the endpoint
            stats_error = str(exc)
        chart_tab = "7d" if q.get("chart") == "7d" else "24h"
        # Failing as the endpoint list's tab counts it, linked to the failed deliveries.
        (day,), _, _ = await self._last_24h(self.who(request), [sub])
        failing: dict[str, Any] | None = None
        if day.failing:
            shown = sub.tenant_id if self.who(request).admin else None
            href = self.with_tenant(f"/console/endpoints/{sub.id}", shown, recent="failed")
            failing = {
                "missed": day.attempts - day.delivered,
                "attempts": day.attempts,
                "href": href + "#recent",
            }
        recent_tab = "failed" if q.get("recent") == "failed" else "all"
        recent = await self._recent(request, sub, failed=recent_tab == "failed", chart=chart_tab)
        chart = await self._chart(request, sub, chart_tab, recent=recent_tab)
        resp = self.render(
            request,
            "endpoint.html",
            {
                "sub": sub,
                "view": self.subs.view(sub),
                "secret": secret,
                "detected": detected,
                "last_error": self._last_error(sub.id),
                "parked": q.get("parked"),
                "parked_since": q.get("since"),
                "recover_windows": RECOVER_WINDOWS,
                "recover_default": RECOVER_DEFAULT,
                "notice": q.get("notice"),
                "tenant": sub.tenant_id if self.who(request).admin else None,
                "test_types": self.subs.test_types(sub),
                "stats": stats,
                "stats_windows": STATS_WINDOWS,
                "stats_error": stats_error,
                "recent": recent,
                "chart": chart,
                "failing": failing,
            },
        )
        if request.cookies.get(security.ONCE_COOKIE):
            # Shown at most once: the cookie goes with this response, whatever it held.
            resp.headers["Set-Cookie"] = security.cookie_header(
                security.ONCE_COOKIE,
                "",
                max_age=0,
                embed=self.session(request).grant.embed,
                secure=self.secure,
                path=f"/console/endpoints/{sub.id}",
            )
        return resp

    async def _chart(
        self, request: web.Request, sub: Subscription, tab: str, *, recent: str
    ) -> dict[str, Any]:
        """The Deliveries panel's chart: the endpoint's attempts per hour over the last
        24 hours (the store's hour buckets, as ``hourly`` of its stats) or per UTC day
        over the last 7 (today so far and the 6 days before, each the sum of its hour
        buckets); ``error`` says why there is no chart when the log cannot be read."""
        shown = sub.tenant_id if self.who(request).admin else None
        here = f"/console/endpoints/{sub.id}"
        keep = {"recent": recent if recent != "all" else None}
        out: dict[str, Any] = {
            "tab": tab,
            "title": f"Deliveries over the last {CHART_TABS[tab][0]}",
            "tabs": [
                ("24h", "24 hours", self.with_tenant(here, shown, **keep) + "#stats"),
                ("7d", "7 days", self.with_tenant(here, shown, chart="7d", **keep) + "#stats"),
            ],
            "svg": None,
            "summary": None,
            "error": None,
        }
        days = CHART_TABS[tab][2]
        now = time.time()
        # The hour buckets from the first bar's start: 24 of them, or every hour of the
        # UTC days shown (the oldest day's midnight up to the current hour).
        hours = CHART_HOURS if days is None else (days - 1) * 24 + int(now // 3600) % 24 + 1
        try:
            series = await self.stats.hours_for(self.who(request), sub.id, hours, now)
        except (UnavailableError, StoreFault) as exc:
            out["error"] = str(exc)
            return out
        buckets = [charts.Bucket(h["attempts"], h["delivered"]) for h in series]
        start, span = (series[0]["start"] if series else now), charts.HOUR_S
        if days is not None:
            buckets = [
                charts.Bucket(
                    sum(b.attempts for b in buckets[d * 24 : d * 24 + 24]),
                    sum(b.delivered for b in buckets[d * 24 : d * 24 + 24]),
                )
                for d in range(days)
            ]
            span = charts.DAY_S
        svg = charts.history_chart(
            buckets,
            start=start,
            span_s=span,
            period=CHART_TABS[tab][1],
            label_every=CHART_LABEL_HOURS,
        )
        out["svg"] = Markup(svg)  # noqa: S704 (escaped by charts: numbers and fixed words)
        if any(b.attempts for b in buckets):  # the chart's own words, for the eye too
            out["summary"] = charts.history_label(
                buckets, start=start, span_s=span, period=CHART_TABS[tab][1]
            )
        return out

    async def _recent(
        self, request: web.Request, sub: Subscription, *, failed: bool, chart: str = "24h"
    ) -> dict[str, Any]:
        """The endpoint's latest deliveries (all, or not delivered), read as the delivery
        log page reads them; ``error`` says why there are none to show when the log
        cannot be read."""
        shown = sub.tenant_id if self.who(request).admin else None
        query = {"tenant_id": sub.tenant_id, "subscription_id": sub.id, "limit": str(RECENT_ROWS)}
        if failed:
            query["status"] = UNDELIVERED
        rows: list[dict[str, Any]] = []
        error = None
        try:
            rows = (await self.log_page(self.who(request), query))["data"]
        except (UnavailableError, StoreFault) as exc:
            error = str(exc)
        here = f"/console/endpoints/{sub.id}"
        keep = {"chart": chart if chart != "24h" else None}
        return {
            "tab": "failed" if failed else "all",
            "rows": rows,
            "error": error,
            "tabs": [
                ("all", "All", self.with_tenant(here, shown, **keep) + "#recent"),
                (
                    "failed",
                    "Failed",
                    self.with_tenant(here, shown, recent="failed", **keep) + "#recent",
                ),
            ],
            "log_link": self.with_tenant(
                "/console/deliveries",
                shown,
                endpoint=sub.id,
                status=UNDELIVERED if failed else None,
            ),
        }

    async def endpoint_test(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        chosen = str(form.get("event_type", "")) or None
        try:
            sent = await self.subs.test_for(self.who(request), request.match_info["id"], chosen)
        except (InvalidRequestError, ConflictError) as exc:
            # Answered to the Test button's script, which shows the reason beside it.
            status = 409 if isinstance(exc, ConflictError) else 422
            return web.json_response({"error": str(exc)}, status=status)
        return web.json_response(sent, status=202, dumps=lambda o: orjson.dumps(o).decode())

    async def endpoint_disable(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        reason = str(form.get("reason", "")).strip() or None
        sub = self.subs.find(self.who(request), request.match_info["id"])
        await self.subs.disable_for(self.who(request), sub.id, {"reason": reason})
        raise web.HTTPSeeOther(self._back(request, sub, notice="Disabled."))

    async def endpoint_enable(self, request: web.Request) -> web.StreamResponse:
        sub = self.subs.find(self.who(request), request.match_info["id"])
        since = sub.disabled_at
        view = await self.subs.enable_for(self.who(request), sub.id, {})
        parked = (view.get("parked") or {}).get("count")
        params: dict[str, Any] = {"notice": "Enabled."}
        if parked and since is not None:
            params.update(parked=parked, since=int(since - 60))
        raise web.HTTPSeeOther(self._back(request, sub, **params))

    async def endpoint_rotate(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grace = str(form.get("grace", "24h"))
        sub = self.subs.find(self.who(request), request.match_info["id"])
        rotated = await self.subs.rotate_for(self.who(request), sub.id, {"grace": grace})
        resp = web.HTTPSeeOther(self._back(request, sub, notice="Secret rotated."))
        self._show_once(request, resp, sub.id, rotated.get("signing_secret"))
        return resp

    def _back(self, request: web.Request, sub: Subscription, **params: Any) -> str:
        tenant = sub.tenant_id if self.who(request).admin else None
        return self.with_tenant(f"/console/endpoints/{sub.id}", tenant, **params)

    # -- edit and delete: PATCH and DELETE /v1/subscriptions/{id} ----------------------

    @staticmethod
    def _retry_choice(sub: Subscription) -> str:
        if sub.retry_schedule is None:
            return "default"
        return "none" if list(sub.retry_schedule) == [0] else "keep"

    def _edit_values(self, sub: Subscription) -> dict[str, str]:
        """The edit form filled from the subscription (no secret: header values and the
        signing secret are never put in the page; a URL with a credential is masked)."""
        known = set(self.p.registry.event_types)
        return {
            "url": sub.url,
            "description": sub.description,
            "picked": ",".join(t for t in sub.event_types if t in known),
            "event_types_other": ", ".join(t for t in sub.event_types if t not in known),
            "body_format": sub.body_format,
            "chat_id": sub.chat_id or "",
            "retry_schedule": self._retry_choice(sub),
            "headers": "",
            "removed": "",
        }

    def _edit_context(
        self, request: web.Request, sub: Subscription, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        view = self.subs.view(sub)
        return {
            "sub": sub,
            "view": view,
            "values": values,
            "removed": set(str(values.get("removed", "")).split(",")) - {""},
            "event_types": self.p.registry.event_types,
            "body_formats": [(f, BODY_FORMAT_LABELS.get(f, f)) for f in BODY_FORMATS],
            "tenant": sub.tenant_id if self.who(request).admin else None,
            "error": None,
        }

    async def endpoint_edit_form(self, request: web.Request) -> web.StreamResponse:
        sub = self.subs.find(self.who(request), request.match_info["id"])
        return self.render(
            request, "endpoint_edit.html", self._edit_context(request, sub, self._edit_values(sub))
        )

    def update_body(
        self, sub: Subscription, form: Mapping[str, Any], picked: list[str], removed: list[str]
    ) -> dict[str, Any]:
        """The ``PATCH /v1/subscriptions/{id}`` body an edit form means: only the fields
        that differ from ``sub`` (the API validates them as for any PATCH).

        The form is read by :meth:`create_body`, as the add form is. The URL is sent only
        when changed (a URL with a credential is shown masked, and the mask is no URL).
        ``headers`` replaces every header in a PATCH, so when headers are added or removed
        the body carries the kept ones too, with their stored values and secrecy: a
        header is removed only when its box is ticked, replaced only when typed again.
        """
        wanted = self.create_body(form, picked)
        body: dict[str, Any] = {}
        if wanted["url"] != sub.url:
            body["url"] = wanted["url"]
        if wanted["description"] != sub.description:
            body["description"] = wanted["description"]
        if set(wanted["event_types"]) != set(sub.event_types) or not wanted["event_types"]:
            body["event_types"] = wanted["event_types"]
        if wanted.get("body_format", sub.body_format) != sub.body_format:
            body["body_format"] = wanted["body_format"]
        if wanted.get("chat_id") != sub.chat_id:
            body["chat_id"] = wanted.get("chat_id")
        retry = wanted.get("retry_schedule")
        if retry is not None and form.get("retry_schedule") != self._retry_choice(sub):
            body["retry_schedule"] = retry
        added: dict[str, str] = wanted.get("headers", {})
        gone = {n.lower() for n in removed} | {n.lower() for n in added}
        if added or any(n.lower() in gone for n in header_rules.view(sub)):
            secret = set(header_rules.secret_names(sub))
            kept = [
                {"name": name, "value": value, "secret": name in secret}
                for name, value in header_rules.reveal(sub, self.p.box).items()
                if name.lower() not in gone
            ]
            body["headers"] = kept + [{"name": n, "value": v} for n, v in added.items()]
        return body

    @staticmethod
    def _changes(before: Subscription, body: Mapping[str, Any], view: Mapping[str, Any]) -> str:
        """What an edit changed, for the notice on the endpoint page."""
        parts = []
        for key, label in FIELD_NAMES.items():
            if key not in body:
                continue
            if key == "event_types":
                parts.append(f"{label} now {', '.join(view['event_types'])}")
            elif key == "headers":
                old, new = set(header_rules.view(before)), set(view["headers"])
                said = [f"removed {', '.join(sorted(old - new))}"] if old - new else []
                said += [f"set {', '.join(sorted(new - old))}"] if new - old else []
                replaced = {h["name"] for h in body["headers"] if "secret" not in h} & old
                said += [f"replaced {', '.join(sorted(replaced))}"] if replaced else []
                parts.append(f"{label} ({'; '.join(said) or 'unchanged'})")
            elif key == "retry_schedule":
                parts.append(f"{label} now {view['retry_schedule']}")
            else:
                parts.append(label)
        notice = "Saved: " + "; ".join(parts) + "."
        for warning in view.get("warnings", []):
            notice += f" Warning: {warning}."
        return notice

    async def endpoint_update(self, request: web.Request) -> web.StreamResponse:
        who = self.who(request)
        sub = self.subs.find(who, request.match_info["id"])
        form = await request.post()
        values = {k: str(v) for k, v in form.items() if k not in ("event_types", "remove_header")}
        picked = [str(v) for v in form.getall("event_types", [])]
        removed = [str(v) for v in form.getall("remove_header", [])]
        values["picked"] = ",".join(picked)
        values["removed"] = ",".join(removed)
        try:
            body = self.update_body(sub, values, picked, removed)
            if not body:
                raise web.HTTPSeeOther(self._back(request, sub, notice="Nothing changed."))
            view = await self.subs.update_for(who, sub.id, body)
        except (InvalidRequestError, DestinationRefusedError) as exc:
            # The same refusal PATCH answers, beside the form as the user left it.
            context = self._edit_context(request, sub, values)
            context["error"] = {"field": exc.field or "", "message": str(exc)}
            return self.render(request, "endpoint_edit.html", context, status=422)
        raise web.HTTPSeeOther(self._back(request, sub, notice=self._changes(sub, body, view)))

    async def endpoint_delete_form(self, request: web.Request) -> web.StreamResponse:
        sub = self.subs.find(self.who(request), request.match_info["id"])
        return self.render(
            request,
            "endpoint_delete.html",
            {"sub": sub, "tenant": sub.tenant_id if self.who(request).admin else None},
        )

    async def endpoint_delete(self, request: web.Request) -> web.StreamResponse:
        who = self.who(request)
        gone = await self.subs.delete_for(who, request.match_info["id"])
        raise web.HTTPSeeOther(
            self.with_tenant(
                "/console/endpoints",
                gone.tenant_id if who.admin else None,
                notice=f"Endpoint {gone.url} ({gone.id}) deleted.",
            )
        )

    async def endpoint_verify(self, request: web.Request) -> web.StreamResponse:
        sub = self.subs.find(self.who(request), request.match_info["id"])
        return self.render(
            request,
            "verify.html",
            {"sub": sub, "recipe": RECIPES.get(sub.signing), "view": self.subs.view(sub)},
        )

    # -- the delivery log -------------------------------------------------------------

    async def find_delivery(self, request: web.Request, wanted: str) -> str | None:
        """The delivery page of ``wanted``: a delivery id (the ``webhook-id`` header), or
        an event id, whose delivery to each endpoint the user may see has the id
        :func:`delivery_id_for` gives (no index of event ids needed). ``None``: none."""
        who = self.who(request)
        endpoints = self.subs.visible(who, self.tenant_of(request))[:FIND_ENDPOINTS]
        candidates = [wanted] + [delivery_id_for(wanted, s.id) for s in endpoints]
        for delivery_id in dict.fromkeys(candidates):
            try:
                view, _ = await self.deliveries.history_for(who, delivery_id)
            except NotFoundError:
                continue
            return self.with_tenant(
                f"/console/deliveries/{delivery_id}", view["tenant_id"] if who.admin else None
            )
        return None

    async def log_page(self, who: Principal, query: Mapping[str, str]) -> dict[str, Any]:
        """A page of the delivery log as ``GET /v1/deliveries`` answers it (``page_for``),
        and for the status :data:`UNDELIVERED` the pages of ``retrying`` and ``failed``
        merged: both are in the store's order (newest first attempt, then delivery key)
        and its cursor is a place in that order, so one cursor pages both."""
        if query.get("status") != UNDELIVERED:
            return await self.deliveries.page_for(who, query)
        limit = parse_limit(query.get("limit"))
        pages = [
            await self.deliveries.page_for(who, {**query, "status": word})
            for word in NOT_DELIVERED_WORDS
        ]
        merged = sorted(
            (row for found in pages for row in found["data"]),
            key=lambda r: (r["first_attempt_at"], delivery_key(r["delivery_id"])),
            reverse=True,
        )
        data = merged[:limit]
        more = len(merged) > limit or any(found["next_cursor"] for found in pages)
        last = data[-1] if data else None
        next_cursor = (
            Cursor(last["first_attempt_at"], delivery_key(last["delivery_id"])).encode()
            if more and last
            else None
        )
        return {"data": data, "next_cursor": next_cursor}

    async def delivery_log(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        tenant = self.tenant_of(request)
        wanted = q.get("find", "").strip()
        find_error = None
        if wanted:
            if len(wanted) > 200:
                find_error = "An id is at most 200 characters: paste a delivery id or an event id."
            else:
                try:
                    found_at = await self.find_delivery(request, wanted)
                except UnavailableError as exc:
                    found_at, find_error = None, str(exc)
                if found_at is not None:
                    raise web.HTTPSeeOther(found_at)
                find_error = find_error or (
                    f"No delivery {wanted!r}, and no delivery of an event with that id to "
                    "an endpoint you have now, is in the delivery log."
                )
        filters = {
            "subscription_id": q.get("endpoint") or None,
            "status": q.get("status") or None,
            "event_type": q.get("event_type") or None,
            "since": q.get("since") or None,
            "until": q.get("before") or q.get("until") or None,
        }
        query = {k: v for k, v in filters.items() if v is not None}
        if tenant is not None:
            query["tenant_id"] = tenant
        query["limit"] = str(PAGE_ROWS)
        if q.get("cursor"):
            query["cursor"] = q["cursor"]
        error = None
        rows: list[dict[str, Any]] = []
        next_cursor = None
        try:
            found = await self.log_page(self.who(request), query)
            rows, next_cursor = found["data"], found["next_cursor"]
        except InvalidRequestError as exc:
            error = {"field": exc.field, "message": str(exc)}
        older = None
        if next_cursor is not None:
            # The store's cursor: the next page starts after this one's last delivery,
            # whatever arrived since (a time bound would skip or repeat rows).
            older = self.with_tenant(
                "/console/deliveries",
                tenant if self.who(request).admin else None,
                endpoint=q.get("endpoint"),
                status=q.get("status"),
                event_type=q.get("event_type"),
                since=q.get("since"),
                until=q.get("before") or q.get("until"),
                cursor=next_cursor,
            )
        endpoints = self.subs.visible(self.who(request), tenant)
        return self.render(
            request,
            "deliveries.html",
            {
                "rows": rows,
                "q": q,
                "error": error,
                "older": older,
                "endpoints": endpoints,
                # Each row's endpoint, looked up once per page; a deleted one is absent.
                "endpoint_of": {s.id: s for s in endpoints},
                "event_types": self.p.registry.event_types,
                "tenant": tenant,
                "find_error": find_error,
            },
            status=422 if error else 404 if find_error else 200,
        )

    async def delivery(self, request: web.Request) -> web.StreamResponse:
        who = self.who(request)
        view, history = await self.deliveries.history_for(who, request.match_info["id"])
        attempts = [attempt_view(a) for a in history]
        sent, sent_note = await self._request_sent(history)
        return self.render(
            request,
            "delivery.html",
            {
                "d": view,
                "endpoint": self._endpoint_of(who, view["subscription_id"]),
                "outcome_note": outcome_note(
                    view["outcome"], view.get("status"), view.get("last_attempt_at")
                ),
                "attempts": attempts,
                "sent": sent,
                "sent_note": sent_note,
                "notice": request.query.get("notice"),
                "tenant": view["tenant_id"] if who.admin else None,
            },
        )

    async def _request_sent(self, history: list[Attempt]) -> tuple[dict[str, Any] | None, str]:
        """The latest request, rebuilt by the code that sent it from the delivery record.

        The record is read back from Kafka by offset, as redeliver does, so the
        body is the exact bytes sent. Signatures are recomputed for the attempt's
        second with the current secret: after a rotation they differ from what went out.
        """
        source = next((a for a in reversed(history) if a.source_offset >= 0), None)
        sub = self.p.subscriptions.get(history[-1].subscription_id)
        if source is None or sub is None:
            return None, "The record of this request is no longer available."
        try:
            found = await asyncio.to_thread(
                read_at,
                self.p.settings,
                source.source_topic,
                source.source_partition,
                source.source_offset,
            )
            delivery = Delivery.from_bytes(found.value or b"")
            built = build_request(
                delivery,
                sub,
                secrets=secret_store.decrypt_active(self.p.box, sub.secrets, source.at),
                timestamp=int(source.at),
                user_agent=self.p.settings.user_agent,
                reserved=reserved_headers(),
                # Secret header values masked, as everywhere they are shown.
                custom_headers=header_rules.view(sub),
            )
        except (StreamsError, DecodeError, OSError) as exc:
            return None, f"The request could not be read back from Kafka: {exc}"
        body = built.body.decode("utf-8", "replace")
        headers = dict(built.headers)
        return {
            "method": "POST",
            "url": built.url,
            "headers": headers,
            "body": body,
            # Shown indented; sent (and signed) as ``body``, byte for byte.
            "pretty": pretty_json(body),
            "curl": curl_command(built.url, headers, body),
        }, "Signatures are recomputed with the secret valid at the attempt's time."

    async def redeliver(self, request: web.Request) -> web.StreamResponse:
        delivery_id = request.match_info["id"]
        try:
            again = await self.deliveries.redeliver_for(self.who(request), delivery_id)
            notice = f"Redelivery queued (replay {again['replay_id']})."
        except ConflictError as exc:
            notice = f"Not redelivered: {exc}"
        raise web.HTTPSeeOther(
            self.with_tenant(
                f"/console/deliveries/{delivery_id}",
                request.query.get("tenant") if self.who(request).admin else None,
                notice=notice,
            )
        )

    async def api_delivery(self, request: web.Request) -> web.StreamResponse:
        """A delivery's latest attempt, for the Test button's result (404 until one exists)."""
        try:
            _, history = await self.deliveries.history_for(
                self.who(request), request.match_info["id"]
            )
        except NotFoundError:
            return web.json_response({"status": "pending"}, status=404)
        last = attempt_view(history[-1])
        return web.json_response(
            {
                "delivery_id": request.match_info["id"],
                "outcome": last["outcome"],
                "status": last["status"],
                "duration_ms": last["duration_ms"],
                "response_snippet": last["response_snippet"],
                "error": last["error"],
            },
            dumps=lambda o: orjson.dumps(o).decode(),
        )

    # -- event catalog ------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        registry = self.p.registry
        rows = []
        for name in registry.event_types:
            schema = registry.schemas[name]
            rows.append(
                {
                    "name": name,
                    "description": schema.get("description") or schema.get("title") or "",
                    "schema": orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode(),
                    "example": orjson.dumps(
                        registry.sample(name), option=orjson.OPT_INDENT_2
                    ).decode(),
                }
            )
        return self.render(request, "events.html", {"rows": rows})

    # -- dead letters -------------------------------------------------------------------

    def _dlq_query(self, request: web.Request, values: Mapping[str, str]) -> dict[str, str]:
        tenant = self.tenant_of(request, values)
        keys = ("subscription_id", "event_type", "reason", "since", "until")
        query = {k: str(values[k]) for k in keys if values.get(k)}
        if tenant is not None:
            query["tenant_id"] = tenant
        return query

    async def dlq(self, request: web.Request) -> web.StreamResponse:
        who = self.who(request)
        query = self._dlq_query(request, request.query)
        error = None
        rows: list[dict[str, Any]] = []
        try:
            rows = await self.deliveries.dlq_list_for(who, {**query, "limit": str(PAGE_ROWS)})
        except InvalidRequestError as exc:
            error = {"field": exc.field, "message": str(exc)}
        endpoints = self.subs.visible(who, query.get("tenant_id"))
        return self.render(
            request,
            "dlq.html",
            {
                "rows": rows,
                "q": request.query,
                "error": error,
                "reasons": REASONS,
                "replays": self.deliveries.replays_visible(who),
                "resumable": RESUMABLE,
                "notice": request.query.get("notice"),
                "endpoints": endpoints,
                "endpoint_of": {s.id: s for s in endpoints},
                "event_types": self.p.registry.event_types,
                "tenant": query.get("tenant_id"),
            },
            status=422 if error else 200,
        )

    async def dlq_replay(self, request: web.Request) -> web.StreamResponse:
        """Step 1 (``dry_run``): show the count; step 2 (``confirm``): start, show progress."""
        form = await request.post()
        values = {k: str(v) for k, v in form.items()}
        who = self.who(request)
        recover = self._recover(who, values) if "window" in values else None
        body: dict[str, Any] = dict(self._dlq_query(request, values))
        for key in ("since", "until"):
            if key in body and body[key].replace(".", "", 1).isdigit():
                body[key] = float(body[key])
        if values.get("rate"):
            try:
                body["rate"] = float(values["rate"])
            except ValueError:
                raise InvalidRequestError(
                    "`rate`: replays per second, a number", field="rate"
                ) from None
        confirm = values.get("step") == "confirm"
        disabled = None
        target = self._endpoint_of(who, values.get("subscription_id"))
        if target is not None:
            if confirm:  # a confirm from a dry run shown before the endpoint was disabled
                self._refuse_disabled(target)
            elif not target.enabled:  # the dry run says so, and offers no confirm
                disabled = target
        body["dry_run"] = not confirm
        result = await self.deliveries.dlq_replay_for(who, body)
        return self.render(
            request,
            "replay.html",
            {
                "result": result,
                "values": values,
                "confirm": confirm,
                "recover": recover,
                "disabled": disabled,
            },
            status=202 if confirm else 200,
        )

    def _recover(self, who: Principal, values: dict[str, str]) -> dict[str, Any]:
        """The endpoint page's "Recover failed deliveries": its ``window`` (``"24h"``)
        becomes ``since`` in ``values``, for this replay and the dry run's confirm form;
        every reason, the one endpoint. Refused for an endpoint ``who`` may not see (404),
        and for a disabled one (409): replayed to it now, they would be parked again."""
        window = values.pop("window")
        if not values.get("subscription_id"):
            raise InvalidRequestError(
                "`subscription_id`: the endpoint whose failed deliveries to recover",
                field="subscription_id",
            )
        if values.get("since"):
            raise InvalidRequestError(
                "`since`: send either `window` or `since`, not both", field="since"
            )
        sub = self.subs.find(who, values["subscription_id"])
        self._refuse_disabled(sub)
        since = recover_since(window, time.time())
        values["since"] = str(since)
        label = dict(RECOVER_WINDOWS).get(window, f"Last {window}")
        return {"sub": sub, "since": since, "label": label}

    def _endpoint_of(self, who: Principal, sub_id: str | None) -> Subscription | None:
        """The endpoint ``sub_id``, if it still exists for ``who``; else None. (A replay
        filtered to a deleted one goes on as before: its letters are the replay's own
        business; a delivery page shows a deleted one as such.)"""
        if not sub_id:
            return None
        try:
            return self.subs.find(who, sub_id)
        except NotFoundError:
            return None

    @staticmethod
    def _refuse_disabled(sub: Subscription) -> None:
        """A replay to one endpoint starts only while it is enabled (409 otherwise)."""
        if not sub.enabled:
            raise ConflictError(
                "this endpoint is disabled: re-enable it first, then recover its failed "
                "deliveries (sent to it while disabled, they would be parked again)"
            )

    async def replay_cancel(self, request: web.Request) -> web.StreamResponse:
        """Cancel a replay this worker runs (whoever may see it may cancel it, as in
        ``DELETE /v1/dlq/replays/{id}``); back to the dead letters with what happened."""
        replay_id = request.match_info["id"]
        try:
            view, stopped = await self.deliveries.replays.cancel_for(self.who(request), replay_id)
            sent = f"{view.get('replayed') or 0}" + (
                f" of {view['to_send']}" if view.get("to_send") is not None else ""
            )
            notice = (
                f"Replay {replay_id} cancelled: {sent} sent. Resume picks up where it "
                "stopped; what it sent is not sent again."
                if stopped
                else f"Replay {replay_id} is stopping."
            )
        except ConflictError as exc:
            notice = f"Not cancelled: {exc}"
        raise web.HTTPSeeOther(self._dlq_back(request, notice))

    async def replay_resume(self, request: web.Request) -> web.StreamResponse:
        """Run a cancelled, interrupted or failed replay again under its id."""
        replay_id = request.match_info["id"]
        try:
            await self.deliveries.replays.resume_for(self.who(request), replay_id)
            notice = f"Replay {replay_id} resumed where it stopped."
        except ConflictError as exc:
            notice = f"Not resumed: {exc}"
        raise web.HTTPSeeOther(self._dlq_back(request, notice))

    def _dlq_back(self, request: web.Request, notice: str) -> str:
        tenant = request.query.get("tenant") if self.who(request).admin else None
        return self.with_tenant("/console/dlq", tenant, notice=notice)

    async def api_replay(self, request: web.Request) -> web.StreamResponse:
        found = self.deliveries.replay_for(self.who(request), request.match_info["id"])
        return web.json_response(found, dumps=lambda o: orjson.dumps(o).decode())

    # -- operator pages -------------------------------------------------------------------

    def _operator(self, request: web.Request) -> None:
        if not self.who(request).admin:
            raise NotFoundError("this page is the operator's")

    async def live_page(self, request: web.Request) -> web.StreamResponse:
        self._operator(request)
        snapshot = await self.live.current()
        template = "live_body.html" if request.query.get("fragment") else "live.html"
        return self.render(request, template, {"live": snapshot})

    async def api_live(self, request: web.Request) -> web.StreamResponse:
        self._operator(request)
        snapshot = await self.live.current()
        return web.json_response(snapshot.as_dict(), dumps=lambda o: orjson.dumps(o).decode())

    async def tenants(self, request: web.Request) -> web.StreamResponse:
        """Per tenant: its endpoints, enabled ones and failing ones, counted as that
        tenant's endpoint list counts its tabs (one read of the store for every endpoint),
        each count a link to the list it counts."""
        self._operator(request)
        listed, _, log_error = await self._last_24h(ADMIN, self.subs.visible(ADMIN, None))
        here = "/console/endpoints"
        rows = [
            {
                "counts": counts,
                "endpoints_link": self.with_tenant(here, counts.tenant),
                "failing_link": self.with_tenant(here, counts.tenant, state="failing"),
            }
            for counts in listing.by_tenant(listed)
        ]
        return self.render(
            request,
            "tenants.html",
            {"rows": rows, "log_error": log_error, "failing_means": listing.FAILING_MEANS},
        )


def error_page(request: web.Request, exc: Exception, status: int, title: str) -> web.Response:
    session = request.get("session")
    is_admin = bool(isinstance(session, Session) and session.grant.admin)
    return aiohttp_jinja2.render_template(
        "error.html",
        request,
        {
            "session": session,
            "csrf": session.csrf if isinstance(session, Session) else "",
            "is_admin": is_admin,
            # The operator's tenant stays in the nav links, as on every other page.
            "viewing_tenant": (request.query.get("tenant") or None) if is_admin else None,
            "title": title,
            "message": str(exc),
            "path": request.path,
        },
        status=status,
    )


ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFoundError, 404, "Not found"),
    (InvalidRequestError, 422, "Cannot do that"),
    (DestinationRefusedError, 422, "Cannot do that"),
    (ConflictError, 409, "Cannot do that now"),
    (UnavailableError, 503, "Unavailable"),
    (StreamsError, 503, "Unavailable"),
)
