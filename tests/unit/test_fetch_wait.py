"""When an aiokafka consumer fetches with the long idle wait (streams.kafka.fetch_wait)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher

from streams.config import Settings
from streams.errors import ConfigError
from streams.kafka.fetch_wait import EMPTY_FETCHES, _IdleAwareFetcher, adapt_fetch_wait


class _Assignment:
    def __init__(self, n: int = 3) -> None:
        self.states = {
            f"tp{i}": SimpleNamespace(paused=False, has_valid_position=True) for i in range(n)
        }

    @property
    def tps(self) -> set[str]:
        return set(self.states)

    def state_value(self, tp: str) -> Any:
        return self.states[tp]


def _fetcher(busy: int = 100, idle: int = 2000) -> Any:
    fetcher = _IdleAwareFetcher.__new__(_IdleAwareFetcher)
    fetcher._records = {}
    fetcher._busy_wait_ms = busy
    fetcher._idle_wait_ms = idle
    fetcher._empty_fetches = 0
    fetcher._counted_assignment = None
    return fetcher


def _idle_assignment(fetcher: Any) -> _Assignment:
    assignment = _Assignment()
    assert not fetcher._is_idle(assignment)  # a new assignment: the count starts
    fetcher._empty_fetches = EMPTY_FETCHES
    return assignment


def test_idle_only_after_empty_fetches_of_the_same_assignment() -> None:
    fetcher = _fetcher()
    assignment = _Assignment()
    assert not fetcher._is_idle(assignment)
    fetcher._empty_fetches = EMPTY_FETCHES - 1
    assert not fetcher._is_idle(assignment)
    fetcher._empty_fetches = EMPTY_FETCHES
    assert fetcher._is_idle(assignment)
    # Another assignment (a rebalance): counted again from zero.
    assert not fetcher._is_idle(_Assignment())
    assert fetcher._empty_fetches == 0


@pytest.mark.parametrize("left_out", ["buffered", "paused", "no position"])
def test_not_idle_when_the_request_would_leave_a_partition_out(left_out: str) -> None:
    fetcher = _fetcher()
    assignment = _idle_assignment(fetcher)
    assert fetcher._is_idle(assignment)
    if left_out == "buffered":
        fetcher._records["tp1"] = object()
    elif left_out == "paused":
        assignment.states["tp1"].paused = True
    else:
        assignment.states["tp1"].has_valid_position = False
    assert not fetcher._is_idle(assignment)


async def test_a_fetch_with_records_ends_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fetcher = _fetcher()
    assignment = _idle_assignment(fetcher)
    answers = iter([False, False, True, False, False])

    async def parent(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
        return next(answers)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", parent)
    counts = []
    for _ in range(4):
        await fetcher._proc_fetch_request(assignment, 0, None)
        counts.append(fetcher._empty_fetches)
    assert counts == [EMPTY_FETCHES + 1, EMPTY_FETCHES + 2, 0, 1]
    # A fetch of an assignment that is gone counts for nothing.
    await fetcher._proc_fetch_request(_Assignment(), 0, None)
    assert fetcher._empty_fetches == 1


def test_a_seek_ends_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Fetcher, "seek_to", lambda self, tp, offset: None)
    monkeypatch.setattr(Fetcher, "request_offset_reset", lambda self, tps, strategy: None)
    fetcher = _fetcher()
    fetcher._empty_fetches = 10
    fetcher.seek_to("tp0", 5)
    assert fetcher._empty_fetches == 0
    fetcher._empty_fetches = 10
    fetcher.request_offset_reset(["tp0"], 0)
    assert fetcher._empty_fetches == 0


def test_the_idle_wait_and_poll_are_used_only_while_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def parent(self: Any, assignment: Any) -> Any:
        seen.append(self._fetch_max_wait_ms)
        return [], {}, 0.2, False, []

    monkeypatch.setattr(Fetcher, "_get_actions_per_node", parent)
    fetcher = _fetcher()
    assignment = _Assignment()
    assert fetcher._get_actions_per_node(assignment)[2] == 0.2
    fetcher._empty_fetches = EMPTY_FETCHES
    assert fetcher._get_actions_per_node(assignment)[2] == 2.0
    assignment.states["tp0"].paused = True
    assert fetcher._get_actions_per_node(assignment)[2] == 0.2
    assert seen == [100, 2000, 100]


@pytest.mark.parametrize("left_out", ["reset", "no leader"])
def test_a_request_that_leaves_a_partition_out_is_rebuilt_short(
    monkeypatch: pytest.MonkeyPatch, left_out: str
) -> None:
    seen = []

    def parent(self: Any, assignment: Any) -> Any:
        seen.append(self._fetch_max_wait_ms)
        resets = {0: ["tp0"]} if left_out == "reset" else {}
        return ["request"], resets, 0.2, left_out == "no leader", []

    monkeypatch.setattr(Fetcher, "_get_actions_per_node", parent)
    fetcher = _fetcher()
    assignment = _idle_assignment(fetcher)
    assert fetcher._get_actions_per_node(assignment)[2] == 0.2
    assert seen == [2000, 100]


def _started(wait_ms: int = 100, min_bytes: int = 1) -> Any:
    fetcher = Fetcher.__new__(Fetcher)
    fetcher._fetch_max_wait_ms = wait_ms
    fetcher._fetch_min_bytes = min_bytes
    return SimpleNamespace(_fetcher=fetcher)


def test_adapt_fetch_wait_leaves_a_consumer_it_would_slow_alone() -> None:
    assert not adapt_fetch_wait(_started(), 0)
    assert not adapt_fetch_wait(_started(wait_ms=500), 500)
    # A consumer that waits for bytes: the broker would hold a quiet spell's first records.
    assert not adapt_fetch_wait(_started(min_bytes=256 * 1024), 2000)
    assert not adapt_fetch_wait(SimpleNamespace(_fetcher=None), 2000)
    consumer = _started()
    assert adapt_fetch_wait(consumer, 2000)
    assert isinstance(consumer._fetcher, _IdleAwareFetcher)
    assert consumer._fetcher._busy_wait_ms == 100
    assert consumer._fetcher._idle_wait_ms == 2000
    assert adapt_fetch_wait(consumer, 2000)  # once only


def test_the_idle_wait_setting() -> None:
    assert Settings.from_env({}).kafka_idle_fetch_max_wait_ms == 2000
    assert (
        Settings.from_env(
            {"STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS": "0"}
        ).kafka_idle_fetch_max_wait_ms
        == 0
    )
    for bad in ("-1", "30001", "x"):
        with pytest.raises(ConfigError):
            Settings.from_env({"STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS": bad})
