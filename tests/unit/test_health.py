"""The auto-disable policy, with fixed attempt sequences."""

from __future__ import annotations

import pytest

from streams.health import FailureState, observe
from streams.records import Attempt

T0 = 1_800_000_000.0


def attempt(
    status: int | None, *, at: float = T0, error: str | None = None, outcome: str = "retry"
) -> Attempt:
    return Attempt(
        delivery_id="msg_x",
        event_id="e",
        event_type="a.b",
        tenant_id="t",
        subscription_id="s",
        attempt=1,
        at=at,
        duration_ms=1.0,
        outcome=outcome,
        status=status,
        error=error,
    )


def run(
    attempts: list[Attempt],
    *,
    max_failures: int = 5,
    max_failing_s: float = 5 * 86400,
    now: float = T0,
) -> tuple[FailureState, str | None]:
    state = FailureState()
    reason = None
    for a in attempts:
        verdict = observe(state, a, max_failures=max_failures, max_failing_s=max_failing_s, now=now)
        state, reason = verdict.state, verdict.disable_reason or reason
    return state, reason


def test_five_consecutive_5xx_responses_disable_with_that_reason() -> None:
    state, reason = run([attempt(503), attempt(500), attempt(502), attempt(503), attempt(500)])
    assert reason == "5 consecutive 5xx responses"
    assert state.consecutive == 5


def test_four_failures_do_not_disable() -> None:
    assert run([attempt(503)] * 4)[1] is None


def test_any_success_resets_the_count_and_reports_a_recovery() -> None:
    state, _ = run([attempt(503)] * 3)
    verdict = observe(
        state, attempt(200, outcome="delivered"), max_failures=5, max_failing_s=1e9, now=T0
    )
    assert verdict.state == FailureState()
    assert verdict.recovered_after == 3
    assert (
        run([*[attempt(503)] * 4, attempt(200, outcome="delivered"), *[attempt(503)] * 4])[1]
        is None
    )


@pytest.mark.parametrize(
    ("attempts", "reason"),
    [
        ([attempt(None, error="timeout")] * 5, "5 consecutive timeouts"),
        ([attempt(None, error="connection refused")] * 5, "5 consecutive connection failures"),
        ([attempt(404)] * 5, "5 consecutive 4xx responses"),
        (
            [attempt(503), attempt(None, error="read timeout"), *[attempt(500)] * 3],
            "5 consecutive failures",
        ),
    ],
)
def test_the_reason_names_the_kind_of_failure(attempts: list[Attempt], reason: str) -> None:
    assert run(attempts)[1] == reason


def test_410_gone_disables_at_once() -> None:
    _, reason = run([attempt(410, outcome="give_up")])
    assert reason == "410 Gone: the endpoint asked to stop receiving webhooks"


def test_failing_continuously_for_longer_than_the_limit_disables_with_the_last_error() -> None:
    first = attempt(503, at=T0)
    later = attempt(None, at=T0 + 5 * 86400 + 60, error="timeout")
    _, reason = run([first, later], max_failures=1000, now=T0 + 5 * 86400 + 60)
    assert reason == "failing for 5 days, last error: timeout"
