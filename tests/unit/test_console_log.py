"""The console's log pages, charts and live view read the delivery-log store.

Through the same methods as ``/v1/deliveries`` and ``/v1/stats`` (``page_for``,
``history_for``, ``hourly_for``, ``overall_for``, ``minutes_for``): the API
runs in-process on fakes with a log node's store written directly, as in
``test_log_api``; a worker without a log says why instead of showing nothing.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.api.stats import StatsRoutes
from streams.api.subscriptions import SubscriptionRoutes
from streams.console import live as live_module
from streams.console.listing import FAILING_MEANS, STATES
from streams.health import FailureState
from streams.log.store import LogReader, StoreFault
from streams.monitor import Snapshot
from streams.records import Subscription
from tests.fake_pipeline import FakePipeline
from tests.unit.test_console_web import HOSTILE, link, page, sign_in
from tests.unit.test_log_api import attempt, make_pipeline, tenant_token, write

NOW = time.time()


@pytest.fixture(autouse=True)
def _now() -> None:
    """The attempts are seconds old when the windows are read, however long the suite ran."""
    global NOW
    NOW = time.time()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], FakePipeline]]:
    pipeline = make_pipeline(tmp_path)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-delivery="([^"]+)"', html)


async def test_the_log_pages_follow_the_stores_cursor_and_show_only_the_tenants_rows(
    api: Any,
) -> None:
    client, pipeline = api
    # 60 of acme's and some of another tenant's: a page of 50, then the other 10.
    write(pipeline, *(attempt(f"msg_{n:02d}", 1, NOW - 600 + n) for n in range(60)))
    write(pipeline, *(attempt(f"oth_{n}", 1, NOW - 300 + n, tenant="other") for n in range(5)))
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    first = await page(client, "/console/deliveries")
    assert rows_of(first) == [f"msg_{n:02d}" for n in range(59, 9, -1)]
    older = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert older is not None
    assert "cursor=c1." in older.group(1)
    # Attempts arriving between the pages neither repeat nor push rows off the next one.
    write(pipeline, *(attempt(f"new_{n}", 1, NOW - 5 + n) for n in range(3)))
    second = await page(client, older.group(1).replace("&amp;", "&"))
    assert rows_of(second) == [f"msg_{n:02d}" for n in range(9, -1, -1)]
    assert 'rel="next"' not in second


async def test_a_delivery_page_shows_every_attempt_from_the_store(api: Any) -> None:
    client, pipeline = api
    write(
        pipeline,
        attempt("msg_a", 1, NOW - 30, outcome="retry", status=503, error="HTTP 503"),
        attempt("msg_a", 2, NOW - 20, replay_id="rdl_1"),
    )
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    html = await page(client, "/console/deliveries/msg_a")
    assert "after 2 attempt(s)" in html
    assert 'id="outcome">delivered<' in html
    # The first attempt's outcome in the filter's word, its code kept as the class.
    assert '<span class="outcome retry">retrying</span>' in html
    assert "HTTP 503" in html
    resp = await client.get("/console/api/deliveries/msg_a")
    assert (await resp.json())["outcome"] == "delivered"
    # Another tenant's delivery is not found, as through the API.
    await sign_in(
        client, await link(client, await tenant_token(client, "other"), tenant_id="other")
    )
    await page(client, "/console/deliveries/msg_a", status=404)


# -- which endpoint: its URL, linked to its page; a deleted one said so ------------------------

LONG_URL = "https://hooks.example.com/services/tenant-acme/v2/integrations/orders/created"


def endpoint_cells(html: str) -> dict[str, str]:
    """delivery id -> its Endpoint cell's HTML, as the log page shows it."""
    return dict(
        re.findall(r'<tr data-delivery="([^"]+)">.*?<td class="endpoint">(.*?)</td>', html, re.S)
    )


