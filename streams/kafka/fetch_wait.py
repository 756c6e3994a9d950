"""A longer fetch wait for an aiokafka consumer while it is idle (issue 22).

An idle consumer's cost is its fetch rate: with ``fetch_max_wait_ms=100`` the
broker answers an empty fetch every 100 ms, and each answer is a round of
aiokafka's pure-Python fetcher (for Faust's consumer, in a thread and loop of
its own). :func:`adapt_fetch_wait` makes a started consumer ask with
``idle_ms`` instead while it is idle, and with its own wait otherwise.

"Idle", per fetch request, means both of:

- the last :data:`EMPTY_FETCHES` fetches of this assignment returned no
  record; and
- the request names *every* assigned partition: none has fetched records the
  application has not taken yet, none is paused, every one has a position
  (no offset reset pending) and a known leader.

With ``fetch_min_bytes=1`` the broker answers a fetch as soon as any
partition in it has a record (Kafka's long polling), so a long wait adds no
latency to the first record after a quiet spell. It is also the only case in
which it is safe: aiokafka has at most one fetch in flight per broker and
leaves out of it the partitions that are buffered or paused, so a long wait
on a request that left some out would hold those partitions back once the
application takes their records or resumes them (the reason the stage
consumer's wait is short, :mod:`streams.kafka.faust_consumer`). A request
that names every partition has nothing left out to hold back. What it can
still delay is a request sent to the same broker on the same connection
behind it (the broker answers a connection's requests in order): a position
reset (``ListOffsets``) or a metadata refresh waits for the held fetch, at
most ``idle_ms``; so a consumer that seeks should seek its partitions in
one call (``seek_to_beginning(*tps)``), not one by one. Group traffic
(heartbeats, commits, joins) uses a connection of its own. A change of
assignment and a seek start the count again, so the fetches after a
rebalance or a seek use the short wait.

The first fetch that returns a record, or a request that leaves a partition
out, goes back to the consumer's own wait. While idle, the fetcher's
background routine also stops polling five times a second (aiokafka's
``fetcher_timeout``, 0.2 s) and waits up to ``idle_ms`` for the events it
acts on, all of which wake it anyway.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

log = logging.getLogger(__name__)

#: Empty fetches in a row before the wait is lengthened.
EMPTY_FETCHES = 3


class _IdleAwareFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher, choosing the wait of each request it builds (see module)."""

    _busy_wait_ms: int
    _idle_wait_ms: int
    _empty_fetches: int
    _counted_assignment: Any

    def _is_idle(self, assignment: Any) -> bool:
        if assignment is not self._counted_assignment:
            self._counted_assignment = assignment
            self._empty_fetches = 0
            return False
        if self._empty_fetches < EMPTY_FETCHES or self._records:
            return False
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            if state.paused or not state.has_valid_position:
                return False
        return True

    def _get_actions_per_node(self, assignment: Any) -> Any:
        idle = self._is_idle(assignment)
        # Read by the parent when it builds each FetchRequest below.
        self._fetch_max_wait_ms = self._idle_wait_ms if idle else self._busy_wait_ms
        fetches, resets, timeout, invalid_metadata, resume_futures = super()._get_actions_per_node(
            assignment
        )
        if idle and (resets or invalid_metadata):
            # A partition to reset, or without a leader, is left out of the request.
            self._fetch_max_wait_ms = self._busy_wait_ms
            return super()._get_actions_per_node(assignment)
        if idle:
            # The routine's poll (``fetcher_timeout``, 0.2 s): every event it acts on
            # while idle (a fetch done, records taken, a seek, a resume, a change of
            # assignment) is one of the futures it waits on.
            timeout = max(timeout, self._idle_wait_ms / 1000)
        return fetches, resets, timeout, invalid_metadata, resume_futures

    def request_offset_reset(self, tps: Any, strategy: Any) -> Any:
        # A seek_to_* waits for the fetch in flight: the next ones use the short wait.
        self._empty_fetches = 0
        return super().request_offset_reset(tps, strategy)

    def seek_to(self, tp: Any, offset: int) -> Any:
        self._empty_fetches = 0
        return super().seek_to(tp, offset)

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> bool:
        got_records: bool = await super()._proc_fetch_request(assignment, node_id, request)
        if assignment is self._counted_assignment:
            self._empty_fetches = 0 if got_records else self._empty_fetches + 1
        return got_records


def adapt_fetch_wait(consumer: Any, idle_ms: int) -> bool:
    """Make a *started* aiokafka consumer fetch with ``idle_ms`` while idle (see module).

    Does nothing (returns False) when ``idle_ms`` is not longer than the consumer's own
    wait, or when the consumer waits for more than one byte (the broker would then hold
    the first records of a quiet spell for up to ``idle_ms``).
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or isinstance(fetcher, _IdleAwareFetcher):
        return isinstance(fetcher, _IdleAwareFetcher)
    try:
        busy_ms = int(fetcher._fetch_max_wait_ms)
        min_bytes = int(fetcher._fetch_min_bytes)
    except AttributeError:  # another aiokafka's internals: keep its own fetcher
        log.warning("idle fetch wait: this aiokafka's fetcher is not the one known; not used")
        return False
    if idle_ms <= busy_ms or min_bytes > 1:
        return False
    fetcher._busy_wait_ms = busy_ms
    fetcher._idle_wait_ms = int(idle_ms)
    fetcher._empty_fetches = 0
    fetcher._counted_assignment = None
    # The running fetch routine looks both methods up on each round.
    fetcher.__class__ = _IdleAwareFetcher
    return True
