"""Ordered subscriptions: one request in flight, and a failure holds the queue.

An ``ordered`` subscription's lane sends one request at a time, in the order
records arrive (a subscription's records share one partition). When the head
fails and is retried, later deliveries must not pass it, and a retry may
take hours, so they cannot wait in memory. The subscription is *held*:

- its followers (the deliveries behind the head, including those already
  queued in its lane) wait in the first retry tier, a first-in first-out
  partition, and no attempt is made for them;
- while the head keeps failing, followers that come out of the tier go back
  in at the end: the queue *rotates*, one whole **cycle** at a time;
- a delivery that arrives during a cycle is kept (un-acked) until the cycle
  ends and only then joins the end of the queue, so a rotation never
  interleaves new and old followers;
- when the head is finally delivered or dead-lettered, the current cycle is
  finished first; at that boundary the queue holds the followers in their
  original order, and the hold *drains*: followers are sent in order as they
  come out, and deliveries arriving meanwhile join the end of the queue;
- if a follower fails while draining, it becomes the new head and the hold
  starts over, with the followers still in the lane moved to the next cycle
  ahead of the rest (they are older).

A hold ends early when its subscription is deleted, disabled or made
unordered: the arrivals it kept join the end of the queue at once, and every
record of the subscription is then handled by its new state (dead-lettered
while disabled, sent as it comes once unordered).

Kept in memory by the worker that owns the subscription's partition
(deliveries and every retry tier follow the same assignment). A crash or a
rebalance forgets the hold: nothing is lost (every follower is in Kafka), but
a follower still waiting in the tier may then be sent after a newer delivery.

:class:`Holds` is the bookkeeping; it does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hold:
    head: str | None  # the failing head's delivery id; None once it is resolved
    current: int = 0  # followers of the current cycle still in the tier
    following: int = 0  # followers already sent back for the next cycle
    draining: bool = False
    drain_at_boundary: bool = False  # the head was resolved during a cycle
    at_boundary: bool = False  # a cycle just ended: the kept arrivals join the queue now
    waiting: list[Any] = field(default_factory=list)  # arrivals kept until the boundary


class Holds:
    def __init__(self) -> None:
        self._holds: dict[str, Hold] = {}

    def __len__(self) -> int:
        return len(self._holds)

    def get(self, sub_id: str) -> Hold | None:
        return self._holds.get(sub_id)

    def head_failed(self, sub_id: str, delivery_id: str) -> Hold:
        """The head failed and will be retried. Returns the (new or renewed) hold."""
        hold = self._holds.get(sub_id)
        if hold is None:
            hold = self._holds[sub_id] = Hold(head=delivery_id)
        else:
            # A follower sent while draining failed: the rest are behind it again.
            hold.head = delivery_id
            hold.draining = False
            hold.drain_at_boundary = False
        return hold

    def resolved(self, sub_id: str, delivery_id: str) -> None:
        """The head was delivered or dead-lettered."""
        hold = self._holds.get(sub_id)
        if hold is None or hold.head != delivery_id:
            return
        hold.head = None
        if hold.following == 0:
            # Nothing has rotated in this cycle: the queue is in order already.
            hold.draining = True
            if hold.current == 0 and not hold.waiting:
                del self._holds[sub_id]
        else:
            hold.drain_at_boundary = True

    def follower_out(self, sub_id: str) -> str:
        """A follower left the tier: ``"send"`` it now, or ``"again"`` (back to the queue)."""
        hold = self._holds.get(sub_id)
        if hold is None:
            return "send"
        hold.current = max(0, hold.current - 1)
        if hold.draining:
            if hold.current == 0 and hold.following == 0:
                del self._holds[sub_id]
            return "send"
        hold.following += 1
        if hold.current == 0:
            self._boundary(sub_id, hold)
        return "again"

    def queued(self, sub_id: str, *, next_cycle: bool = False) -> None:
        """A follower was put in the tier (end of the queue)."""
        hold = self._holds.get(sub_id)
        if hold is not None:
            if next_cycle:
                hold.following += 1
            else:
                hold.current += 1

    def arrival(self, sub_id: str) -> str:
        """A new delivery for a held subscription: ``"queue"`` it now, or ``"wait"``
        (keep it until the cycle ends: :meth:`take_waiting`)."""
        hold = self._holds.get(sub_id)
        if hold is None:
            return "send"
        if hold.draining or (hold.current == 0 and hold.following == 0):
            return "queue"
        return "wait"

    def drop(self, sub_id: str) -> Hold | None:
        """End the hold whatever its state (the subscription was deleted, disabled, or
        made unordered); returns it, so the caller can settle its kept arrivals."""
        return self._holds.pop(sub_id, None)

    def take_waiting(self, sub_id: str) -> list[Any]:
        """The arrivals kept during the cycle that just ended (or all, once draining).

        Called after every follower leaves the tier; returns nothing in the middle of
        a cycle. At each boundary the kept arrivals join the end of the queue, so
        they are not held in memory (un-acked) for as long as the head keeps failing.
        """
        hold = self._holds.get(sub_id)
        if hold is None:
            return []
        if hold.current and not hold.draining and not hold.at_boundary:
            return []
        hold.at_boundary = False
        waiting, hold.waiting = hold.waiting, []
        return waiting

    def _boundary(self, sub_id: str, hold: Hold) -> None:
        """A cycle ended: the next one starts (in original order)."""
        hold.current, hold.following = hold.following, 0
        hold.at_boundary = True
        if hold.head is None:
            hold.draining = True
            if hold.current == 0 and not hold.waiting:
                del self._holds[sub_id]