@pytest.fixture
async def sent_to(api: Any) -> tuple[TestClient[Any, Any], FakePipeline]:
    """acme's deliveries to an endpoint with ``&`` in its query, one with a long URL, one
    deleted since, and one to beta's endpoint (not acme's to see, whatever the record says)."""
    client, pipeline = api
    for sub in (
        endpoint("sub_shop", "acme", "https://shop.example.com/hooks?a=1&b=2", "Orders"),
        endpoint("sub_long", "acme", LONG_URL),
        endpoint("sub_gone", "acme", "https://gone.example.com/old"),
        endpoint("sub_beta", "beta", "https://beta.example.com/secret-path"),
    ):
        pipeline.subscriptions.apply(sub.id, sub.to_bytes())
    pipeline.subscriptions.apply("sub_gone", None)  # deleted: a tombstone
    write(
        pipeline,
        *(
            dataclasses.replace(
                attempt(f"to_{name}", 1, NOW - 60 + n), subscription_id=f"sub_{name}"
            )
            for n, name in enumerate(["shop", "long", "gone", "beta"])
        ),
    )
    return client, pipeline


async def test_the_log_shows_each_deliverys_endpoint_by_its_url_linked_to_its_page(
    sent_to: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = sent_to

    def per_row(*args: Any, **kw: Any) -> Any:
        raise AssertionError("an endpoint was looked up for one row of the log")

    # The page's endpoints, as a dict: no lookup per row.
    monkeypatch.setattr(SubscriptionRoutes, "find", per_row)
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    shown = await page(client, "/console/deliveries")
    cells = endpoint_cells(shown)
    assert list(cells) == ["to_beta", "to_gone", "to_long", "to_shop"]
    # The URL as the endpoint list shows it, escaped (& in the query), linked to its page.
    assert cells["to_shop"] == (
        '<a href="/console/endpoints/sub_shop" class="url endpoint-link" '
        'title="https://shop.example.com/hooks?a=1&amp;b=2">'
        "https://shop.example.com/hooks?a=1&amp;b=2</a>"
    )
    assert "?a=1&b=2" not in shown
    # A long one: its host and the end of its path; the whole URL in the title.
    assert cells["to_long"] == (
        '<a href="/console/endpoints/sub_long" class="url endpoint-link" '
        f'title="{LONG_URL}">https://hooks.example.com/…/orders/created</a>'
    )
    # Deleted since: said so, with its id, and no link (its page is gone).
    gone = '<span class="muted deleted-endpoint">deleted endpoint <code>sub_gone</code></span>'
    assert cells["to_gone"] == gone
    assert "gone.example.com" not in shown
    # Another tenant's endpoint is not shown, nor linked: as a deleted one.
    assert cells["to_beta"] == gone.replace("sub_gone", "sub_beta")
    assert "beta.example.com" not in shown
    assert "/console/endpoints/sub_beta" not in shown


async def test_the_operators_log_links_each_endpoint_keeping_its_tenant(sent_to: Any) -> None:
    client, _ = sent_to
    await sign_in(client, await link(client))
    for path in ("/console/deliveries?tenant=acme", "/console/deliveries"):
        cells = endpoint_cells(await page(client, path))
        assert cells["to_shop"].startswith(
            '<a href="/console/endpoints/sub_shop?tenant=acme" class="url endpoint-link" '
        ), path
        assert ">deleted endpoint <code>sub_gone</code><" in cells["to_gone"], path
    # The operator sees every tenant's endpoints: beta's, under beta.
    every = endpoint_cells(await page(client, "/console/deliveries"))
    assert every["to_beta"] == (
        '<a href="/console/endpoints/sub_beta?tenant=beta" class="url endpoint-link" '
        'title="https://beta.example.com/secret-path">https://beta.example.com/secret-path</a>'
    )


async def test_a_delivery_page_names_its_endpoint_by_url_or_says_it_was_deleted(
    sent_to: Any,
) -> None:
    client, _ = sent_to
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    shop = await page(client, "/console/deliveries/to_shop")
    assert (
        '<dd id="endpoint"><a href="/console/endpoints/sub_shop" class="url endpoint-link" '
        'title="https://shop.example.com/hooks?a=1&amp;b=2">'
        "https://shop.example.com/hooks?a=1&amp;b=2</a> · <code>sub_shop</code></dd>"
    ) in shop
    gone = await page(client, "/console/deliveries/to_gone")
    assert (
        '<dd id="endpoint"><span class="muted deleted-endpoint">deleted endpoint '
        "<code>sub_gone</code></span></dd>"
    ) in gone
    assert 'href="/console/endpoints/sub_gone' not in gone
    await sign_in(client, await link(client))
    operator = await page(client, "/console/deliveries/to_shop?tenant=acme")
    assert '<dd id="endpoint"><a href="/console/endpoints/sub_shop?tenant=acme" ' in operator


async def test_the_endpoint_charts_count_the_stores_last_24_hours(api: Any) -> None:
    client, pipeline = api
    sub = Subscription(id="sub_acme", tenant_id="acme", url="https://x.example", event_types=["*"])
    pipeline.subscriptions.apply("sub_acme", sub.to_bytes())
    write(
        pipeline,
        attempt("msg_a", 1, NOW - 10),
        attempt("msg_b", 1, NOW - 7200, outcome="retry", status=500),
        attempt("msg_c", 1, NOW - 3 * 86400),  # older than the chart
    )
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    html = await page(client, "/console/endpoints")
    assert "2 attempts · 50.0%" in html
    assert 'id="log-error"' not in html


async def test_the_live_view_takes_its_delivery_figures_from_the_store(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pipeline = api
    write(
        pipeline,
        attempt("msg_a", 1, NOW - 10),
        attempt("msg_b", 1, NOW - 20, tenant="other", outcome="retry", status=500),
        attempt("msg_c", 1, NOW - 30),
    )
    url = "https://hooks.other.example/in?a=1&b=2"
    sub = Subscription(id="sub_other", tenant_id="other", url=url, event_types=["*"])
    pipeline.subscriptions.apply("sub_other", sub.to_bytes())
    # Kafka's part of a sample is the monitor's (tested there); not read here.
    monkeypatch.setattr(
        live_module.Monitor,
        "sample",
        lambda self: Snapshot(at=NOW, bootstrap="", group="", prefix=""),
    )
    await sign_in(client, await link(client))
    snap = await (await client.get("/console/api/live")).json()
    assert snap["attempts_5m"] == 3
    assert snap["success_rate_5m"] == pytest.approx(2 / 3, abs=1e-6)
    assert [f["subscription_id"] for f in snap["failing"]] == ["sub_other"]
    assert "Attempts per minute, last hour: 3" in snap["chart_attempts"]
    assert snap["log_error"] is None
    # The failing endpoint links to its page, and its tenant to the tenant's endpoints.
    body = await page(client, "/console/live?fragment=1")
    shown = url.replace("&", "&amp;")
    assert (
        f'<a class="endpoint-link" href="/console/endpoints/sub_other?tenant=other" '
        f'title="{shown}">{shown}</a>'
    ) in body
    assert '<a class="tenant-link" href="/console/endpoints?tenant=other">other</a>' in body


async def test_without_a_log_the_console_says_why_instead_of_showing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline(tmp_path, log=False)
    sub = Subscription(id="sub_acme", tenant_id="acme", url="https://x.example", event_types=["*"])
    pipeline.subscriptions.apply("sub_acme", sub.to_bytes())
    monkeypatch.setattr(
        live_module.Monitor,
        "sample",
        lambda self: Snapshot(at=NOW, bootstrap="", group="", prefix=""),
    )
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        await sign_in(client, await link(client))
        html = await page(client, "/console/endpoints")
        assert 'id="log-error"' in html
        assert "does not serve the delivery log" in html
        # No figures, so no endpoint can be told failing: the tab counts none, and says why.
        assert "(until they are back, no endpoint counts as failing)" in html
        assert 'id="state-failing" >Failing (0)</a>' in html
        # The Tenants page too: its failing counts are unknown, not 0.
        tenants = await page(client, "/console/tenants")
        assert 'id="log-error">Delivery figures unavailable: ' in tenants
        assert "does not serve the delivery log" in tenants
        assert "(until they are back, no tenant's failing endpoints can be counted)" in tenants
        assert tenant_rows(tenants)["acme"] == {
            "endpoints": ("1", "/console/endpoints?tenant=acme"),
            "enabled": ("1", ""),
            "failing": ("unknown", ""),
        }
        await page(client, "/console/deliveries", status=503)
        snap = await (await client.get("/console/api/live")).json()
        assert "does not serve the delivery log" in snap["log_error"]


# -- the endpoint list's filters: state tabs with counts and a search, per tenant -------------


def endpoint(sub_id: str, tenant: str, url: str, description: str = "", **kw: Any) -> Subscription:
    return Subscription(
        id=sub_id, tenant_id=tenant, url=url, event_types=["*"], description=description, **kw
    )


def listed_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-endpoint="([^"]+)"', html)


