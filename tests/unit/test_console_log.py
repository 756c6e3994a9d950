"""The console's log pages, charts and live view read the delivery-log store.

Through the same methods as ``/v1/deliveries`` and ``/v1/stats`` (``page_for``,
``history_for``, ``hourly_for``, ``overall_for``, ``minutes_for``): the API
runs in-process on fakes with a log node's store written directly, as in
``test_log_api``; a worker without a log says why instead of showing nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.console import live as live_module
from streams.monitor import Snapshot
from streams.records import Subscription
from tests.fake_pipeline import FakePipeline
from tests.unit.test_console_web import link, page, sign_in
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
    assert "HTTP 503" in html
    resp = await client.get("/console/api/deliveries/msg_a")
    assert (await resp.json())["outcome"] == "delivered"
    # Another tenant's delivery is not found, as through the API.
    await sign_in(
        client, await link(client, await tenant_token(client, "other"), tenant_id="other")
    )
    await page(client, "/console/deliveries/msg_a", status=404)


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
        await page(client, "/console/deliveries", status=503)
        snap = await (await client.get("/console/api/live")).json()
        assert "does not serve the delivery log" in snap["log_error"]
