"""The ordered-hold bookkeeping keeps followers in their original order through rotations."""

from __future__ import annotations

from collections import deque

from streams.delivery.ordering import Holds


class Simulation:
    """A FIFO tier queue driven exactly as the engine drives it."""

    def __init__(self) -> None:
        self.holds = Holds()
        self.tier: deque[str] = deque()
        self.sent: list[str] = []

    def head_fails(self, head: str, lane: list[str]) -> None:
        hold = self.holds.head_failed("s", head)
        next_cycle = hold.current > 0
        for d in lane:
            self.holds.queued("s", next_cycle=next_cycle)
            self.tier.append(d)

    def arrive(self, d: str) -> None:
        hold = self.holds.get("s")
        if hold is None:
            self.sent.append(d)
            return
        verdict = self.holds.arrival("s")
        if verdict == "wait":
            hold.waiting.append(d)
        elif verdict == "queue":
            self.holds.queued("s")
            self.tier.append(d)
        else:
            self.sent.append(d)

    def flush(self) -> None:
        for d in self.holds.take_waiting("s"):
            self.holds.queued("s")
            self.tier.append(d)

    def come_out(self) -> None:
        d = self.tier.popleft()
        if self.holds.follower_out("s") == "send":
            self.sent.append(d)
        else:
            self.tier.append(d)
        self.flush()

    def resolve(self, head: str) -> None:
        self.sent.append(head)
        self.holds.resolved("s", head)
        self.flush()


def test_followers_are_sent_in_order_when_the_head_recovers_mid_rotation() -> None:
    sim = Simulation()
    sim.head_fails("h", ["f1", "f2", "f3", "f4"])
    sim.come_out()  # f1 rotates
    sim.arrive("x1")  # kept until the cycle ends
    sim.come_out()  # f2 rotates
    sim.resolve("h")  # mid-cycle: f3, f4 still rotate first
    sim.arrive("x2")
    for _ in range(20):
        if not sim.tier:
            break
        sim.come_out()
    assert sim.sent == ["h", "f1", "f2", "f3", "f4", "x1", "x2"]
    assert sim.holds.get("s") is None


def test_a_follower_failing_while_draining_becomes_the_head_and_order_is_kept() -> None:
    sim = Simulation()
    sim.head_fails("h", ["f1", "f2", "f3"])
    sim.resolve("h")
    sim.come_out()  # f1 sent (draining)
    sim.sent.remove("f1")  # ... and fails: it is the new head; f2, f3 still in the tier
    sim.head_fails("f1", [])
    for _ in range(2):
        sim.come_out()  # f2, f3 rotate
    sim.resolve("f1")
    for _ in range(10):
        if not sim.tier:
            break
        sim.come_out()
    assert sim.sent == ["h", "f1", "f2", "f3"]


def test_without_a_hold_deliveries_go_straight_out() -> None:
    sim = Simulation()
    sim.arrive("a")
    assert sim.sent == ["a"]


def test_arrivals_kept_during_a_cycle_join_the_queue_at_its_end_while_the_head_still_fails() -> (
    None
):
    sim = Simulation()
    sim.head_fails("h", ["f1", "f2"])
    sim.come_out()  # f1 rotates
    sim.arrive("x1")  # kept until this cycle ends
    hold = sim.holds.get("s")
    assert hold is not None
    assert hold.waiting == ["x1"]
    sim.come_out()  # f2 rotates: the cycle ends, x1 joins the end of the queue
    assert hold.waiting == []
    assert list(sim.tier) == ["f1", "f2", "x1"]
    for _ in range(3):  # a whole further cycle while the head still fails
        sim.come_out()
    assert list(sim.tier) == ["f1", "f2", "x1"]
    sim.arrive("x2")
    sim.resolve("h")
    for _ in range(10):
        if not sim.tier:
            break
        sim.come_out()
    assert sim.sent == ["h", "f1", "f2", "x1", "x2"]
    assert sim.holds.get("s") is None