def state_tabs(html: str) -> dict[str, tuple[str, str]]:
    """``state`` -> (the tab's words, its link), as the page shows them."""
    found = re.findall(r'<a href="([^"]+)" id="state-(\w+)"[^>]*>([^<]+)</a>', html)
    return {key: (words, href.replace("&amp;", "&")) for href, key, words in found}


def summary(html: str) -> str:
    found = re.search(
        r'<p class="filter-summary" id="filter-summary" role="status">(.*?)</p>', html
    )
    return re.sub(r"<[^>]+>", "", found.group(1)) if found else ""


@pytest.fixture
async def filtered(api: Any) -> tuple[TestClient[Any, Any], FakePipeline]:
    """acme: ok (all delivered), bad (one retry), off (disabled, with failures), idle (no
    attempts); beta, whose endpoints match every filter and search below: never shown."""
    client, pipeline = api
    subs = [
        endpoint("sub_ok", "acme", "https://shop.example.com/hooks", "Orders to the warehouse"),
        endpoint("sub_bad", "acme", "https://crm.example.org/in", "CRM sync"),
        endpoint("sub_off", "acme", "https://old.example.net/x", "retired", state="disabled"),
        endpoint("sub_idle", "acme", "https://idle.example.com/", ""),
        endpoint("sub_beta1", "beta", "https://beta.example.com/orders", "beta orders"),
        endpoint("sub_beta2", "beta", "https://beta.example.org/old", "retired", state="disabled"),
    ]
    for sub in subs:
        pipeline.subscriptions.apply(sub.id, sub.to_bytes())
    fails = {"outcome": "retry", "status": 503}
    write(
        pipeline,
        *(
            dataclasses.replace(attempt(f"ok_{n}", 1, NOW - 60), subscription_id="sub_ok")
            for n in range(3)
        ),
        dataclasses.replace(attempt("bad_0", 1, NOW - 60), subscription_id="sub_bad"),
        dataclasses.replace(attempt("bad_1", 1, NOW - 50, **fails), subscription_id="sub_bad"),
        dataclasses.replace(attempt("off_0", 1, NOW - 50, **fails), subscription_id="sub_off"),
        dataclasses.replace(
            attempt("beta_0", 1, NOW - 50, tenant="beta", **fails), subscription_id="sub_beta1"
        ),
    )
    return client, pipeline


