"""The floor bench's read: what is there at once, else the first record within the wait
and what came with it (consume(n, t) alone waits t for a full batch)."""

from __future__ import annotations

from typing import Any

from streams.tools.bench.floor import _take


class Queue:
    """A stand-in for a consumer's local queue: records arrive in ``waves``; a call with a
    wait takes the next wave if one is due."""

    def __init__(self, ready: list[str], later: list[str]) -> None:
        self.ready, self.later = ready, later
        self.calls: list[tuple[int, float]] = []

    def consume(self, n: int, wait: float) -> list[Any]:
        self.calls.append((n, wait))
        if not self.ready and wait > 0 and self.later:
            self.ready, self.later = self.later, []
        got, self.ready = self.ready[:n], self.ready[n:]
        return got


def test_what_is_there_is_taken_without_waiting() -> None:
    q = Queue(["a", "b", "c"], ["d"])
    assert _take(q, 2, 0.1) == ["a", "b"]
    assert q.calls == [(2, 0.0)]


def test_an_empty_queue_waits_for_one_then_takes_the_rest_without_waiting() -> None:
    q = Queue([], ["a", "b", "c", "d"])
    assert _take(q, 3, 0.1) == ["a", "b", "c"]
    assert q.calls == [(3, 0.0), (1, 0.1), (2, 0.0)]


def test_nothing_within_the_wait_is_an_empty_batch() -> None:
    q = Queue([], [])
    assert _take(q, 5, 0.1) == []
    assert q.calls == [(5, 0.0), (1, 0.1)]
