"""The console in-process (no Kafka): links, sessions, CSRF, CSP, escaping, tenant isolation.

The worker's web app is built by ``register_api`` on fakes, as in
``test_api_inputs``; the fake ``send`` feeds the subscriptions index and the
console's ledger the way the topic readers do in a worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import html
import re
import shlex
import time
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from streams.api import replays as replays_module
from streams.api import subscriptions as api_subscriptions
from streams.api.auth import Principal
from streams.api.deliveries import DeliveryRoutes
from streams.cli import cli
from streams.console import pages, security
from streams.console.pages import ConsolePages
from streams.console.sessions import Grant
from streams.deadletter.scan import Located
from streams.errors import InvalidRequestError, NotFoundError, StreamsError
from streams.kafka.topics import TopicNames
from streams.log.store import STATUS_WORDS, LogWriter
from streams.records import Attempt, DeadLetter, Delivery, Subscription, delivery_id_for
from streams.signing import PROFILES
from streams.subscriptions.model import BODY_FORMATS
from streams.tools.demo import console_links
from tests.fake_pipeline import ADMIN, dev_settings, fake_pipeline
from tests.unit.test_api_inputs import delivery_routes
from tests.unit.test_replays import FakeReplays

HOSTILE = "<img src=x onerror=alert(1)>"


async def _no_dns(host: str, port: int, **_: Any) -> list[Any]:
    raise OSError(f"unit tests look up no names ({host})")


@pytest.fixture
async def app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    async for built in _app(tmp_path, monkeypatch, log_node=False):
        yield built


@pytest.fixture
async def log_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    """The app of a log node whose indexer is not started: tests write the store."""
    async for built in _app(tmp_path, monkeypatch, log_node=True):
        yield built


async def _app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, log_node: bool
) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    # The API checks where a new URL resolves; unresolvable is accepted (checked again
    # per delivery). Tests reach only 127.0.0.1, so no name is looked up at all.
    monkeypatch.setattr(api_subscriptions, "resolve_and_check", _no_dns)
    pipeline = fake_pipeline(dev_settings(tmp_path), log=True if log_node else None)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def bearer(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tenant_token(client: TestClient[Any, Any], tenant: str) -> str:
    resp = await client.post("/v1/tokens", json={"tenant_id": tenant}, headers=bearer())
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["token"]
    return token


async def link(client: TestClient[Any, Any], token: str = ADMIN, **body: Any) -> str:
    resp = await client.post("/v1/console/sessions", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    path: str = (await resp.json())["path"]
    return path


async def sign_in(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 200, await resp.text()
    assert '<meta http-equiv="refresh" content="0; url=/console/">' in await resp.text()


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def page(client: TestClient[Any, Any], path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text[:2000]
    assert "Content-Security-Policy" in resp.headers
    return text


async def test_a_link_opens_once_and_sets_a_strict_http_only_cookie(app: Any) -> None:
    client, _ = app
    token = await tenant_token(client, "acme")
    path = await link(client, token)
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(security.SESSION_COOKIE + "=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # development: plain http on any host works
    assert "Tenant <strong>acme</strong>" in await page(client, "/console/endpoints")

    again = await client.get(path, allow_redirects=False)
    assert again.status == 403
    assert "already used" in await again.text()


async def test_an_expired_or_altered_link_is_refused_with_the_reason(app: Any) -> None:
    client, pipeline = app
    codec = pipeline.extras["console"].codec
    old, _ = codec.issue_link(Grant(tenant_id="acme", admin=False), now=time.time() - 601)
    resp = await client.get(f"/console/login/{old}")
    assert resp.status == 403
    assert "expired" in await resp.text()
    fresh = await link(client)
    resp = await client.get(fresh[:-3] + "AAA")
    assert resp.status == 403
    assert "not valid" in await resp.text()


async def test_a_tenant_token_gets_links_for_its_own_tenant_only(app: Any) -> None:
    client, _ = app
    token = await tenant_token(client, "acme")
    resp = await client.post(
        "/v1/console/sessions", json={"tenant_id": "other"}, headers=bearer(token)
    )
    assert resp.status == 422
    resp = await client.post("/v1/console/sessions", json={"embed": "yes"}, headers=bearer(token))
    assert (await resp.json())["error"]["field"] == "embed"
    assert (await client.post("/v1/console/sessions", json={})).status == 401


async def test_every_console_response_carries_the_strict_csp(app: Any) -> None:
    client, _ = app
    await sign_in(client, await link(client, tenant_id="acme"))
    for path in ("/console/endpoints", "/console/nope", "/console/static/console.css"):
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert re.fullmatch(r"app;dur=\d+\.\d", resp.headers["Server-Timing"]), path
    signed_out = await client.get("/console/live", cookies={security.SESSION_COOKIE: "x"})
    assert "Content-Security-Policy" in signed_out.headers


async def test_pages_have_no_inline_script_or_style(app: Any) -> None:
    client, _ = app
    await sign_in(client, await link(client))
    for path in ("/console/endpoints", "/console/endpoints/new", "/console/events"):
        html = await page(client, path)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html, path
        assert "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


async def add_endpoint(client: TestClient[Any, Any], csrf: str, **fields: str) -> Any:
    form = {
        "csrf_token": csrf,
        "url": "https://example.com/hook",
        "description": "",
        "event_types_other": "*",
        "signing": "",  # the form's default: automatic
        **fields,
    }
    return await client.post("/console/endpoints", data=form, allow_redirects=False)


async def test_add_endpoint_shows_the_secret_once_and_escapes_the_description(app: Any) -> None:
    client, _ = app
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf, description=HOSTILE)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert "whsec_" not in location
    first = await page(client, location)
    secret = re.search(r'id="secret-value" readonly value="(whsec_[^"]+)"', first)
    assert secret, first
    assert HOSTILE not in first
    assert "&lt;img src=x onerror=alert(1)&gt;" in first
    second = await page(client, location)
    assert secret.group(1) not in second
    assert "secret-dialog" not in second
    listing = await page(client, "/console/endpoints")
    assert HOSTILE not in listing
    assert "&lt;img src=x" in listing


async def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(app: Any) -> None:
    client, _ = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    assert (await add_endpoint(client, "")).status == 403
    assert (await add_endpoint(client, "wrong" + csrf)).status == 403
    resp = await client.post(
        "/console/endpoints",
        data={"csrf_token": csrf, "url": "https://example.com/h", "event_types_other": "*"},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )
    assert resp.status == 403
    assert (await add_endpoint(client, csrf)).status == 303


async def test_a_form_error_names_the_field_and_keeps_the_input(app: Any) -> None:
    client, _ = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf, url="ftp://example.com/x", description="kept")
    html = await resp.text()
    assert resp.status == 422
    assert "`url`" in html
    assert 'value="kept"' in html


async def test_one_tenant_cannot_reach_another_by_editing_urls_or_fields(app: Any) -> None:
    client, pipeline = app
    beta = await tenant_token(client, "beta")
    resp = await client.post(
        "/v1/subscriptions",
        json={"url": "https://example.com/b", "event_types": ["*"]},
        headers=bearer(beta),
    )
    theirs = (await resp.json())["id"]
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    for path in (f"/console/endpoints/{theirs}", f"/console/endpoints/{theirs}/verify"):
        await page(client, path, status=404)
    for action in ("disable", "enable", "rotate"):
        resp = await client.post(
            f"/console/endpoints/{theirs}/{action}", data={"csrf_token": csrf, "reason": "x"}
        )
        assert resp.status == 404, action
    resp = await client.post(f"/console/endpoints/{theirs}/test", headers={"X-CSRF-Token": csrf})
    assert resp.status == 404
    assert "example.com/b" not in await page(client, "/console/endpoints")
    await page(client, "/console/endpoints?tenant=beta", status=422)
    await page(client, "/console/dlq?tenant=beta", status=422)
    resp = await add_endpoint(client, csrf, tenant="beta")
    assert resp.status == 422  # a form field naming another tenant is refused too
    assert pipeline.subscriptions.get(theirs).enabled
    for operator_page in ("/console/live", "/console/tenants"):
        await page(client, operator_page, status=404)


def nav_links(html: str) -> dict[str, str]:
    """The main navigation's links: their words -> where they go."""
    found = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S)
    assert found, html[:500]
    return {
        words: href.replace("&amp;", "&")
        for href, words in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', found.group(1))
    }


def nav_of(tenant: str | None, *, admin: bool) -> dict[str, str]:
    """The nav links a page should show: the operator's keep the tenant viewed."""
    kept = f"?tenant={tenant}" if tenant else ""
    operator = {"Live": "/console/live", "Tenants": "/console/tenants"} if admin else {}
    return {
        **operator,
        "Endpoints": f"/console/endpoints{kept}",
        "Delivery log": f"/console/deliveries{kept}",
        "Dead letters": f"/console/dlq{kept}",
        "Event catalog": f"/console/events{kept}",
    }


async def test_an_error_page_keeps_the_tenant_the_operator_views_and_a_tenants_never(
    app: Any,
) -> None:
    client, _ = app
    operator, acme = ADMIN, await tenant_token(client, "acme")
    for session, path, status, nav in (
        # The middleware's error page, and the endpoint list's own (an unknown state).
        (operator, "/console/endpoints/sub_nope?tenant=acme", 404, nav_of("acme", admin=True)),
        (operator, "/console/endpoints?tenant=acme&state=no", 400, nav_of("acme", admin=True)),
        (operator, "/console/endpoints/sub_nope", 404, nav_of(None, admin=True)),
        # A tenant's session: another tenant in the URL never reaches its links.
        (acme, "/console/endpoints/sub_nope?tenant=beta", 404, nav_of(None, admin=False)),
        (acme, "/console/endpoints?tenant=beta", 422, nav_of(None, admin=False)),
    ):
        await sign_in(client, await link(client, session))
        shown = await page(client, path, status=status)
        assert nav_links(shown) == nav, path
        header = shown.split("<main")[0]
        viewing = "tenant=acme" in path and session == operator
        assert ("viewing tenant <strong>acme</strong>" in header) == viewing, path
        assert "beta" not in header, path