async def test_the_endpoint_list_counts_each_state_and_filters_by_it(filtered: Any) -> None:
    client, _ = filtered
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    everything = await page(client, "/console/endpoints")
    assert listed_ids(everything) == ["sub_ok", "sub_bad", "sub_off", "sub_idle"]
    assert state_tabs(everything) == {
        "all": ("All (4)", "/console/endpoints"),
        "enabled": ("Enabled (3)", "/console/endpoints?state=enabled"),
        "disabled": ("Disabled (1)", "/console/endpoints?state=disabled"),
        "failing": ("Failing (1)", "/console/endpoints?state=failing"),
    }
    assert 'id="state-all" aria-current="page"' in everything
    assert summary(everything) == ""  # no filter: no "Showing" line, no Clear link
    assert 'id="clear-filters"' not in everything

    for state, ids in (
        ("enabled", ["sub_ok", "sub_bad", "sub_idle"]),
        ("disabled", ["sub_off"]),
        ("failing", ["sub_bad"]),  # enabled with an attempt not delivered (sub_off: disabled)
    ):
        shown = await page(client, f"/console/endpoints?state={state}")
        assert listed_ids(shown) == ids, state
        assert f'id="state-{state}" aria-current="page"' in shown
        label = state.capitalize()
        assert summary(shown) == f"Showing {len(ids)} of 4 endpoints ({label}). Clear filters"
        assert '<a href="/console/endpoints" id="clear-filters">' in shown
        assert '<input type="hidden" name="state" value="' + state + '">' in shown
        assert state_tabs(shown) == state_tabs(everything)  # the counts stay
    assert 'id="failing-hint"' in await page(client, "/console/endpoints?state=failing")


