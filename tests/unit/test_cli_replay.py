"""`streams dlq replay`: a bar per letter against the counted total, and where it stopped.

``replay`` is replaced by a fake (the real one runs against a broker in
tests/integration/test_replay_stop.py); what is tested is the command's wiring:
it counts first, hands that count to the replay, moves its bar on every
letter, and says where a stopped replay stopped, with the exit status of the
signal that stopped it.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.cli import dlq as dlq_cli
from streams.deadletter import replay as dlq
from streams.deadletter.scan import Stop

LETTERS = 89


class FakeReplay:
    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Any, flt: dlq.DlqFilter, **kw: Any) -> dlq.ReplaySummary:
        self.calls.append(kw)
        if kw.get("dry_run"):
            progress = kw["scan_progress"]
            progress(500, 1000)
            progress(1000, 1000)
            return dlq.ReplaySummary(
                replay_id="rpl_count", matched=LETTERS, total=LETTERS, to_send=LETTERS
            )
        counted: dlq.ReplaySummary = kw["counted"]
        stop: Stop = kw["stop"]
        result = dlq.ReplaySummary(replay_id="rpl_1", total=counted.total, to_send=LETTERS)
        for n in range(1, LETTERS + 1):
            if self.stop_after is not None and n > self.stop_after:
                stop.set("interrupted")
                result.status, result.stopped_at = "interrupted", f"0:{n - 2}"
                return result
            result.matched = result.replayed = n
            kw["progress"](n, counted.total)
        result.status = "finished"
        return result


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, int]]]:
    seen: dict[str, list[tuple[int, int]]] = {}
    real = dlq_cli._Bar.update

    def spy(self: Any, done: int, total: int) -> None:
        seen.setdefault(self.label, []).append((done, total))
        real(self, done, total)

    monkeypatch.setattr(dlq_cli._Bar, "update", spy)
    return seen


def test_the_bar_moves_with_every_letter_against_the_counted_total(
    monkeypatch: pytest.MonkeyPatch, updates: dict[str, list[tuple[int, int]]]
) -> None:
    fake = FakeReplay()
    monkeypatch.setattr(dlq, "replay", fake)
    result = CliRunner().invoke(cli, ["dlq", "replay", "--reason", "exhausted"])
    assert result.exit_code == 0, result.output
    assert fake.calls[1]["counted"].total == LETTERS  # the count's total, handed over
    # Was: a bar of length 1 stuck at 0 for the whole replay, then 89/89 at the end.
    assert updates["replaying"] == [(n, LETTERS) for n in range(1, LETTERS + 1)]
    assert updates["counting"] == [(500, 1000), (1000, 1000)]
    assert "rpl_1: matched 89, replayed 89" in result.stdout


def test_a_stopped_replay_says_where_and_exits_with_the_signal(
    monkeypatch: pytest.MonkeyPatch, updates: dict[str, list[tuple[int, int]]]
) -> None:
    monkeypatch.setattr(dlq, "replay", FakeReplay(stop_after=40))
    result = CliRunner().invoke(cli, ["dlq", "replay"])
    assert result.exit_code == 128 + signal.SIGINT
    assert result.stdout.startswith(
        "rpl_1: interrupted at 0:39 (partition:offset), 40 of 89 sent; resume it with"
    )
    assert "streams dlq replay --resume rpl_1" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--cancel", "rpl_1", "--force"],
        ["--cancel", "rpl_1", "--subscription", "s"],
        ["--resume", "rpl_1", "--tenant", "t"],
        ["--resume", "rpl_1", "--force"],
    ],
)
def test_cancel_and_resume_refuse_options_they_do_not_take(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["dlq", "replay", *args])
    assert result.exit_code == 2
    assert "--cancel" in result.output or "--resume" in result.output