async def test_logout_ends_the_session_for_every_worker(app: Any) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints"))
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))
    value = cookie[security.SESSION_COOKIE].value
    resp = await client.post("/console/logout", data={"csrf_token": csrf})
    assert resp.status == 200
    assert any(topic == pipeline.names.tokens for topic, *_ in pipeline.sent)
    again = await client.get("/console/endpoints", cookies={security.SESSION_COOKIE: value})
    assert again.status == 401


async def test_the_operator_signs_in_with_the_admin_token(app: Any) -> None:
    client, _ = app
    form = await page(client, "/console/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', form)
    assert token
    wrong = await client.post(
        "/console/signin", data={"signin_token": token.group(1), "admin_token": "nope"}
    )
    assert wrong.status == 401
    form = await page(client, "/console/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', form)
    assert token
    missing = await client.post("/console/signin", data={"admin_token": ADMIN})
    assert missing.status == 403
    resp = await client.post(
        "/console/signin",
        data={"signin_token": token.group(1), "admin_token": ADMIN},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert "Operator" in await page(client, "/console/tenants")


async def test_embedded_links_set_a_partitioned_cookie(app: Any) -> None:
    client, _ = app
    resp = await client.get(await link(client, tenant_id="acme", embed=True), allow_redirects=False)
    cookie = resp.headers["Set-Cookie"]
    for attribute in ("SameSite=None", "Secure", "Partitioned", "HttpOnly"):
        assert attribute in cookie


async def test_event_types_api_lists_the_catalog(app: Any) -> None:
    client, pipeline = app
    resp = await client.get("/v1/event-types", headers=bearer())
    data = (await resp.json())["data"]
    names = [row["type"] for row in data]
    assert set(pipeline.registry.event_types) <= set(names)
    first = next(r for r in data if r["type"] == pipeline.registry.event_types[0])
    assert first["schema"] == pipeline.registry.schemas[first["type"]]
    assert first["example"] == pipeline.registry.sample(first["type"])


# -- sign-in links from the command line and the demo ---------------------------------


def cli_run(client: TestClient[Any, Any], token: str, *args: str) -> Result:
    """``streams <args>`` in-process, calling this app's real API with ``token``."""
    env = {
        "STREAMS_API_URL": str(client.make_url("")).rstrip("/"),
        "STREAMS_API_TOKEN": token,
        "STREAMS_ADMIN_TOKEN": None,
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def local_path(client: TestClient[Any, Any], url: str) -> str:
    """The path of a link the API built on the address it was called at (this server's)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == str(client.make_url("")).rstrip("/"), url
    assert parts.path.startswith("/console/login/"), url
    return parts.path


async def open_printed_link(client: TestClient[Any, Any], stdout: str) -> None:
    url = next(line for line in stdout.splitlines() if "/console/login/" in line)
    await sign_in(client, local_path(client, url.rpartition(" ")[2]))


async def test_console_link_prints_a_link_that_signs_in_to_the_tenants_console(app: Any) -> None:
    client, _ = app
    result = await asyncio.to_thread(cli_run, client, ADMIN, "console", "link", "--tenant", "acme")
    assert result.exit_code == 0, result.output
    first, url = result.stdout.splitlines()
    assert first.startswith("Sign-in link to the console of tenant acme: it opens once, within 10 ")
    assert "/console/login/" in url
    await open_printed_link(client, result.stdout)
    html = await page(client, "/console/endpoints")
    assert "Tenant <strong>acme</strong>" in html
    await page(client, "/console/tenants", status=404)  # a tenant's, not the operator's


async def test_console_link_operator_opens_the_operators_console(app: Any) -> None:
    client, _ = app
    result = await asyncio.to_thread(cli_run, client, ADMIN, "console", "link", "--operator")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Sign-in link to the operator's console")
    await open_printed_link(client, result.stdout)
    assert "Operator" in await page(client, "/console/tenants")


async def test_console_link_embed_sets_a_partitioned_cookie_and_says_what_to_allow(
    app: Any,
) -> None:
    client, _ = app
    token = await tenant_token(client, "acme")
    result = await asyncio.to_thread(
        cli_run, client, token, "console", "link", "--tenant", "acme", "--embed", "--json"
    )
    assert result.exit_code == 0, result.output
    answer = orjson.loads(result.stdout)
    assert (answer["tenant_id"], answer["operator"], answer["embed"]) == ("acme", False, True)
    resp = await client.get(answer["path"], allow_redirects=False)
    assert "Partitioned" in resp.headers["Set-Cookie"]
    shown = await asyncio.to_thread(
        cli_run, client, token, "console", "link", "--tenant", "acme", "--embed"
    )
    assert "STREAMS_CONSOLE_FRAME_ANCESTORS" in shown.stdout


async def test_console_link_refusals_are_one_line_and_print_no_link(app: Any) -> None:
    client, _ = app
    token = await tenant_token(client, "acme")
    cases = [
        ((token, "--operator"), 1, "the operator's link needs the admin token"),
        ((token, "--tenant", "beta"), 1, "error: "),
        ((ADMIN, "--tenant", "bad tenant!"), 1, "tenant_id"),
        (("not-a-token", "--tenant", "acme"), 1, "refused the token"),
        ((ADMIN,), 2, "give either --tenant ID or --operator"),
        ((ADMIN, "--operator", "--tenant", "acme"), 2, "give either --tenant ID or --operator"),
    ]
    for (who, *args), code, says in cases:
        result = await asyncio.to_thread(cli_run, client, who, "console", "link", *args)
        assert result.exit_code == code, (args, result.output)
        assert says in result.stderr, (args, result.stderr)
        assert "/console/login/" not in result.output, args
        assert token not in result.output


async def test_the_demo_prints_an_operator_link_and_a_tenant_link_that_open(app: Any) -> None:
    client, _ = app
    http = httpx.Client(base_url=str(client.make_url("")), headers=bearer(), timeout=10)
    with http:
        lines = await asyncio.to_thread(console_links, http, Path(".streams/demo"))
    assert lines[0].startswith("console, operator: http://")
    assert lines[1].startswith("console, tenant demo: http://")
    assert "STREAMS_STATE_DIR=.streams/demo streams console link --operator" in lines[2]
    await sign_in(client, local_path(client, lines[0].rpartition(" ")[2]))
    assert "Operator" in await page(client, "/console/tenants")
    client.session.cookie_jar.clear()
    await sign_in(client, local_path(client, lines[1].rpartition(" ")[2]))
    assert "Tenant <strong>demo</strong>" in await page(client, "/console/endpoints")


async def test_the_demo_says_which_link_failed(app: Any) -> None:
    client, _ = app
    http = httpx.Client(base_url=str(client.make_url("")), headers=bearer("wrong"), timeout=10)
    with http, pytest.raises(StreamsError, match=r"console link \(operator\) failed"):
        await asyncio.to_thread(console_links, http, Path(".streams/demo"))


# -- the add-endpoint form: chat destinations and the API's detected defaults ----------

SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/slackSecretPart0123456789"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
TELEGRAM_URL = f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage"


def test_the_form_leaves_automatic_choices_to_the_api() -> None:
    form = {
        "url": " https://h.example/x ",
        "description": "d",
        "event_types_other": "prospect.*, ",
        "signing": "",
        "body_format": "",
        "chat_id": " ",
        "retry_schedule": "default",
        "headers": "X-A: 1\n\nX-B:two",
    }
    assert ConsolePages.create_body(form, ["alert.fired", ""]) == {
        "url": "https://h.example/x",
        "description": "d",
        "event_types": ["alert.fired", "prospect.*"],
        "headers": {"X-A": "1", "X-B": "two"},
        "retry_schedule": "default",
    }
    chosen = {**form, "signing": "none", "body_format": "telegram", "chat_id": " -100123 "}
    body = ConsolePages.create_body(chosen, [])
    assert (body["signing"], body["body_format"], body["chat_id"]) == (
        "none",
        "telegram",
        "-100123",
    )
    # An unknown value is passed on, for the API to name (not dropped silently).
    assert ConsolePages.create_body({**form, "body_format": "xml"}, [])["body_format"] == "xml"


async def test_the_form_offers_every_body_format_and_signing_profile_with_automatic_first(
    app: Any,
) -> None:
    client, _ = app
    await sign_in(client, await link(client, tenant_id="acme"))
    html = await page(client, "/console/endpoints/new")
    for select, offered in (("signing", PROFILES), ("body_format", BODY_FORMATS)):
        block = html[html.index(f'<select id="{select}"') :]
        block = block[: block.index("</select>")]
        values = re.findall(r'<option value="([^"]*)"', block)
        assert values == ["", *offered], select
        assert re.search(r'<option value="" selected>automatic</option>', block), select
    assert 'name="chat_id"' in html
    assert '<label for="chat_id">Telegram chat id</label>' in html


async def test_a_slack_url_on_automatic_gets_slack_messages_unsigned_and_says_so_once(
    app: Any,
) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf, url=SLACK_URL)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    sub = pipeline.subscriptions.get(location.rpartition("/")[2])
    assert (sub.body_format, sub.signing, sub.secrets) == ("slack", "none", [])
    first = await page(client, location)
    note = re.search(r'<p class="notice" role="status" id="detected">([^<]+)</p>', first)
    assert note, first
    assert note.group(1) == (
        "The URL is a Slack incoming webhook: body_format slack, signing none chosen for it "
        "(give them explicitly to choose otherwise)."
    )
    assert "secret-dialog" not in first  # unsigned: no secret to show
    assert "Rotate secret" not in first
    assert "none: requests are not signed" in first
    assert "slackSecretPart" not in first  # the URL's credential is shown masked
    assert 'id="detected"' not in await page(client, location)
    verify = await page(client, location + "/verify")
    assert "are not signed" in verify


async def test_a_telegram_url_takes_its_chat_id_and_a_missing_one_is_named(app: Any) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    missing = await add_endpoint(client, csrf, url=TELEGRAM_URL, description="kept")
    html = await missing.text()
    assert missing.status == 422
    assert "`chat_id`" in html
    assert re.search(r'<input id="chat_id"[^>]*aria-invalid="true"', html)
    assert 'value="kept"' in html
    assert TELEGRAM_TOKEN not in html.replace(f'value="{TELEGRAM_URL}"', "")
    resp = await add_endpoint(client, csrf, url=TELEGRAM_URL, chat_id="-1001234567890")
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    sub = pipeline.subscriptions.get(location.rpartition("/")[2])
    assert (sub.body_format, sub.signing, sub.chat_id) == ("telegram", "none", "-1001234567890")
    shown = await page(client, location)
    assert "Telegram&#39;s Bot API" in shown or "Telegram's Bot API" in shown
    assert "<code>-1001234567890</code>" in shown
    assert TELEGRAM_TOKEN not in shown
    assert TELEGRAM_TOKEN not in await page(client, "/console/endpoints")
    # The list's search reads the URL as shown (masked): the token is never matched.
    assert f'data-endpoint="{sub.id}"' in await page(client, "/console/endpoints?q=telegram")
    searched = await page(client, "/console/endpoints?q=" + TELEGRAM_TOKEN[-12:])
    assert "No endpoints match the filter" in searched
    assert f'data-endpoint="{sub.id}"' not in searched


async def test_an_explicit_choice_wins_over_the_detected_default(app: Any) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(
        client, csrf, url=SLACK_URL, signing="standard", body_format="envelope"
    )
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    sub = pipeline.subscriptions.get(location.rpartition("/")[2])
    assert (sub.body_format, sub.signing) == ("envelope", "standard")
    shown = await page(client, location)
    assert "secret-dialog" in shown  # signed: its secret, once
    assert "body_format and signing as given" in shown
    wrong = await add_endpoint(client, csrf, body_format="xml")
    assert wrong.status == 422
    assert re.search(r'<select id="body_format"[^>]*aria-invalid="true"', await wrong.text())


# -- the console goes through the same header and quota rules as the API ---------------

HEADER_VALUE = "k-console-secret-123"


async def test_headers_added_in_the_console_are_sealed_and_shown_masked(app: Any) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf, headers=f"X-Api-Key: {HEADER_VALUE}")
    assert resp.status == 303, await resp.text()
    [sub] = pipeline.subscriptions.all(tenant_id="acme")
    assert sub.headers == {}
    assert list(sub.secret_headers or {}) == ["X-Api-Key"]
    assert HEADER_VALUE.encode() not in sub.to_bytes()
    html = await page(client, resp.headers["Location"])
    assert HEADER_VALUE not in html
    assert "X-Api-Key: ********" in html
    assert "(secret)" in html


async def test_a_pre_encryption_record_is_shown_masked_in_the_console(app: Any) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf)
    [sub] = pipeline.subscriptions.all(tenant_id="acme")
    old = orjson.loads(sub.to_bytes())
    del old["secret_headers"]  # as written before values were encrypted: clear, all secret
    old["headers"] = {"X-Api-Key": HEADER_VALUE}
    pipeline.subscriptions.apply(sub.id, orjson.dumps(old))
    html = await page(client, resp.headers["Location"])
    assert HEADER_VALUE not in html
    assert "X-Api-Key: ********" in html


async def walk_log(
    client: Any, path: str | None, each: Callable[[str], bool] = lambda _: True
) -> tuple[list[str], list[int]]:
    """Every delivery id listed by the delivery log from ``path`` on, following *Older
    deliveries* (at most 10 pages), and the size of each page; ``each`` must hold for
    every page."""
    seen: list[str] = []
    sizes: list[int] = []
    for _ in range(10):  # bounded: a few pages are expected
        if path is None:
            break
        text = await page(client, path)
        assert each(text), path
        found = re.findall(r'<tr data-delivery="([^"]+)">', text)
        seen += found
        sizes.append(len(found))
        older = re.search(r'<a href="([^"]+)" rel="next">Older deliveries</a>', text)
        path = html.unescape(older.group(1)) if older else None
    return seen, sizes


def sent_delivery(
    monkeypatch: pytest.MonkeyPatch,
    sub_id: str,
    delivery_id: str,
    event_type: str,
    body: str,
    outcome: str,
    status: int | None = None,
) -> Attempt:
    """A delivery of tenant acme at deliveries offset 5 (read back by the page through
    ``read_at``) and its one attempt."""
    delivery = Delivery(
        delivery_id=delivery_id,
        event_id=f"evt_{delivery_id}",
        event_type=event_type,
        tenant_id="acme",
        subscription_id=sub_id,
        body=body,
    )
    monkeypatch.setattr(pages, "read_at", lambda *_: Located(0, 5, 0, None, delivery.to_bytes()))
    return Attempt(
        delivery_id=delivery_id,
        event_id=delivery.event_id,
        event_type=event_type,
        tenant_id="acme",
        subscription_id=sub_id,
        attempt=1,
        at=time.time(),
        duration_ms=1.0,
        outcome=outcome,
        status=status,
        source_topic="deliveries",
        source_partition=0,
        source_offset=5,
    )


async def test_the_request_sent_shows_secret_header_values_masked(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pipeline = app
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    await add_endpoint(client, csrf, headers=f"X-Api-Key: {HEADER_VALUE}")
    [sub] = pipeline.subscriptions.all(tenant_id="acme")
    attempt = sent_delivery(monkeypatch, sub.id, "dlv_1", "prospect.added", "{}", "delivered")
    sent, _ = await pipeline.extras["console"]._request_sent([attempt])
    assert sent is not None
    assert sent["headers"]["X-Api-Key"] == "********"
    assert HEADER_VALUE not in str(sent)


async def test_the_subscription_quota_applies_to_creates_in_the_console(app: Any) -> None:
    client, pipeline = app
    pipeline.settings = dataclasses.replace(pipeline.settings, tenant_max_subscriptions=1)
    await sign_in(client, await link(client, tenant_id="acme"))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    assert (await add_endpoint(client, csrf)).status == 303
    resp = await add_endpoint(client, csrf, description="second")
    html = await resp.text()
    assert resp.status == 409, html[:2000]
    assert "STREAMS_TENANT_MAX_SUBSCRIPTIONS=1" in html
    assert 'value="second"' in html  # the form keeps what was typed
    assert len(list(pipeline.subscriptions.all(tenant_id="acme"))) == 1


# -- the delivery log pages page with the store's cursor --------------------------------


def logged(n: int, tenant: str, at: float) -> bytes:
    return Attempt(
        delivery_id=f"msg_{tenant}_{n:03d}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id=tenant,
        subscription_id=f"sub_{tenant}",
        attempt=1,
        at=at,
        duration_ms=1.0,
        outcome="delivered",
        status=200,
    ).to_bytes()


async def test_the_log_pages_neither_skip_nor_repeat_deliveries_sharing_a_time(
    log_app: Any,
) -> None:
    """120 deliveries in one second, the next page's link followed as a person would:
    each exactly once (a time bound as the cursor skipped or repeated them)."""
    client, pipeline = log_app
    at = 1_800_000_000.0
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    records = [(0, n, logged(n, "acme", at)) for n in range(120)]
    records += [(1, n, logged(n, "other", at)) for n in range(30)]
    writer.write(records)
    writer.close()
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    seen, sizes = await walk_log(client, "/console/deliveries")
    assert sizes == [50, 50, 20]
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == {f"msg_acme_{n:03d}" for n in range(120)}


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> FakeReplays:
    """Replays that walk 1,000 pretend letters without Kafka (tests/unit/test_replays.py)."""
    walker = FakeReplays()
    monkeypatch.setattr(replays_module.dlq, "replay", walker)
    monkeypatch.setattr(replays_module.dlq, "load_summary", lambda *a, **kw: None)

    async def no_letters(self: Any, who: Any, query: Any) -> list[Any]:
        return []  # the dead-letters list reads Kafka; these tests need the replays alone

    monkeypatch.setattr(DeliveryRoutes, "dlq_list_for", no_letters)
    return walker


async def test_a_replay_is_cancelled_and_resumed_from_the_console_by_whoever_may_see_it(
    app: Any, replays: FakeReplays
) -> None:
    client, _ = app
    acme = await tenant_token(client, "acme")
    resp = await client.post("/v1/dlq/replay", json={"rate": 1}, headers=bearer(acme))
    assert resp.status == 202, await resp.text()
    replay_id = (await resp.json())["replay_id"]
    await asyncio.sleep(0.05)
    # Another tenant sees neither the replay nor a way to cancel it.
    await sign_in(client, await link(client, await tenant_token(client, "beta")))
    html = await page(client, "/console/dlq")
    assert replay_id not in html
    resp = await client.post(
        f"/console/dlq/replays/{replay_id}/cancel", data={"csrf_token": csrf_of(html)}
    )
    assert resp.status == 404
    # Acme's console lists it running, with a Cancel button that needs the CSRF token.
    await sign_in(client, await link(client, acme))
    html = await page(client, "/console/dlq")
    assert f'action="/console/dlq/replays/{replay_id}/cancel"' in html
    resp = await client.post(f"/console/dlq/replays/{replay_id}/cancel", data={})
    assert resp.status == 403
    resp = await client.post(
        f"/console/dlq/replays/{replay_id}/cancel",
        data={"csrf_token": csrf_of(html)},
        allow_redirects=False,
    )
    assert resp.status == 303
    html = await page(client, resp.headers["Location"])
    assert f"Replay {replay_id} cancelled" in html
    assert "of 1000 sent" in html
    assert f'action="/console/dlq/replays/{replay_id}/resume"' in html
    assert f'action="/console/dlq/replays/{replay_id}/cancel"' not in html
    # Cancelling again says why not; Resume runs it again under its id.
    resp = await client.post(
        f"/console/dlq/replays/{replay_id}/cancel", data={"csrf_token": csrf_of(html)}
    )
    assert "Not cancelled: replay" in await resp.text()
    resp = await client.post(
        f"/console/dlq/replays/{replay_id}/resume", data={"csrf_token": csrf_of(html)}
    )
    html = await resp.text()
    assert f"Replay {replay_id} resumed where it stopped." in html
    assert replays.calls[-1]["resume"] is True
    await delivery_routes(client).replays.stop_all(timeout_s=5)


# -- edit and delete an endpoint: PATCH and DELETE /v1/subscriptions/{id} ---------------


async def acme_endpoint(client: TestClient[Any, Any], pipeline: Any, **fields: str) -> Any:
    """A signed-in acme session and one endpoint of acme's, added with the console's form."""
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(client, csrf, **fields)
    assert resp.status == 303, await resp.text()
    return pipeline.subscriptions.get(resp.headers["Location"].rpartition("/")[2])


async def api_endpoint(client: TestClient[Any, Any], pipeline: Any, tenant: str, url: str) -> Any:
    """An endpoint of ``tenant``'s, added through the API with that tenant's token."""
    resp = await client.post(
        "/v1/subscriptions",
        json={"url": url, "event_types": ["*"]},
        headers=bearer(await tenant_token(client, tenant)),
    )
    return pipeline.subscriptions.get((await resp.json())["id"])


def edit_form(csrf: str, sub: Any, **fields: Any) -> dict[str, Any]:
    """The edit form as the browser posts it unchanged, with ``fields`` changed."""
    return {
        "csrf_token": csrf,
        "url": sub.url,
        "description": sub.description,
        "event_types_other": ", ".join(sub.event_types),
        "body_format": sub.body_format,
        "chat_id": sub.chat_id or "",
        "retry_schedule": "default",
        "headers": "",
        **fields,
    }


async def test_edit_is_prefilled_without_secrets_and_saves_what_changed(app: Any) -> None:
    client, pipeline = app
    sub = await acme_endpoint(
        client, pipeline, description="old words", headers=f"X-Api-Key: {HEADER_VALUE}"
    )
    shown = await page(client, f"/console/endpoints/{sub.id}")
    assert f'href="/console/endpoints/{sub.id}/edit"' in shown  # the Edit button
    form = await page(client, f"/console/endpoints/{sub.id}/edit")
    assert 'value="old words"' in form
    assert 'name="event_types_other" value="*"' in form
    assert HEADER_VALUE not in form
    assert "whsec_" not in form
    assert 'name="remove_header" value="X-Api-Key"' in form
    assert 'name="signing"' not in form  # PATCH cannot change it: not offered
    assert not re.search(r"\son[a-z]+=|<style| style=", form)
    written = len(pipeline.written(pipeline.names.subscriptions))

    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit",
        data={
            **edit_form(csrf_of(form), sub),
            "description": "new words",
            "event_types": "alert.fired",
            "event_types_other": "prospect.*",
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(f"/console/endpoints/{sub.id}?notice=")
    after = pipeline.subscriptions.get(sub.id)
    assert after.description == "new words"
    assert after.event_types == ["alert.fired", "prospect.*"]
    assert (after.url, after.signing, after.secrets) == (sub.url, sub.signing, sub.secrets)
    assert after.secret_headers == sub.secret_headers  # untouched: not sent in the PATCH
    assert after.version == sub.version + 1
    assert len(pipeline.written(pipeline.names.subscriptions)) == written + 1
    shown = await page(client, location)
    assert "Saved: description; event types now alert.fired, prospect.*." in shown
    assert '<p class="description">new words</p>' in shown

    # Unchanged: nothing written; a header removed keeps the others' stored values.
    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit",
        data=edit_form(csrf_of(shown), after),
        allow_redirects=False,
    )
    assert "Nothing+changed" in resp.headers["Location"]
    assert len(pipeline.written(pipeline.names.subscriptions)) == written + 1
    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit",
        data={**edit_form(csrf_of(shown), after), "headers": "X-Team: growth"},
        allow_redirects=False,
    )
    kept = pipeline.subscriptions.get(sub.id)
    assert pipeline.box.decrypt_text(kept.secret_headers["X-Api-Key"], what="h") == HEADER_VALUE
    assert set(kept.secret_headers) == {"X-Api-Key", "X-Team"}
    assert "custom headers (set X-Team)" in await page(client, resp.headers["Location"])
    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit",
        data={**edit_form(csrf_of(shown), kept), "remove_header": "X-Api-Key"},
        allow_redirects=False,
    )
    assert set(pipeline.subscriptions.get(sub.id).secret_headers) == {"X-Team"}
    assert "removed X-Api-Key" in await page(client, resp.headers["Location"])


async def test_edit_refuses_what_patch_refuses_with_its_message_and_keeps_the_input(
    app: Any,
) -> None:
    client, pipeline = app
    sub = await acme_endpoint(client, pipeline, description="before")
    form = await page(client, f"/console/endpoints/{sub.id}/edit")
    hostile = "https://169.254.169.254/latest/meta-data"
    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit",
        data={**edit_form(csrf_of(form), sub), "url": hostile, "description": "typed"},
    )
    html_text = await resp.text()
    assert resp.status == 422
    # The API answers the same body with the same words.
    token = await tenant_token(client, "acme")
    api = await client.patch(
        f"/v1/subscriptions/{sub.id}",
        json={"url": hostile, "description": "typed"},
        headers=bearer(token),
    )
    message = (await api.json())["error"]["message"]
    assert api.status == 422
    assert "cloud metadata address" in message
    error = re.search(r'<p class="error" role="alert" id="form-error">([^<]+)</p>', html_text)
    assert error
    assert html.unescape(error.group(1)) == message
    assert f'value="{hostile}"' in html_text
    assert 'value="typed"' in html_text
    assert re.search(r'<input id="url"[^>]*aria-invalid="true"', html_text)
    assert pipeline.subscriptions.get(sub.id) == sub  # nothing written
    for fields, field in (
        ({"event_types_other": "bad pattern!"}, "event_types"),
        ({"event_types_other": ""}, "event_types"),
        ({"body_format": "telegram"}, "chat_id"),
        ({"headers": "Webhook-Id: mine"}, "headers"),
    ):
        resp = await client.post(
            f"/console/endpoints/{sub.id}/edit", data={**edit_form(csrf_of(form), sub), **fields}
        )
        assert resp.status == 422, fields
        assert f"`{field}" in await resp.text(), fields
    assert pipeline.subscriptions.get(sub.id) == sub


async def test_one_tenant_cannot_edit_or_delete_anothers_endpoint(app: Any) -> None:
    client, pipeline = app
    theirs = await api_endpoint(client, pipeline, "beta", "https://example.com/b")
    await acme_endpoint(client, pipeline)
    csrf = csrf_of(await page(client, "/console/endpoints"))
    for path in (f"/console/endpoints/{theirs.id}/edit", f"/console/endpoints/{theirs.id}/delete"):
        await page(client, path, status=404)
    resp = await client.post(
        f"/console/endpoints/{theirs.id}/edit",
        data={**edit_form(csrf, theirs), "description": "taken over", "tenant": "acme"},
    )
    assert resp.status == 404
    resp = await client.post(f"/console/endpoints/{theirs.id}/delete", data={"csrf_token": csrf})
    assert resp.status == 404
    assert pipeline.subscriptions.get(theirs.id) == theirs


async def test_edit_and_delete_need_the_csrf_token(app: Any) -> None:
    client, pipeline = app
    sub = await acme_endpoint(client, pipeline)
    form = edit_form("", sub, description="changed")
    for data in (form, {**form, "csrf_token": "wrong"}):
        resp = await client.post(f"/console/endpoints/{sub.id}/edit", data=data)
        assert resp.status == 403
        resp = await client.post(
            f"/console/endpoints/{sub.id}/delete", data={"csrf_token": data["csrf_token"]}
        )
        assert resp.status == 403
    assert pipeline.subscriptions.get(sub.id) == sub


async def test_delete_asks_first_says_what_happens_and_goes_back_to_the_list(app: Any) -> None:
    client, pipeline = app
    sub = await acme_endpoint(client, pipeline, description="to be deleted")
    shown = await page(client, f"/console/endpoints/{sub.id}")
    assert f'href="/console/endpoints/{sub.id}/delete"' in shown
    confirm = await page(client, f"/console/endpoints/{sub.id}/delete")
    assert pipeline.subscriptions.get(sub.id) is not None  # the GET deletes nothing
    assert "subscription_deleted" in confirm
    assert "cannot be undone" in confirm
    assert f'action="/console/endpoints/{sub.id}/delete"' in confirm
    resp = await client.post(
        f"/console/endpoints/{sub.id}/delete",
        data={"csrf_token": csrf_of(confirm)},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/endpoints?notice=")
    assert pipeline.subscriptions.get(sub.id) is None
    assert pipeline.written(pipeline.names.subscriptions)[-1] is None  # the API's tombstone
    listing = await page(client, resp.headers["Location"])
    assert f"Endpoint https://example.com/hook ({sub.id}) deleted." in listing
    assert f'data-endpoint="{sub.id}"' not in listing
    await page(client, f"/console/endpoints/{sub.id}", status=404)


async def test_the_operator_edits_and_deletes_a_tenants_endpoint_keeping_the_tenant(
    app: Any,
) -> None:
    client, pipeline = app
    sub = await api_endpoint(client, pipeline, "acme", "https://example.com/a")
    await sign_in(client, await link(client))
    shown = await page(client, f"/console/endpoints/{sub.id}?tenant=acme")
    assert f'href="/console/endpoints/{sub.id}/edit?tenant=acme"' in shown
    form = await page(client, f"/console/endpoints/{sub.id}/edit?tenant=acme")
    assert f'action="/console/endpoints/{sub.id}/edit?tenant=acme"' in form
    resp = await client.post(
        f"/console/endpoints/{sub.id}/edit?tenant=acme",
        data=edit_form(csrf_of(form), sub, description="by the operator"),
        allow_redirects=False,
    )
    assert resp.headers["Location"].startswith(f"/console/endpoints/{sub.id}?notice=")
    assert resp.headers["Location"].endswith("&tenant=acme")
    assert pipeline.subscriptions.get(sub.id).description == "by the operator"
    resp = await client.post(
        f"/console/endpoints/{sub.id}/delete?tenant=acme",
        data={"csrf_token": csrf_of(form)},
        allow_redirects=False,
    )
    assert resp.headers["Location"].endswith("&tenant=acme")
    assert pipeline.subscriptions.get(sub.id) is None


# -- the endpoint page's statistics: GET /v1/subscriptions/{id}/stats ---------------------


def attempt_of(
    sub_id: str, n: int, at: float, outcome: str, status: int | None, ms: float
) -> bytes:
    return Attempt(
        delivery_id=f"msg_{n:03d}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id=sub_id,
        attempt=1,
        at=at,
        duration_ms=ms,
        outcome=outcome,
        status=status,
        error=None if status == 200 else "connection refused" if status is None else None,
    ).to_bytes()


async def test_the_endpoint_page_shows_the_stats_the_api_answers(log_app: Any) -> None:
    client, pipeline = log_app
    sub = await acme_endpoint(client, pipeline)
    now = time.time()
    records = [attempt_of(sub.id, n, now - 120, "delivered", 200, 40.0) for n in range(6)]
    records += [attempt_of(sub.id, 6, now - 90, "retry", 503, 900.0)]
    records += [attempt_of(sub.id, 7, now - 60, "give_up", None, 5.0)]
    # Two days ago: in the 7 days only.
    records += [
        attempt_of(sub.id, 8 + n, now - 2 * 86400, "delivered", 200, 40.0) for n in range(2)
    ]
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, n, value) for n, value in enumerate(records)])
    writer.close()
    token = await tenant_token(client, "acme")
    api = await client.get(f"/v1/subscriptions/{sub.id}/stats", headers=bearer(token))
    windows = (await api.json())["windows"]
    assert (windows["1h"]["attempts"], windows["7d"]["attempts"]) == (8, 10)

    shown = await page(client, f"/console/endpoints/{sub.id}")

    def cell(name: str) -> str:
        found = re.search(rf'<td class="num" id="{name}">(.*?)</td>', shown, re.S)
        assert found, name
        return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))).strip()

    for key in ("1h", "24h"):
        assert cell(f"attempts-{key}") == "8"
        assert cell(f"rate-{key}") == "75.0%"
        assert cell(f"delivered-{key}") == "6"
        assert cell(f"retried-{key}") == "1"
        assert cell(f"failed-{key}") == "1"
        assert cell(f"classes-{key}") == "2xx: 6 · 5xx: 1 · error: 1"
        p50, p99 = windows[key]["latency_ms"]["p50"], windows[key]["latency_ms"]["p99"]
        assert cell(f"latency-{key}") == f"{p50:.0f} / {p99:.0f} ms"
        assert cell(f"error-{key}").startswith("connection refused")
    assert cell("attempts-7d") == "10"
    assert cell("rate-7d") == "80.0%"


async def test_the_endpoint_page_says_when_stats_are_unavailable(app: Any) -> None:
    client, pipeline = app  # a worker that keeps no delivery log
    sub = await acme_endpoint(client, pipeline)
    shown = await page(client, f"/console/endpoints/{sub.id}")
    assert 'id="stats-error">Statistics unavailable: ' in shown
    assert 'id="attempts-1h"' not in shown


# -- the Test panel sends the event type the user picks -----------------------------------


async def test_the_test_panel_sends_the_picked_event_type_the_endpoint_receives(app: Any) -> None:
    client, pipeline = app
    sub = await acme_endpoint(client, pipeline)  # event types: *
    shown = await page(client, f"/console/endpoints/{sub.id}")
    block = shown[shown.index('<select id="test-type">') :]
    offered = re.findall(r'<option value="([^"]+)">', block[: block.index("</select>")])
    assert offered == pipeline.registry.event_types
    csrf = {"X-CSRF-Token": csrf_of(shown)}
    resp = await client.post(
        f"/console/endpoints/{sub.id}/test", data={"event_type": "prospect.added"}, headers=csrf
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["event_type"] == "prospect.added"
    sent = Delivery.from_bytes(pipeline.written(pipeline.names.deliveries)[-1])
    assert (sent.event_type, sent.subscription_id) == ("prospect.added", sub.id)
    # Without a choice: the first type, as before.
    resp = await client.post(f"/console/endpoints/{sub.id}/test", headers=csrf)
    assert (await resp.json())["event_type"] == pipeline.registry.event_types[0]
    # A type the endpoint does not receive is refused, by the API's own check.
    token = await tenant_token(client, "acme")
    resp = await client.post(
        "/v1/subscriptions",
        json={"url": "https://example.com/only", "event_types": ["alert.fired"]},
        headers=bearer(token),
    )
    only = (await resp.json())["id"]
    assert '<select id="test-type">' not in await page(client, f"/console/endpoints/{only}")
    resp = await client.post(
        f"/console/endpoints/{only}/test", data={"event_type": "prospect.added"}, headers=csrf
    )
    assert resp.status == 422
    assert "alert.fired" in (await resp.json())["error"]
    api = await client.post(
        f"/v1/subscriptions/{only}/test", json={"event_type": "nope"}, headers=bearer(token)
    )
    assert api.status == 422
    assert (await api.json())["error"]["field"] == "event_type"
    before = len(pipeline.written(pipeline.names.deliveries))
    api = await client.post(f"/v1/subscriptions/{only}/test", json={}, headers=bearer(token))
    assert api.status == 202
    assert len(pipeline.written(pipeline.names.deliveries)) == before + 1


# -- find a delivery by its id or its event's id ----------------------------------------


async def test_find_a_delivery_by_its_id_or_its_events_id_within_the_tenant(
    log_app: Any,
) -> None:
    client, pipeline = log_app
    sub = await api_endpoint(client, pipeline, "acme", "https://example.com/a")
    did = delivery_id_for("evt_find_me", sub.id)
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write(
        [
            (
                0,
                0,
                Attempt(
                    delivery_id=did,
                    event_id="evt_find_me",
                    event_type="alert.fired",
                    tenant_id="acme",
                    subscription_id=sub.id,
                    attempt=1,
                    at=1_800_000_000.0,
                    duration_ms=1.0,
                    outcome="delivered",
                    status=200,
                ).to_bytes(),
            )
        ]
    )
    writer.close()
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    shown = await page(client, "/console/deliveries")
    assert 'name="find"' in shown
    for wanted in ("evt_find_me", did, f"  {did} "):
        resp = await client.get(
            "/console/deliveries", params={"find": wanted}, allow_redirects=False
        )
        assert resp.status == 303, wanted
        assert resp.headers["Location"] == f"/console/deliveries/{did}"
    resp = await client.get("/console/deliveries", params={"find": "evt_never_sent"})
    assert resp.status == 404
    text = await resp.text()
    assert "No delivery &#39;evt_never_sent&#39;" in text
    assert 'value="evt_never_sent"' in text  # kept in the box
    # Another tenant finds neither the event nor the delivery id.
    await sign_in(client, await link(client, await tenant_token(client, "beta")))
    for wanted in ("evt_find_me", did):
        resp = await client.get(
            "/console/deliveries", params={"find": wanted}, allow_redirects=False
        )
        assert resp.status == 404, wanted


# -- the endpoint page's recent deliveries: the delivery log's own reads ---------------------


def recent_attempt(sub: Any, n: int, at: float, outcome: str, tenant: str = "acme") -> bytes:
    return Attempt(
        delivery_id=f"msg_{sub.id[-6:]}_{n:03d}",
        event_id=f"evt_{n}",
        event_type="alert.fired" if n % 2 else "prospect.added",
        tenant_id=tenant,
        subscription_id=sub.id,
        attempt=1 if outcome == "delivered" else 3,
        at=at,
        duration_ms=2.0,
        outcome=outcome,
        status=200 if outcome == "delivered" else 503,
        error=None if outcome == "delivered" else "HTTP 503",
    ).to_bytes()


def recent_rows(shown: str) -> list[str]:
    block = shown[shown.index('id="recent"') : shown.index('id="stats"')]
    return re.findall(r'<tr data-delivery="([^"]+)">', block)


async def test_the_endpoint_page_lists_its_recent_deliveries_all_or_failed(
    log_app: Any,
) -> None:
    client, pipeline = log_app
    sub = await api_endpoint(client, pipeline, "acme", "https://example.com/a")
    other = await api_endpoint(client, pipeline, "acme", "https://example.com/b")
    empty = await api_endpoint(client, pipeline, "acme", "https://example.com/c")
    at = 1_800_000_000.0
    outcomes = ["delivered"] * 14
    outcomes[3], outcomes[9], outcomes[12] = "retry", "give_up", "retry"
    records = [recent_attempt(sub, n, at + n, o) for n, o in enumerate(outcomes)]
    records.append(recent_attempt(other, 99, at + 99, "give_up"))  # another endpoint's
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, n, value) for n, value in enumerate(records)])
    writer.close()
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    ids = [f"msg_{sub.id[-6:]}_{n:03d}" for n in range(14)]

    shown = await page(client, f"/console/endpoints/{sub.id}")
    assert recent_rows(shown) == ids[::-1][:10]  # the latest 10, newest first
    assert '<a href="#recent" ' not in shown
    assert f'href="/console/deliveries/{ids[13]}">2027-01-15 08:00:13 UTC</a>' in shown
    assert 'id="recent-tab-all" aria-current="page"' in shown
    assert f'href="/console/deliveries?endpoint={sub.id}" id="recent-log"' in shown

    failed = await page(client, f"/console/endpoints/{sub.id}?recent=failed")
    assert recent_rows(failed) == [ids[12], ids[9], ids[3]]  # retrying or given up
    assert 'id="recent-tab-failed" aria-current="page"' in failed
    log_link = f"/console/deliveries?endpoint={sub.id}&amp;status=undelivered"
    assert f'href="{log_link}" id="recent-log"' in failed
    # The delivery log the link opens lists the same deliveries.
    listed = await page(client, html.unescape(log_link))
    assert re.findall(r'<tr data-delivery="([^"]+)">', listed) == [ids[12], ids[9], ids[3]]

    assert "No deliveries yet." in await page(client, f"/console/endpoints/{empty.id}")
    none_failed = await page(client, f"/console/endpoints/{empty.id}?recent=failed")
    assert "No failed deliveries." in none_failed
    assert recent_rows(none_failed) == []

    # Another tenant: no endpoint page, so no recent deliveries either.
    await sign_in(client, await link(client, await tenant_token(client, "beta")))
    for path in (f"/console/endpoints/{sub.id}", f"/console/endpoints/{sub.id}?recent=failed"):
        gone = await page(client, path, status=404)
        assert ids[13] not in gone
        assert ids[12] not in gone

    # The operator: every link keeps the tenant viewed.
    await sign_in(client, await link(client))
    operator = await page(client, f"/console/endpoints/{sub.id}?tenant=acme&recent=failed")
    assert recent_rows(operator) == [ids[12], ids[9], ids[3]]
    assert f'href="/console/deliveries/{ids[12]}?tenant=acme"' in operator
    assert f'href="/console/endpoints/{sub.id}?tenant=acme#recent" id="recent-tab-all"' in operator
    assert (
        f'href="/console/endpoints/{sub.id}?recent=failed&amp;tenant=acme#recent" '
        'id="recent-tab-failed"'
    ) in operator
    assert f'href="{log_link}&amp;tenant=acme" id="recent-log"' in operator


async def test_the_recent_deliveries_and_the_chart_say_why_when_the_log_is_unavailable(
    app: Any,
) -> None:
    client, pipeline = app  # a worker that keeps no delivery log
    sub = await acme_endpoint(client, pipeline)
    for query in ("", "?recent=failed", "?chart=7d"):
        shown = await page(client, f"/console/endpoints/{sub.id}{query}")
        for panel, says in (("recent", "Recent deliveries"), ("chart", "Chart")):
            assert f'id="{panel}-error">{says} unavailable: ' in shown
            assert "STREAMS_DELIVERY_LOG=off" in shown[shown.index(f'id="{panel}-error"') :]
        for absent in ("No deliveries yet", "No failed deliveries", "No attempts in the last"):
            assert absent not in shown
        assert '<svg class="chart history"' not in shown


async def test_the_log_pages_not_delivered_ones_without_skipping_or_repeating(
    log_app: Any,
) -> None:
    """``undelivered``: retrying and given-up deliveries, sharing times, merged in the
    store's order and paged with its cursor."""
    client, pipeline = log_app
    sub = await api_endpoint(client, pipeline, "acme", "https://example.com/a")
    at = 1_800_000_000.0
    outcomes = ("retry", "give_up", "delivered")
    records = [recent_attempt(sub, n, at + n // 7, outcomes[n % 3]) for n in range(180)]
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, n, value) for n, value in enumerate(records)])
    writer.close()
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    seen, sizes = await walk_log(
        client,
        "/console/deliveries?status=undelivered",
        each=lambda text: '<option value="undelivered" selected>' in text,
    )
    assert sizes == [50, 50, 20]
    wanted = {f"msg_{sub.id[-6:]}_{n:03d}" for n in range(180) if n % 3 != 2}
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == wanted


# -- the delivery page: the body indented, Copy payload, Copy as curl --------------------------


def test_pretty_json_indents_only_whitespace_keeping_order_and_numbers() -> None:
    sent = (
        '{"zeta":1,"alpha":{"b":[1,2,{}],"a":"it\'s {not}, \\"json\\": $(x)"},'
        '"n":1.10,"big":123456789012345678901234567890,"empty":[],"u":"\\u00e9"}'
    )
    shown = pages.pretty_json(sent)
    assert shown is not None
    assert shown.splitlines()[:3] == ["{", '  "zeta": 1,', '  "alpha": {']
    assert '    "a": "it\'s {not}, \\"json\\": $(x)"' in shown.splitlines()
    assert '  "n": 1.10,' in shown
    assert '  "big": 123456789012345678901234567890,' in shown
    assert '  "empty": [],' in shown
    assert "      {}" in shown
    # Only whitespace between tokens was added: taking it out gives the bytes sent.
    compact = re.sub(r'("(?:[^"\\]|\\.)*")|\s+', lambda m: m.group(1) or "", shown)
    assert compact == sent
    for not_json in ("plain text", "{'a': 1}", "", "{"):
        assert pages.pretty_json(not_json) is None
    # Past the cap a JSON body is shown as sent (a page view stays cheap).
    big = '{"a":"' + "x" * pages.PRETTY_MAX_CHARS + '"}'
    assert pages.pretty_json(big) is None
    assert pages.pretty_json(big[: pages.PRETTY_MAX_CHARS - 2] + '"}') is not None


def test_an_endpoints_url_is_shown_whole_or_by_its_host_and_path_end() -> None:
    short = "https://shop.example.com/hooks?a=1&b=2"
    assert pages.short_url(short) == pages.full_url(short) == short
    assert pages.short_url("https://hooks.example.com/services/acme/team-7/orders/created") == (
        "https://hooks.example.com/…/orders/created"
    )
    # The path's end from a "/" where one is near; a long last segment or query: its end.
    assert pages.short_url("https://h.example/" + "x" * 80) == "https://h.example/…" + "x" * 29
    assert pages.short_url("https://h.example/hook?token=" + "t" * 60) == (
        "https://h.example/…" + "t" * 29
    )
    # A very long host keeps its end (the domain), then the path when it fits.
    host = "a" * 60 + ".example.com"
    assert pages.short_url(f"https://{host}/in") == "https://…" + host[-27:] + "/in"
    for url in ("https://h.example/" + "p/" * 100, f"https://{host}/" + "x" * 50):
        assert len(pages.short_url(url)) == pages.URL_SHOWN, url
    # Registration refuses user:password@ (check_url); a record holding one shows none.
    for url in ("https://user:pw@h.example/in", "https://user:pw@h.example/" + "x" * 80):
        for shown in (pages.short_url(url), pages.full_url(url)):
            assert "user" not in shown
            assert "pw" not in shown
    assert pages.full_url("https://user:pw@h.example/in?q=1") == "https://h.example/in?q=1"


def test_an_outcome_is_shown_in_the_status_filters_words() -> None:
    assert pages.outcome_label("delivered") == "delivered"
    assert pages.outcome_label("retry") == "retrying"
    assert pages.outcome_label("give_up") == "failed"
    assert pages.outcome_label("something_new") == "something_new"  # never hidden
    # The words are the filter's: each label is a status word that selects that outcome.
    for outcome, label in pages.OUTCOME_LABELS.items():
        assert STATUS_WORDS[label] == outcome


def test_the_outcome_note_says_what_each_outcome_means() -> None:
    at = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    assert pages.outcome_note("delivered", 204, at) == (
        "Delivered: the endpoint answered 204 at 2027-01-15 08:00:00 UTC."
    )
    retry = pages.outcome_note("retry", None, at)
    assert retry.startswith("Not delivered yet: at the last attempt (2027-01-15 08:00:00 UTC)")
    assert "gave no HTTP answer" in retry
    assert "retry schedule" in retry
    gone = pages.outcome_note("give_up", 503, at)
    assert gone.startswith("Given up:")
    assert "answered 503" in gone
    assert "no more attempts will be made. Redeliver sends it again now." in gone


def test_the_curl_command_quotes_every_value_for_the_shell() -> None:
    body = '{"a":"it\'s $(rm -rf ~) `id` \\n"}'
    headers = {"webhook-signature": "v1,abc=", "X-Note": "a 'quoted' $HOME; rm"}
    command = pages.curl_command("https://example.com/h?a=1&b=2", headers, body)
    argv = shlex.split(command.replace("\\\n", ""))
    assert argv == [
        "curl",
        "-X",
        "POST",
        "https://example.com/h?a=1&b=2",
        "-H",
        "webhook-signature: v1,abc=",
        "-H",
        "X-Note: a 'quoted' $HOME; rm",
        "--data-raw",
        body,
    ]


async def test_the_delivery_page_indents_the_body_and_copies_it_and_curl_without_secrets(
    log_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pipeline = log_app
    token_url = "https://api.telegram.org/bot123456789:AAH-sekret-token-0123456/sendMessage"
    await sign_in(client, await link(client, await tenant_token(client, "acme")))
    csrf = csrf_of(await page(client, "/console/endpoints/new"))
    resp = await add_endpoint(
        client,
        csrf,
        url=token_url,
        chat_id="-100123",
        signing="standard",
        headers=f"X-Api-Key: {HEADER_VALUE}",
    )
    assert resp.status == 303, await resp.text()
    [sub] = pipeline.subscriptions.all(tenant_id="acme")
    body = '{"chat_id":"-100123","text":"it\'s <b>down</b>","n":1.10}'
    attempt = sent_delivery(
        monkeypatch, sub.id, "dlv_pretty", "alert.fired", body, "give_up", status=400
    )
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, 0, attempt.to_bytes())])
    writer.close()

    shown = await page(client, "/console/deliveries/dlv_pretty")
    note = re.search(r'<p class="hint" id="outcome-note">(.*?)</p>', shown, re.S)
    assert note
    assert html.unescape(note[1]).startswith("Given up: at the last attempt (")
    sent = html.unescape(re.search(r'<pre id="request-sent"><code>(.*?)</code>', shown, re.S)[1])
    assert sent.endswith(
        '{\n  "chat_id": "-100123",\n  "text": "it\'s <b>down</b>",\n  "n": 1.10\n}'
    )
    assert "The JSON body is shown indented; it was sent (and signed) compact" in shown
    payload = html.unescape(re.search(r'<pre id="payload-sent" hidden>(.*?)</pre>', shown, re.S)[1])
    assert payload == body  # Copy payload: the bytes sent
    curl = html.unescape(re.search(r'<pre id="curl-command">(.*?)</pre>', shown, re.S)[1])
    argv = shlex.split(curl.replace("\\\n", ""))
    masked = "https://api.telegram.org/bot***/sendMessage"  # as the page shows it
    assert argv[:4] == ["curl", "-X", "POST", masked]
    assert "X-Api-Key: ********" in argv
    assert argv[-2:] == ["--data-raw", body]
    # The headers of the curl command are the headers shown, signature included.
    for header in [a for a in argv[4:-2] if a != "-H"]:
        assert header in sent, header
    assert any(a.startswith("webhook-signature: v1,") for a in argv)
    assert 'data-copy="#payload-sent"' in shown
    assert 'data-copy="#curl-command"' in shown
    # No secret anywhere in the page: not the header's value, not the bot token.
    assert HEADER_VALUE not in shown
    assert "AAH-sekret-token" not in shown
    assert not re.search(r"\son[a-z]+=", shown)
    assert "<script>" not in shown


# -- the endpoint page's delivery chart: the store's hour buckets, by hour or UTC day ---------


def chart_label(shown: str) -> str:
    found = re.search(r'<svg class="chart history"[^>]* aria-label="([^"]+)"', shown)
    assert found, shown[shown.index('id="stats"') :][:1500]
    return html.unescape(found.group(1))


def chart_block(shown: str, period: str, title: str, bars: int) -> str:
    """The page's chart SVG, after checking its title, selected tab and bar count."""
    assert f'<h3 id="chart-title">Deliveries over the last {title}</h3>' in shown
    assert f'id="chart-tab-{period}" aria-current="page"' in shown
    block = shown[shown.index('<svg class="chart history"') : shown.index("</svg>")]
    assert block.count('<g class="bar">') == bars
    return block


async def test_the_endpoint_page_charts_its_attempts_by_hour_and_by_day(log_app: Any) -> None:
    client, pipeline = log_app
    sub = await acme_endpoint(client, pipeline)
    empty = await api_endpoint(client, pipeline, "acme", "https://example.com/quiet")
    now = time.time()
    hour_ago, three_days = now - 7200, now - 3 * 86400
    records = [attempt_of(sub.id, n, now - 10, "delivered", 200, 4.0) for n in range(5)]
    records += [attempt_of(sub.id, 5, now - 10, "retry", 503, 4.0)]
    records += [attempt_of(sub.id, 6 + n, hour_ago, "delivered", 200, 4.0) for n in range(2)]
    records += [attempt_of(sub.id, 8, hour_ago, "give_up", None, 4.0)]
    # Three days ago: in the 7 days only; eight days ago: in neither.
    records += [attempt_of(sub.id, 10 + n, three_days, "delivered", 200, 4.0) for n in range(12)]
    records += [attempt_of(sub.id, 30, now - 8 * 86400, "delivered", 200, 4.0)]
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, n, value) for n, value in enumerate(records)])
    writer.close()
    utc = datetime.UTC

    shown = await page(client, f"/console/endpoints/{sub.id}")
    busiest = datetime.datetime.fromtimestamp(now - 10, utc).strftime("%H:00")
    assert chart_label(shown) == (
        f"24 hours: 9 attempts, 7 delivered (77.8%); busiest hour {busiest} UTC with 6 attempts"
    )
    block = chart_block(shown, "24h", "24 hours", 24)
    # The same words stand above the chart for the eye, as the aria-label says them.
    assert f'id="chart-summary">{html.escape(chart_label(shown))}</p>' in shown
    assert block.count('class="bar-failed"') == 3  # the legend's and two hours'
    assert "style=" not in block
    # The chart is above the statistics table, in the Deliveries panel.
    assert shown.index('id="stats-title"') < shown.index('id="chart"') < shown.index("attempts-1h")

    week = await page(client, f"/console/endpoints/{sub.id}?chart=7d")
    day = datetime.datetime.fromtimestamp(three_days, utc).strftime("%b %d")
    assert chart_label(week) == (
        f"7 days: 21 attempts, 19 delivered (90.5%); busiest day {day} with 12 attempts"
    )
    week_block = chart_block(week, "7d", "7 days", 7)
    assert f'id="chart-summary">{html.escape(chart_label(week))}</p>' in week
    today = datetime.datetime.fromtimestamp(now, utc).strftime("%b %d")
    names = re.findall(r'text-anchor="middle">([^<]+)</text>', week_block)
    assert len(names) == 7
    assert (names[-4], names[-1]) == (day, today)  # UTC days, today last
    assert "attempts-7d" in week  # the table stays

    # No attempts: said in words, no empty frame.
    quiet = await page(client, f"/console/endpoints/{empty.id}")
    assert 'id="chart-error"' not in quiet
    assert '<p class="empty chart-empty">No attempts in the last 24 hours.</p>' in quiet
    assert 'id="chart-summary"' not in quiet  # no figures to say: the sentence above does
    assert '<svg class="chart history"' not in quiet
    quiet_week = await page(client, f"/console/endpoints/{empty.id}?chart=7d")
    assert "No attempts in the last 7 days." in quiet_week

    # Another tenant: no endpoint page, so no chart either.
    await sign_in(client, await link(client, await tenant_token(client, "beta")))
    for path in (f"/console/endpoints/{sub.id}", f"/console/endpoints/{sub.id}?chart=7d"):
        gone = await page(client, path, status=404)
        assert "chart history" not in gone
        assert "busiest" not in gone

    # The operator, viewing acme: the same chart.
    await sign_in(client, await link(client))
    operator = await page(client, f"/console/endpoints/{sub.id}?tenant=acme&chart=7d")
    assert chart_label(operator) == chart_label(week)