async def test_the_endpoint_list_searches_url_description_and_id(filtered: Any) -> None:
    client, _ = filtered
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    for q, ids in (
        ("WAREHOUSE", ["sub_ok"]),  # the description, any case
        ("example.org", ["sub_bad"]),  # the URL
        ("sub_idle", ["sub_idle"]),  # the id
        ("  example.com  ", ["sub_ok", "sub_idle"]),  # trimmed
    ):
        shown = await page(client, "/console/endpoints?q=" + quote(q))
        assert listed_ids(shown) == ids, q
        words = q.strip()
        assert summary(shown) == (
            f"Showing {len(ids)} of 4 endpoints (search “{words}”). Clear filters"
        )
        assert f'name="q" value="{words}"' in shown
    # The tabs count within the search and keep it.
    shown = await page(client, "/console/endpoints?q=retired")
    assert state_tabs(shown) == {
        "all": ("All (1)", "/console/endpoints?q=retired"),
        "enabled": ("Enabled (0)", "/console/endpoints?state=enabled&q=retired"),
        "disabled": ("Disabled (1)", "/console/endpoints?state=disabled&q=retired"),
        "failing": ("Failing (0)", "/console/endpoints?state=failing&q=retired"),
    }
    # Nothing matches: said so, with the Clear link, not "No endpoints yet".
    none = await page(client, "/console/endpoints?state=failing&q=retired")
    assert listed_ids(none) == []
    assert summary(none) == (
        "No endpoints match the filter (Failing; search “retired”). Clear filters"
    )
    assert "No endpoints yet" not in none
    assert 'id="endpoints"' not in none
    # Markup in a search is text.
    hostile = await page(client, "/console/endpoints?q=" + quote(HOSTILE))
    assert HOSTILE not in hostile
    assert "search “&lt;img src=x onerror=alert(1)&gt;”" in hostile


async def test_a_long_search_or_an_unknown_state_is_answered_with_the_reason(
    filtered: Any,
) -> None:
    client, _ = filtered
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    long = await page(client, "/console/endpoints?state=disabled&q=" + "a" * 201, status=422)
    assert 'id="search-error">A search is at most 200 characters (this one has 201)' in long
    assert 'aria-invalid="true" aria-describedby="search-error"' in long
    assert listed_ids(long) == ["sub_off"]  # the state still applies
    assert await page(client, "/console/endpoints?q=" + "a" * 200)  # 200 is searched
    bad = await page(client, "/console/endpoints?state=broken", status=400)
    assert "<h1>Unknown filter</h1>" in bad
    assert "Unknown endpoint state &#39;broken&#39;: choose one of all, enabled, disabled" in bad
    hostile = await page(client, "/console/endpoints?state=" + quote(HOSTILE), status=400)
    assert HOSTILE not in hostile


