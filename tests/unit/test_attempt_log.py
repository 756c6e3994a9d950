"""The in-memory delivery log: bounded, and off when its capacity is 0."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from streams.config import Settings
from streams.errors import ConfigError, UnavailableError
from streams.log.attempts import AttemptLog
from streams.records import Attempt


def attempt(delivery_id: str, number: int = 1, at: float = 1_800_000_000.0) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        event_id="e",
        event_type="a.b",
        tenant_id="t",
        subscription_id="s",
        attempt=number,
        at=at,
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


def test_eviction_drops_a_deliverys_oldest_attempts_and_keeps_the_rest_in_order() -> None:
    log = AttemptLog(4)
    # d1 and d2 interleaved; attempt 3 of d1 arrives before its attempt 2 (two workers).
    for a in (
        attempt("d1", 1, at=1.0),
        attempt("d2", 1, at=2.0),
        attempt("d1", 3, at=4.0),
        attempt("d1", 2, at=3.0),
        attempt("d2", 2, at=5.0),
    ):
        log.add(a)
    assert [a.attempt for a in log.attempts("d1")] == [2, 3]  # d1's first attempt left
    assert [a.attempt for a in log.attempts("d2")] == [1, 2]
    log.add(attempt("d3"))  # evicts d2's first attempt
    assert [a.attempt for a in log.attempts("d2")] == [2]
    assert [(a.delivery_id, a.attempt) for a in log.snapshot()] == [
        ("d1", 3),
        ("d1", 2),
        ("d2", 2),
        ("d3", 1),
    ]
    for _ in range(4):
        log.add(attempt("d9"))
    assert log.attempts("d1") == log.attempts("d2") == []
    assert len(log._by_delivery) == 1  # emptied deliveries are forgotten


def test_attempts_come_back_equal_to_what_was_added() -> None:
    log = AttemptLog(10)
    a = dataclasses.replace(attempt("d1"), error="timeout", status=None, replay_id="r", sent=False)
    log.add(a)
    assert log.attempts("d1") == [a]
    assert log.snapshot() == [a]


def test_the_window_is_invisible_to_the_garbage_collector() -> None:
    """A full collection must not walk 200,000 attempts (a pause of 150 ms or more)."""
    log = AttemptLog(1_000)
    for n in range(1_000):
        log.add(attempt(f"d{n % 300}", n))
    gc.collect()  # untracks tuples of strings and numbers
    rows = log.rows()
    assert len(rows) == 1_000
    assert not any(gc.is_tracked(row) for row in rows)
    assert not any(gc.is_tracked(history) for history in log._by_delivery.values())


def test_records_from_the_topic_are_kept_and_undecodable_ones_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AttemptLog(10)
    log.apply("d1", attempt("d1").to_bytes())
    log.apply("d2", b'{"delivery_id": "d2"}')  # not an attempt: skipped, logged
    log.apply("d3", None)  # a tombstone: nothing to keep
    assert log.attempts("d1") == [attempt("d1")]
    assert len(log) == 1
    assert "undecodable attempt record skipped" in caplog.text
