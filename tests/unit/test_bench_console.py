"""`streams bench console-live`: its pure parts (the fill, the cost, the sizes)."""

from __future__ import annotations

import pytest

from streams.tools.bench.config import BenchConfigError, resolve
from streams.tools.bench.console import FILL_SPAN_S, synthetic_hour, viewer_cost


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