async def test_the_filters_show_and_count_the_tenants_own_endpoints_only(filtered: Any) -> None:
    client, _ = filtered
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    for query in ("", "?state=disabled", "?state=failing", "?q=beta", "?q=orders"):
        shown = await page(client, "/console/endpoints" + query)
        assert "sub_beta" not in shown, query
        assert "beta.example" not in shown, query
    assert listed_ids(await page(client, "/console/endpoints?q=orders")) == ["sub_ok"]
    assert "No endpoints match the filter (search “beta”)" in summary(
        await page(client, "/console/endpoints?q=beta")
    )
    await page(client, "/console/endpoints?tenant=beta&state=disabled", status=422)

    # beta: its own two, counted apart from acme's.
    await sign_in(client, await link(client, await tenant_token(client, "beta"), tenant_id="beta"))
    shown = await page(client, "/console/endpoints")
    assert [words for words, _ in state_tabs(shown).values()] == [
        "All (2)",
        "Enabled (1)",
        "Disabled (1)",
        "Failing (1)",
    ]
    # A tenant without endpoints: "No endpoints yet", whatever the filter.
    await sign_in(
        client, await link(client, await tenant_token(client, "gamma"), tenant_id="gamma")
    )
    for query in ("", "?state=failing&q=x"):
        shown = await page(client, "/console/endpoints" + query)
        assert "No endpoints yet." in shown
        assert 'id="endpoint-filters"' not in shown


async def test_the_operators_filters_keep_the_tenant_viewed(filtered: Any) -> None:
    client, _ = filtered
    await sign_in(client, await link(client))
    shown = await page(client, "/console/endpoints?tenant=acme&state=disabled&q=RETIRED")
    assert listed_ids(shown) == ["sub_off"]
    assert state_tabs(shown) == {
        "all": ("All (1)", "/console/endpoints?q=RETIRED&tenant=acme"),
        "enabled": ("Enabled (0)", "/console/endpoints?state=enabled&q=RETIRED&tenant=acme"),
        "disabled": ("Disabled (1)", "/console/endpoints?state=disabled&q=RETIRED&tenant=acme"),
        "failing": ("Failing (0)", "/console/endpoints?state=failing&q=RETIRED&tenant=acme"),
    }
    search_form = shown[
        shown.index('id="endpoint-search"') : shown.index(
            "</form>", shown.index('id="endpoint-search"')
        )
    ]
    assert '<input type="hidden" name="tenant" value="acme">' in search_form
    assert '<input type="hidden" name="state" value="disabled">' in search_form
    assert '<a href="/console/endpoints?tenant=acme" id="clear-filters">' in shown
    assert summary(shown) == (
        "Showing 1 of 4 endpoints (Disabled; search “RETIRED”). Clear filters"
    )
    # beta viewed: beta's only. No tenant: every tenant's, counted together.
    beta = await page(client, "/console/endpoints?tenant=beta&state=disabled")
    assert listed_ids(beta) == ["sub_beta2"]
    assert state_tabs(beta)["failing"] == (
        "Failing (1)",
        "/console/endpoints?state=failing&tenant=beta",
    )
    every = await page(client, "/console/endpoints?state=failing")
    assert listed_ids(every) == ["sub_bad", "sub_beta1"]
    assert state_tabs(every)["all"] == ("All (6)", "/console/endpoints")


# -- the operator's Tenants page: each tenant's counts, as its endpoint list's tabs ----------


class _Tracker:
    """The health tracker's current view: a last error for the endpoints named."""

    def __init__(self, *failing: str) -> None:
        self.failing = failing

    def state(self, sub_id: str) -> FailureState | None:
        if sub_id not in self.failing:
            return None
        return FailureState(consecutive=3, failing_since=NOW - 600, last_error="HTTP 503")


