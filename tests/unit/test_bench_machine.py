"""The machine reference a benchmark reports beside its CPU figures: fixed vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.tools.bench.machine import (
    QUIET_REFERENCE_MS,
    MachineWatch,
    at_reference,
    cpu_line,
    read_cpu_line,
    reference_ms,
    steal_share,
)

STAT = """cpu  1453430 29278 171397 5604873 31623 0 33036 437371 0 0
cpu0 726715 14639 85698 2802436 15811 0 16518 218685 0 0
intr 123 0
"""


def test_the_aggregate_cpu_line_is_read_not_a_single_cpus() -> None:
    assert cpu_line(STAT) == [1453430, 29278, 171397, 5604873, 31623, 0, 33036, 437371, 0, 0]


def test_a_text_without_the_aggregate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no aggregate `cpu` line"):
        cpu_line("cpu0 1 2 3 4 5 6 7 8\n")


def test_steal_is_its_share_of_the_first_eight_counters() -> None:
    before = [100, 0, 50, 800, 0, 0, 0, 50, 7, 7]
    # +1000 in all: user 300, system 100, idle 400, steal 200; guest (+500) is in user.
    after = [400, 0, 150, 1200, 0, 0, 0, 250, 507, 7]
    assert steal_share(before, after) == pytest.approx(0.2)


def test_no_time_passed_gives_no_share_and_a_short_line_is_refused() -> None:
    line = [1, 2, 3, 4, 5, 6, 7, 8]
    assert steal_share(line, line) is None
    with pytest.raises(ValueError, match="at least 8 counters"):
        steal_share([1, 2, 3], line)


def test_a_figure_is_scaled_to_the_quiet_day_reference() -> None:
    # 60 us measured while the loop took 24 ms is 30 us where it takes 12 ms.
    assert QUIET_REFERENCE_MS == 12.0
    assert at_reference(60.0, 24.0) == pytest.approx(30.0)
    assert at_reference(60.0, 12.0) == pytest.approx(60.0)
    assert at_reference(10.0, 5.0, quiet=20.0) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="must be positive"):
        at_reference(1.0, 0.0)


def test_the_reference_loop_takes_some_cpu_time() -> None:
    ms = reference_ms(runs=2)
    assert 0.5 < ms < 2000


def test_a_watch_reports_both_references_the_steal_and_the_scaled_figure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.tools.bench import machine

    times = iter([20.0, 24.0, 40.0, 28.0])
    lines = iter([[0, 0, 0, 900, 0, 0, 0, 100], [0, 0, 0, 1700, 0, 0, 0, 300]])
    monkeypatch.setattr(machine, "reference_ms", lambda runs=7: next(times))
    monkeypatch.setattr(machine, "read_cpu_line", lambda path=None: next(lines))
    watch = MachineWatch().start()
    watch.sample()
    watch.sample()
    watch.stop()
    # The median of 20, 24, 40 and 28: one slow sample does not move it much.
    assert watch.reference == pytest.approx(26.0)
    assert watch.steal == pytest.approx(0.2)
    text = watch.describe(65.0)
    assert "reference loop median 26.0 ms of CPU (min 20.0, max 40.0, 4 samples" in text
    assert "steal 20%" in text
    assert "about 30.0 us per attempt" in text


def test_a_sample_counts_the_cpu_it_took_so_a_run_can_take_it_out() -> None:
    watch = MachineWatch()
    watch.sample()
    assert len(watch.samples) == 1
    # Seven runs of a loop that takes at least the best of them.
    assert watch.own_cpu_s * 1000 >= 7 * watch.samples[0] * 0.99


def test_a_machine_without_proc_stat_reports_the_steal_as_unknown(tmp_path: Path) -> None:
    assert read_cpu_line(tmp_path / "missing") is None
    watch = MachineWatch(samples=[12.0])
    assert "steal unknown" in watch.describe(10.0)
