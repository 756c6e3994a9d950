"""`streams bench console-live` and `console-log`: their pure parts."""

from __future__ import annotations

import httpx
import pytest

from streams.tools.bench.config import BenchConfigError, BenchFailed, resolve
from streams.tools.bench.console import (
    FILL_SPAN_S,
    log_page_kinds,
    older_link,
    rows_on,
    server_ms,
    synthetic_hour,
    viewer_cost,
)


def test_the_fill_spreads_attempts_over_the_hour_before_now_across_the_endpoints() -> None:
    subs = [("sub_a", "t1"), ("sub_b", "t2")]
    got = synthetic_hour(subs, 4, now=10_000.0)
    assert [a.at for a in got] == [6400.0, 7300.0, 8200.0, 9100.0]
    assert [(a.subscription_id, a.tenant_id) for a in got] == subs * 2
    assert len({a.delivery_id for a in got}) == 4
    assert got == synthetic_hour(subs, 4, now=10_000.0)  # seeded: the same each run
    many = synthetic_hour(subs, 2000, now=10_000.0)
    failed = [a for a in many if a.outcome != "delivered"]
    assert 50 <= len(failed) <= 150  # about one in twenty
    assert {(a.status, a.error) for a in failed} == {(503, "HTTP 503")}
    assert min(a.at for a in many) == 10_000.0 - FILL_SPAN_S
    assert synthetic_hour([], 10, now=1.0) == []


def test_the_viewers_cost_is_the_difference_of_the_differences() -> None:
    # Worker 0 used 0.01 / 0.02 more than worker 1 without viewers, 0.04 more with them.
    cost, noise = viewer_cost(0.01, 0.04, 0.02)
    assert cost == pytest.approx(0.025)
    assert noise == pytest.approx(0.005)
    assert viewer_cost(-0.01, -0.01, -0.01) == (0.0, 0.0)


def test_console_live_runs_exactly_two_workers_at_a_rate() -> None:
    params = resolve("console-live")
    assert (params.workers, params.viewers, params.duration_s) == (2, 10, 60.0)
    assert params.log_fill == 180_000
    with pytest.raises(BenchConfigError, match="exactly 2 workers"):
        resolve("console-live", overrides={"workers": 3})
    assert resolve("console-live", smoke=True, overrides={"rate": "50"}).rates == (50.0,)


def test_server_time_is_read_from_the_consoles_server_timing_header() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/console/deliveries")
    resp = httpx.Response(200, headers={"Server-Timing": "app;dur=12.5"}, request=request)
    assert server_ms(resp) == 12.5
    with pytest.raises(BenchFailed, match="no Server-Timing"):
        server_ms(httpx.Response(200, request=request))


def test_the_next_page_link_and_the_rows_are_read_from_the_page() -> None:
    page = (
        '<tr data-delivery="a"></tr><tr data-delivery="b"></tr>'
        '<p><a href="/console/deliveries?status=failed&amp;cursor=c1.xyz" rel="next">Older</a>'
    )
    assert rows_on(page) == 2
    assert older_link(page) == "/console/deliveries?status=failed&cursor=c1.xyz"
    assert older_link("<p>no more</p>") is None


def test_each_tenants_endpoint_filter_names_one_of_its_own_subscriptions() -> None:
    from streams.tools.bench.logstore import SUBSCRIPTIONS, TENANTS

    (endpoint,) = [make for name, _, make in log_page_kinds(0.0) if name.endswith("endpoint")]
    for tenant in (0, 7, 199):
        sub = int(endpoint(tenant).removeprefix("/console/deliveries?endpoint=sub_")[:5])
        assert sub % TENANTS == tenant  # the fill's subscription s is tenant s % TENANTS's
        assert 0 <= sub < SUBSCRIPTIONS


def test_console_log_fills_a_million_attempts() -> None:
    params = resolve("console-log")
    assert (params.workers, params.log_fill, params.requests) == (1, 1_000_000, 200)