def tenant_rows(html: str) -> dict[str, dict[str, tuple[str, str]]]:
    """tenant -> the endpoints and failing cells: (their words, their link or "")."""
    out = {}
    for tenant, cells in re.findall(r'<tr data-tenant="([^"]+)">(.*?)</tr>', html, re.S):
        tds = re.findall(r"<td>(.*?)</td>", cells, re.S)

        def cell(td: str) -> tuple[str, str]:
            found = re.search(r'href="([^"]+)"', td)
            words = re.sub(r"<[^>]+>", "", td).strip()
            return words, found.group(1).replace("&amp;", "&") if found else ""

        out[tenant] = {"endpoints": cell(tds[1]), "enabled": cell(tds[2]), "failing": cell(tds[3])}
    return out


async def test_the_tenants_page_counts_failing_endpoints_as_their_failing_tab(
    filtered: Any,
) -> None:
    client, pipeline = filtered
    # gamma: an idle endpoint the tracker still holds an error for.
    idle = endpoint("sub_gamma", "gamma", "https://gamma.example.com/")
    pipeline.subscriptions.apply(idle.id, idle.to_bytes())
    # The tracker's last errors (the page's old rule) say otherwise than the last 24 hours:
    # acme's ok one (recovered) and disabled one, gamma's idle one; not acme's bad one or
    # beta's, whose undelivered attempts are in the store. Old counts: acme 2, beta 0,
    # gamma 1; the Failing tabs': acme 1, beta 1, gamma 0.
    pipeline.extras["health"] = _Tracker("sub_ok", "sub_off", "sub_gamma")
    await sign_in(client, await link(client))
    shown = await page(client, "/console/tenants")
    rows = tenant_rows(shown)
    assert list(rows) == ["acme", "beta", "gamma"]  # the most failing first, then by name
    assert rows == {
        "acme": {
            "endpoints": ("4", "/console/endpoints?tenant=acme"),
            "enabled": ("3", ""),
            "failing": ("1", "/console/endpoints?state=failing&tenant=acme"),
        },
        "beta": {
            "endpoints": ("2", "/console/endpoints?tenant=beta"),
            "enabled": ("1", ""),
            "failing": ("1", "/console/endpoints?state=failing&tenant=beta"),
        },
        "gamma": {
            "endpoints": ("1", "/console/endpoints?tenant=gamma"),
            "enabled": ("1", ""),
            "failing": ("0", "/console/endpoints?state=failing&tenant=gamma"),
        },
    }
    # What failing means, said on the page: the header's tooltip and a hint it points to.
    assert f'title="{FAILING_MEANS.capitalize()}" aria-describedby="failing-means"' in shown
    assert f'<p class="hint" id="failing-means">Failing: {FAILING_MEANS}' in shown
    assert "in the last 24 hours" in FAILING_MEANS
    assert 'id="log-error"' not in shown
    # Each count is the one its link's list shows, on the tab it opens.
    for tenant, row in rows.items():
        for key, tab in (("endpoints", "all"), ("failing", "failing")):
            words, href = row[key]
            listed = await page(client, href)
            assert state_tabs(listed)[tab][0] == f"{STATES[tab]} ({words})", (tenant, key)
            assert len(listed_ids(listed)) == int(words), (tenant, key)
            assert f'id="state-{tab}" aria-current="page"' in listed, (tenant, key)