async def test_the_charts_hours_are_read_for_whoever_may_see_the_endpoint_only(
    log_app: Any,
) -> None:
    client, pipeline = log_app
    sub = await acme_endpoint(client, pipeline)
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write([(0, 0, attempt_of(sub.id, 0, time.time() - 5, "delivered", 200, 3.0))])
    writer.close()
    stats = pipeline.extras["console"].stats  # the StatsRoutes the /v1 stats answer with
    hours = await stats.hours_for(Principal(admin=False, tenant_id="acme"), sub.id, 24)
    assert [h["attempts"] for h in hours] == [0] * 23 + [1]
    assert len(await stats.hours_for(Principal(admin=True), sub.id, 30)) == 30
    with pytest.raises(NotFoundError):
        await stats.hours_for(Principal(admin=False, tenant_id="beta"), sub.id, 24)
    with pytest.raises(NotFoundError):
        await stats.hours_for(Principal(admin=True), "sub_nope", 24)


async def test_the_chart_and_recent_tabs_keep_each_others_choice_and_the_tenant(
    log_app: Any,
) -> None:
    client, pipeline = log_app
    sub = await acme_endpoint(client, pipeline)
    here = f"/console/endpoints/{sub.id}"

    def tabs(shown: str) -> dict[str, str]:
        found = re.findall(r'<a href="([^"]+)" id="((?:chart|recent)-tab-\w+)"', shown)
        return {tab: html.unescape(href) for href, tab in found}

    assert tabs(await page(client, here)) == {
        "recent-tab-all": f"{here}#recent",
        "recent-tab-failed": f"{here}?recent=failed#recent",
        "chart-tab-24h": f"{here}#stats",
        "chart-tab-7d": f"{here}?chart=7d#stats",
    }
    assert tabs(await page(client, f"{here}?chart=7d&recent=failed")) == {
        "recent-tab-all": f"{here}?chart=7d#recent",
        "recent-tab-failed": f"{here}?recent=failed&chart=7d#recent",
        "chart-tab-24h": f"{here}?recent=failed#stats",
        "chart-tab-7d": f"{here}?chart=7d&recent=failed#stats",
    }
    await sign_in(client, await link(client))
    assert tabs(await page(client, f"{here}?tenant=acme&chart=7d")) == {
        "recent-tab-all": f"{here}?chart=7d&tenant=acme#recent",
        "recent-tab-failed": f"{here}?recent=failed&chart=7d&tenant=acme#recent",
        "chart-tab-24h": f"{here}?tenant=acme#stats",
        "chart-tab-7d": f"{here}?chart=7d&tenant=acme#stats",
    }


