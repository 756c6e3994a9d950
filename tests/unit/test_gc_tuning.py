"""The worker's garbage-collector settings and the pause recorder."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.ops import gc_tuning
from streams.ops.gc_tuning import PauseRecorder


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_recorder_reports_each_collection_with_its_generation_and_duration() -> None:
    seen: list[tuple[int, float]] = []
    ticks = iter([10.0, 10.25, 20.0, 20.001])
    recorder = PauseRecorder(lambda g, s: seen.append((g, s)), clock=lambda: next(ticks))
    recorder("start", {"generation": 2})
    recorder("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    recorder("start", {"generation": 0})
    recorder("stop", {"generation": 0, "collected": 3, "uncollectable": 0})
    assert seen == [(2, 0.25), (0, pytest.approx(0.001))]


def test_an_installed_recorder_sees_real_collections_until_removed() -> None:
    seen: list[tuple[int, float]] = []
    recorder = PauseRecorder(lambda g, s: seen.append((g, s)))
    recorder.install()
    recorder.install()  # once only
    try:
        gc.collect()
        assert [g for g, _ in seen] == [2]
        assert seen[0][1] >= 0
    finally:
        recorder.remove()
    gc.collect()
    assert len(seen) == 1
    assert recorder not in gc.callbacks


def test_tune_freezes_what_exists_and_raises_the_first_threshold(restore_gc: None) -> None:
    survivor = [object() for _ in range(100)]  # a container alive across the freeze
    gc_tuning.tune()
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_threshold()[0] > 700  # CPython's default
    assert gc.get_freeze_count() >= 100
    # Frozen objects are out of every generation: a full collection does not see them.
    assert not any(o is survivor for o in gc.get_objects())