async def test_the_tenants_page_reads_the_store_once_for_every_tenant(
    filtered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pipeline = filtered
    for n in range(5):  # more tenants, more endpoints: still one read
        extra = endpoint(f"sub_more{n}", f"more{n}", f"https://more{n}.example.com/")
        pipeline.subscriptions.apply(extra.id, extra.to_bytes())
    reads: list[list[str]] = []
    real = StatsRoutes.hourly_for

    async def counted(self: StatsRoutes, who: Any, subs: Any, hours: int = 24) -> Any:
        subs = list(subs)
        reads.append([s.id for s in subs])
        return await real(self, who, subs, hours)

    monkeypatch.setattr(StatsRoutes, "hourly_for", counted)

    async def per_endpoint(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the Tenants page read one endpoint's figures on its own")

    for name in ("subscription_for", "hours_for"):
        monkeypatch.setattr(StatsRoutes, name, per_endpoint)
    await sign_in(client, await link(client))
    await page(client, "/console/tenants")
    assert len(reads) == 1
    assert len(reads[0]) == 6 + 5


async def test_the_endpoint_lists_never_search_for_each_endpoints_newest_error(
    filtered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # That search reads every hour of an endpoint that never failed (2 ms an endpoint
    # at 10 million stored); neither list shows its result.
    client, _ = filtered
    asked: list[bool] = []
    real = LogReader.health

    def recorded(self: LogReader, *args: Any, **kw: Any) -> Any:
        asked.append(kw.get("newest_error", True))
        return real(self, *args, **kw)

    monkeypatch.setattr(LogReader, "health", recorded)
    await sign_in(client, await link(client))
    await page(client, "/console/tenants")
    await page(client, "/console/endpoints")
    assert asked == [False, False]


def store_faults(monkeypatch: pytest.MonkeyPatch, *methods: str) -> str:
    """Make these LogReader methods fail as a store being upgraded does; the reason."""
    why = "the delivery-log store /x/attempts.sqlite3 is being upgraded: try again shortly"

    def faulty(self: LogReader, *args: Any, **kw: Any) -> Any:
        raise StoreFault(why)

    for name in methods:
        monkeypatch.setattr(LogReader, name, faulty)
    return why


async def test_a_store_fault_leaves_the_endpoint_lists_listing_and_saying_why(
    filtered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store being upgraded, or found corrupt, takes the figures away, not the lists.
    client, _ = filtered
    why = store_faults(monkeypatch, "health")
    await sign_in(client, await link(client))
    listed = await page(client, "/console/endpoints?tenant=acme")
    assert f'id="log-error">Delivery figures unavailable: {why}' in listed
    assert len(listed_ids(listed)) > 0
    tenants = await page(client, "/console/tenants")
    assert f'id="log-error">Delivery figures unavailable: {why}' in tenants
    assert tenant_rows(tenants)["acme"]["failing"] == ("unknown", "")


async def test_an_endpoint_page_says_failing_as_the_lists_failing_tab_does(filtered: Any) -> None:
    client, _ = filtered
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    bad = await page(client, "/console/endpoints/sub_bad")
    assert (
        '<a class="state failing" id="failing" href="/console/endpoints/sub_bad?recent=failed'
        '#recent">failing</a>' in bad
    )
    assert '"failing-detail">1 of 2 attempts in the last 24 hours not delivered<' in bad
    # The same rule as the Failing tab: delivered only, disabled, or no attempts: no badge.
    failing_tab = await page(client, "/console/endpoints?state=failing")
    assert listed_ids(failing_tab) == ["sub_bad"]
    for other in ("sub_ok", "sub_off", "sub_idle"):
        assert 'id="failing"' not in await page(client, f"/console/endpoints/{other}"), other
    # The operator viewing acme keeps ?tenant= on the link.
    await sign_in(client, await link(client))
    operator = await page(client, "/console/endpoints/sub_bad?tenant=acme")
    assert 'href="/console/endpoints/sub_bad?recent=failed&amp;tenant=acme#recent"' in operator


async def test_a_store_fault_leaves_an_endpoint_page_showing_the_endpoint(
    filtered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = filtered
    why = store_faults(monkeypatch, "health", "windows", "series")
    await sign_in(client, await link(client, await tenant_token(client, "acme"), tenant_id="acme"))
    html = await page(client, "/console/endpoints/sub_bad")
    assert "https://crm.example.org/in" in html
    assert why in html
    assert 'id="failing"' not in html  # no figures: not called failing