# -- the endpoint page's "Recover failed deliveries": the dead letters' dry run and replay --


class _Forms(HTMLParser):
    """Each form of a page by its id: its action, fields (name -> value), the choices of
    its selects, the chosen one, and whether its submit button is disabled."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, Any]] = {}
        self._form: dict[str, Any] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._form = {"action": a.get("action"), "fields": {}, "choices": {}, "chosen": {}}
            self.forms[a.get("id") or f"form{len(self.forms)}"] = self._form
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            self._form["fields"][a["name"]] = a.get("value") or ""
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self._form["choices"][self._select] = []
        elif tag == "option" and self._select:
            self._form["choices"][self._select].append(a.get("value"))
            if "selected" in a:
                self._form["chosen"][self._select] = a.get("value")
        elif tag == "button" and a.get("type") == "submit":
            self._form["disabled"] = "disabled" in a

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def forms_of(shown: str) -> dict[str, dict[str, Any]]:
    parser = _Forms()
    parser.feed(shown)
    return parser.forms


def test_a_recover_window_becomes_the_second_it_starts_at() -> None:
    now = 1_767_225_600.75
    for window, back in [
        ("1h", 3600),
        ("6h", 6 * 3600),
        ("24h", 86_400),
        ("7d", 7 * 86_400),
        ("90m", 5400),
        ("1h30m", 5400),
        (" 24h ", 86_400),
        ("1s", 1),
    ]:
        assert pages.recover_since(window, now) == 1_767_225_600 - back, window
    for window, said in [
        ("", "'' is not a window"),
        ("24", "'24' is not a window"),
        ("24H", "'24H' is not a window"),
        ("1w", "'1w' is not a window"),
        ("-1h", "'-1h' is not a window"),
        ("x" * 50, "'" + "x" * 20 + "...' is not a window"),
        ("0s", "'0s' is empty"),
        ("0h", "'0h' is empty"),
        ("8d", "'8d' is over 7 days"),
        ("7d1s", "'7d1s' is over 7 days"),
    ]:
        with pytest.raises(InvalidRequestError) as caught:
            pages.recover_since(window, now)
        assert caught.value.field == "window"
        assert str(caught.value).startswith(f"`window`: {said}; how far back to recover: "), (
            window,
            str(caught.value),
        )
        assert "1h, 6h, 24h or 7d" in str(caught.value)


def letter(sub: Any, n: int, at: float, reason: str = "exhausted") -> Located:
    """A dead letter of ``sub``'s at ``at`` (its Kafka timestamp), at offset ``n``."""
    delivery = Delivery(
        delivery_id=f"msg_{sub.id}_{n}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id=sub.tenant_id,
        subscription_id=sub.id,
        body="{}",
    )
    dead = DeadLetter(delivery=delivery.to_dict(), reason=reason, attempts=3, dead_lettered_at=at)
    return Located(0, n, int(at * 1000), sub.id.encode(), dead.to_bytes())


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Located], list[Any]]:
    """The dead letters topic as a list the test fills, read by the real dry run (its
    filter decides what counts); a started replay records its filter and sends nothing."""
    letters: list[Located] = []
    started: list[Any] = []
    names = TopicNames(dev_settings(Path("/nonexistent")).topic_prefix)

    def scan(settings: Any, topic: str, *, since: float | None = None, **_: Any) -> Any:
        # Every partition's letters in the time range: the filter must pick the endpoint.
        if topic != names.dlq:
            return iter(())
        return iter([x for x in letters if since is None or x.timestamp_ms >= since * 1000])

    real = replays_module.dlq.replay

    def replay(settings: Any, flt: Any, **kw: Any) -> Any:
        if kw.get("dry_run"):
            return real(settings, flt, **kw)
        started.append(flt)
        summary = kw["summary"]
        summary.status = "finished"
        return summary

    monkeypatch.setattr(replays_module.dlq, "scan", scan)
    monkeypatch.setattr(replays_module.dlq, "replay", replay)
    return letters, started


