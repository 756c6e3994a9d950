"""Statistics windows over the attempt log: fixed vectors."""

from __future__ import annotations

import pytest

from streams.api.stats import failing, overall, percentile, window_stats, windows
from streams.records import Attempt

NOW = 1_800_000_000.0


def a(
    ago: float,
    outcome: str = "delivered",
    status: int | None = 200,
    ms: float = 10.0,
    *,
    sub: str = "sub_a",
    tenant: str = "t1",
    error: str | None = None,
) -> Attempt:
    return Attempt(
        delivery_id=f"msg_{ago}",
        event_id="e",
        event_type="alert.fired",
        tenant_id=tenant,
        subscription_id=sub,
        attempt=1,
        at=NOW - ago,
        duration_ms=ms,
        outcome=outcome,
        status=status,
        error=error,
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.5, 7.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),  # nearest rank: ceil(0.5 * 4) = 2nd
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 0.50, 50.0),
        ([float(i) for i in range(1, 1001)], 0.99, 990.0),
        ([1.0, 2.0], 0.0, 1.0),
        ([1.0, 2.0], 1.0, 2.0),
    ],
)
def test_nearest_rank_percentiles(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


VECTOR = [
    a(10, ms=5.0),
    a(20, ms=15.0),
    a(30, "retry", 503, 40.0, error="HTTP 503"),
    a(100, "give_up", None, 5000.0, error="timeout"),
    a(600, ms=1.0),  # outside 5m
    a(4000, "retry", 500, 2.0, error="HTTP 500"),  # outside 1h
    a(90000, ms=1.0),  # outside 24h
]


def test_the_five_minute_window() -> None:
    w = window_stats(VECTOR, now=NOW, seconds=300)
    assert w == {
        "attempts": 4,
        "delivered": 2,
        "retried": 1,
        "failed": 1,
        "success_rate": 0.5,
        "latency_ms": {"p50": 15.0, "p99": 5000.0},
        "status_classes": {"2xx": 2, "5xx": 1, "error": 1},
        "last_error": {"at": NOW - 30, "status": 503, "error": "HTTP 503"},
    }


def test_the_windows_nest() -> None:
    got = windows(VECTOR, now=NOW)
    assert [got[k]["attempts"] for k in ("5m", "1h", "24h")] == [4, 5, 6]
    assert got["1h"]["success_rate"] == 0.6
    assert got["24h"]["success_rate"] == 0.5
    assert got["24h"]["last_error"]["error"] == "HTTP 503"  # the newest failure wins
    assert got["24h"]["latency_ms"] == {"p50": 5.0, "p99": 5000.0}


def test_an_empty_window_has_no_rate_or_percentiles() -> None:
    w = window_stats([a(1000)], now=NOW, seconds=300)
    assert w["attempts"] == 0
    assert w["success_rate"] is None
    assert w["latency_ms"] == {"p50": None, "p99": None}
    assert w["last_error"] is None


def test_a_failure_without_an_error_text_is_described_by_its_status() -> None:
    w = window_stats([a(5, "retry", 502)], now=NOW, seconds=60)
    assert w["last_error"]["error"] == "HTTP 502"


def test_the_window_boundary_excludes_the_attempt_exactly_at_its_start() -> None:
    assert window_stats([a(300)], now=NOW, seconds=300)["attempts"] == 0
    assert window_stats([a(299.9)], now=NOW, seconds=300)["attempts"] == 1


def test_failing_ranks_by_failures_then_success_rate() -> None:
    log = [
        a(1, "retry", 500, sub="s1", error="HTTP 500"),
        a(2, "retry", 500, sub="s1", error="HTTP 500"),
        a(3, sub="s1"),
        a(1, "retry", None, sub="s2", error="connection refused"),
        a(2, "give_up", None, sub="s2", error="timeout"),
        a(1, "retry", 404, sub="s3", error="HTTP 404"),
        a(1, sub="s4"),  # healthy: not listed
        a(7200, "retry", 500, sub="s5"),  # outside the window
    ]
    rows = failing(log, now=NOW, seconds=3600, limit=10)
    assert [(r["subscription_id"], r["failures"], r["attempts"]) for r in rows] == [
        ("s2", 2, 2),
        ("s1", 2, 3),
        ("s3", 1, 1),
    ]
    assert rows[0]["last_error"] == {"at": NOW - 1, "status": None, "error": "connection refused"}
    assert rows[0]["success_rate"] == 0.0
    assert rows[1]["success_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert len(failing(log, now=NOW, seconds=3600, limit=1)) == 1


def test_a_tenant_sees_only_its_own_attempts() -> None:
    log = [
        a(1, tenant="t1"),
        a(2, "retry", 500, tenant="t2", sub="s2"),
        a(3, tenant="t2", sub="s2"),
    ]
    mine = overall(log, tenant_id="t2", now=NOW, limit=10, capacity=100)
    assert mine["windows"]["5m"]["attempts"] == 2
    assert [r["subscription_id"] for r in mine["failing"]] == ["s2"]
    everyone = overall(log, tenant_id=None, now=NOW, limit=10, capacity=100)
    assert everyone["windows"]["5m"]["attempts"] == 3
    assert everyone["attempt_log"] == {
        "attempts_in_memory": 3,
        "capacity": 100,
        "oldest_at": NOW - 3,
    }
