"""The in-memory delivery log: bounded, and off when its capacity is 0."""

from __future__ import annotations

import pytest

from streams.attempts import AttemptLog
from streams.config import Settings
from streams.errors import ConfigError, UnavailableError
from streams.records import Attempt


def attempt(delivery_id: str) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        event_id="e",
        event_type="a.b",
        tenant_id="t",
        subscription_id="s",
        attempt=1,
        at=1_800_000_000.0,
        duration_ms=1.0,
        outcome="delivered",
        status=200,
    )


def test_the_log_keeps_the_newest_attempts_up_to_its_capacity() -> None:
    log = AttemptLog(2)
    for n in range(3):
        log.add(attempt(f"d{n}"))
    assert [a.delivery_id for a in log.snapshot()] == ["d1", "d2"]
    assert log.attempts("d0") == []
    log.require()  # on: no error


def test_a_log_of_capacity_zero_is_off_and_says_how_to_turn_it_on() -> None:
    log = AttemptLog(0)
    assert not log.enabled
    with pytest.raises(UnavailableError, match="STREAMS_ATTEMPT_LOG_MEMORY"):
        log.require()


def test_the_setting_takes_zero_but_not_a_negative_number() -> None:
    assert Settings.from_env({"STREAMS_ATTEMPT_LOG_MEMORY": "0"}).attempt_log_memory == 0
    with pytest.raises(ConfigError, match="STREAMS_ATTEMPT_LOG_MEMORY"):
        Settings.from_env({"STREAMS_ATTEMPT_LOG_MEMORY": "-1"})