async def test_the_endpoint_page_offers_to_recover_its_failed_deliveries(app: Any) -> None:
    client, pipeline = app
    sub = await acme_endpoint(client, pipeline)
    shown = await page(client, f"/console/endpoints/{sub.id}")
    form = forms_of(shown)["recover-form"]
    assert form["action"] == "/console/dlq/replay"
    assert form["fields"] == {
        "csrf_token": csrf_of(shown),
        "subscription_id": sub.id,
        "step": "dry_run",
    }  # every reason: none named; no tenant for a tenant's session
    assert form["choices"] == {"window": ["1h", "6h", "24h", "7d"]}
    assert form["chosen"] == {"window": "24h"}
    assert form["disabled"] is False
    assert "Recover failed deliveries" in shown
    assert 'id="recover-disabled"' not in shown


async def test_recover_counts_this_endpoints_dead_letters_in_the_window_then_replays_them(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    client, pipeline = app
    letters, started = dead_letters
    theirs = await api_endpoint(client, pipeline, "beta", "https://example.com/b")
    sub = await acme_endpoint(client, pipeline)
    other = await api_endpoint(client, pipeline, "acme", "https://example.com/other")
    now = time.time()
    letters += [
        letter(sub, 1, now - 3 * 86_400),  # before the window
        letter(sub, 2, now - 2 * 3600, "exhausted"),
        letter(sub, 3, now - 600, "subscription_disabled"),  # every reason
        letter(sub, 4, now - 60, "not_retryable"),
        letter(other, 5, now - 60),  # another endpoint of acme's
        letter(theirs, 6, now - 60),  # another tenant's
    ]
    shown = await page(client, f"/console/endpoints/{sub.id}")
    form = forms_of(shown)["recover-form"]
    resp = await client.post(form["action"], data={**form["fields"], "window": "24h"})
    dry = await resp.text()
    assert resp.status == 200, dry
    assert re.search(r'id="dry-run-count"><strong>3</strong>', dry), dry
    assert "in the last 24 hours (since " in dry
    assert f'href="/console/endpoints/{sub.id}">Back to the endpoint' in dry
    assert not started
    # The confirm replays from the second the dry run counted from, not a later window.
    confirm = forms_of(dry)["confirm-form"]
    since = int(confirm["fields"]["since"])
    assert now - 86_400 - 2 <= since <= now - 86_400
    assert "window" not in confirm["fields"]
    assert confirm["action"] == "/console/dlq/replay"
    assert confirm["fields"]["subscription_id"] == sub.id
    resp = await client.post(confirm["action"], data=confirm["fields"])
    assert resp.status == 202, await resp.text()
    assert 'id="replay-progress"' in await resp.text()
    await delivery_routes(client).replays.stop_all(timeout_s=5)
    assert [(f.subscription_id, f.tenant_id, f.reason, f.since) for f in started] == [
        (sub.id, "acme", None, since)
    ]
    # A shorter window counts fewer.
    resp = await client.post(form["action"], data={**form["fields"], "window": "1h"})
    assert re.search(r'id="dry-run-count"><strong>2</strong>', await resp.text())


async def test_recover_refuses_another_tenants_endpoint_and_a_bad_window_says_what_to_fix(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    client, pipeline = app
    letters, _ = dead_letters
    theirs = await api_endpoint(client, pipeline, "beta", "https://example.com/b")
    letters.append(letter(theirs, 1, time.time() - 60))
    sub = await acme_endpoint(client, pipeline)
    shown = await page(client, f"/console/endpoints/{sub.id}")
    await page(client, f"/console/endpoints/{theirs.id}", status=404)
    fields = {**forms_of(shown)["recover-form"]["fields"], "window": "24h"}
    resp = await client.post("/console/dlq/replay", data={**fields, "subscription_id": theirs.id})
    assert resp.status == 404, await resp.text()
    assert "dry-run-count" not in await resp.text()
    resp = await client.post("/console/dlq/replay", data={**fields, "window": "2w"})
    refused = await resp.text()
    assert resp.status == 422, refused
    assert "<h1>Cannot do that</h1>" in refused
    assert (
        "`window`: '2w' is not a window; how far back to recover: 1h, 6h, 24h or 7d"
        in html.unescape(refused)
    )
    resp = await client.post("/console/dlq/replay", data={**fields, "subscription_id": ""})
    assert resp.status == 422
    assert "the endpoint whose failed deliveries to recover" in await resp.text()


async def test_the_operator_recovers_a_tenants_endpoint_keeping_the_tenant(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    client, pipeline = app
    letters, _ = dead_letters
    sub = await api_endpoint(client, pipeline, "acme", "https://example.com/a")
    letters.append(letter(sub, 1, time.time() - 60))
    await sign_in(client, await link(client))
    shown = await page(client, f"/console/endpoints/{sub.id}?tenant=acme")
    form = forms_of(shown)["recover-form"]
    assert form["action"] == "/console/dlq/replay?tenant=acme"
    assert form["fields"]["tenant"] == "acme"
    resp = await client.post(form["action"], data={**form["fields"], "window": "6h"})
    dry = await resp.text()
    assert resp.status == 200, dry
    assert re.search(r'id="dry-run-count"><strong>1</strong>', dry), dry
    confirm = forms_of(dry)["confirm-form"]
    assert confirm["action"] == "/console/dlq/replay?tenant=acme"
    assert confirm["fields"]["tenant"] == "acme"
    assert f'href="/console/endpoints/{sub.id}?tenant=acme">Back to the endpoint' in dry
    assert nav_links(dry) == nav_of("acme", admin=True)


async def test_a_disabled_endpoint_must_be_re_enabled_before_recovering(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    client, pipeline = app
    letters, started = dead_letters
    sub = await acme_endpoint(client, pipeline)
    letters.append(letter(sub, 1, time.time() - 60))
    shown = await page(client, f"/console/endpoints/{sub.id}")
    fields = {**forms_of(shown)["recover-form"]["fields"], "window": "24h"}
    resp = await client.post(
        f"/console/endpoints/{sub.id}/disable",
        data={"csrf_token": csrf_of(shown), "reason": "maintenance"},
    )
    assert resp.status == 200
    shown = await page(client, f"/console/endpoints/{sub.id}")
    form = forms_of(shown)["recover-form"]
    assert form["disabled"] is True
    assert 'aria-describedby="recover-disabled"' in shown
    assert "This endpoint is disabled: re-enable it first (below)." in shown
    # A page left open from before is answered with the same reason; nothing counted.
    resp = await client.post("/console/dlq/replay", data=fields)
    refused = await resp.text()
    assert resp.status == 409, refused
    assert "this endpoint is disabled: re-enable it first" in refused
    assert "dry-run-count" not in refused
    assert not started


async def test_a_confirm_for_an_endpoint_disabled_since_its_dry_run_is_refused(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    """The dry run was counted while the endpoint was enabled; it was disabled before the
    confirm: nothing is replayed (it would be parked again), and the page says why."""
    client, pipeline = app
    letters, started = dead_letters
    sub = await acme_endpoint(client, pipeline)
    letters.append(letter(sub, 1, time.time() - 60))
    shown = await page(client, f"/console/endpoints/{sub.id}")
    form = forms_of(shown)["recover-form"]
    resp = await client.post(form["action"], data={**form["fields"], "window": "24h"})
    dry_run = await resp.text()
    assert resp.status == 200, dry_run
    confirm = forms_of(dry_run)["confirm-form"]
    resp = await client.post(
        f"/console/endpoints/{sub.id}/disable",
        data={"csrf_token": csrf_of(shown), "reason": "maintenance"},
    )
    assert resp.status == 200
    resp = await client.post(confirm["action"], data=confirm["fields"])
    refused = await resp.text()
    assert resp.status == 409, refused
    assert "this endpoint is disabled: re-enable it first" in refused
    assert 'id="replay-progress"' not in refused
    assert not started
    # Counted again now (the dead letters' page, filtered to it): the dry run says the
    # endpoint is disabled, links to re-enabling it, and offers no confirm.
    resp = await client.post(
        "/console/dlq/replay",
        data={"csrf_token": csrf_of(shown), "subscription_id": sub.id, "step": "dry_run"},
    )
    warned = await resp.text()
    assert resp.status == 200, warned
    assert 'id="disabled-warning"' in warned
    assert f'href="/console/endpoints/{sub.id}#state-title">Re-enable it first</a>' in warned
    assert "confirm-form" not in forms_of(warned)


async def test_the_dead_letters_name_each_endpoint_by_url_or_say_it_was_deleted(
    app: Any, dead_letters: tuple[list[Located], list[Any]]
) -> None:
    client, pipeline = app
    letters, _ = dead_letters
    sub = await acme_endpoint(client, pipeline, url="https://example.com/hook?a=1&b=2")
    gone = Subscription(id="sub_gone", tenant_id="acme", url="https://x.example", event_types=["*"])
    now = time.time()
    letters += [letter(sub, 1, now - 120), letter(gone, 2, now - 60)]

    def cells(shown: str) -> list[str]:
        table = shown[shown.index('id="letters"') : shown.index("</table>")]
        return re.findall(r'<td class="endpoint">(.*?)</td>', table)

    link_to = (
        '<a href="/console/endpoints/{}" class="url endpoint-link" '
        'title="https://example.com/hook?a=1&amp;b=2">https://example.com/hook?a=1&amp;b=2</a>'
    )
    deleted = '<span class="muted deleted-endpoint">deleted endpoint <code>sub_gone</code></span>'
    assert cells(await page(client, "/console/dlq")) == [link_to.format(sub.id), deleted]
    await sign_in(client, await link(client))
    assert cells(await page(client, "/console/dlq?tenant=acme")) == [
        link_to.format(f"{sub.id}?tenant=acme"),
        deleted,
    ]
