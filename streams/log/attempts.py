"""The attempt log: every attempt, success or failure, as the delivery log.

The engine writes one :class:`~streams.records.Attempt` per HTTP attempt to
the ``attempts`` topic (keyed by delivery id). Each worker follows that topic
into :class:`AttemptLog`, a bounded in-memory index of the most recent
attempts (``STREAMS_ATTEMPT_LOG_MEMORY``, read from the last
``STREAMS_ATTEMPT_LOG_WINDOW`` at start), which the API queries:

- ``GET /v1/deliveries``: one row per delivery, newest first, filtered by
  subscription, status, event type and time;
- ``GET /v1/deliveries/{id}``: a delivery with all its attempts.

The topic itself keeps ``STREAMS_LOG_RETENTION`` (30 days by default);
the memory window only bounds what the API answers from without a scan.

The window holds each attempt as a plain tuple of its fields (strings,
numbers, None), not as an :class:`~streams.records.Attempt`. CPython's
garbage collector stops tracking such tuples after their first collection,
so a full collection no longer walks the window. Held as objects, the
window was most of what each full collection walked (110-184 ms of CPU each
in a latency run, during which the worker delivers nothing; docs/benchmarks.md,
"The garbage collector"). Readers get :class:`Attempt` objects back.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from streams.errors import DecodeError, UnavailableError
from streams.records import Attempt

log = logging.getLogger(__name__)

#: ``status`` filter words and what they select (anything else must be an HTTP status).
STATUS_WORDS = {
    "delivered": lambda a: a.outcome == "delivered",
    "failed": lambda a: a.outcome == "give_up",
    "retrying": lambda a: a.outcome == "retry",
}


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    tenant_id: str | None = None
    subscription_id: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def matches(self, last: Attempt) -> bool:
        if self.tenant_id is not None and last.tenant_id != self.tenant_id:
            return False
        if self.subscription_id is not None and last.subscription_id != self.subscription_id:
            return False
        if self.event_type is not None and last.event_type != self.event_type:
            return False
        if self.since is not None and last.at < self.since:
            return False
        if self.until is not None and last.at >= self.until:
            return False
        if self.status is not None:
            word = STATUS_WORDS.get(self.status)
            if word is not None:
                return bool(word(last))
            return str(last.status) == self.status
        return True


#: An attempt as the window keeps it: its fields in declaration order.
Row = tuple[Any, ...]
_FIELDS = tuple(f.name for f in fields(Attempt))
_as_row = operator.attrgetter(*_FIELDS)
_DELIVERY_ID, _ATTEMPT, _AT = (_FIELDS.index(n) for n in ("delivery_id", "attempt", "at"))
_TENANT, _SUBSCRIPTION, _EVENT_TYPE = (
    _FIELDS.index(n) for n in ("tenant_id", "subscription_id", "event_type")
)


def materialize(rows: Iterable[Row]) -> list[Attempt]:
    """The :class:`Attempt` of each row (call it off the event loop for a whole window)."""
    return [Attempt(*row) for row in rows]


class AttemptLog:
    """The most recent attempts, by delivery; bounded by ``capacity`` attempts."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Oldest first; and by delivery id, each delivery's rows in arrival order.
        self._order: deque[Row] = deque()
        self._by_delivery: dict[str, tuple[Row, ...]] = {}

    @property
    def enabled(self) -> bool:
        """False when this worker keeps no log (``STREAMS_ATTEMPT_LOG_MEMORY=0``)."""
        return self.capacity > 0

    def require(self) -> None:
        """Raise :class:`UnavailableError` when this worker keeps no delivery log."""
        if not self.enabled:
            raise UnavailableError(
                "this worker keeps no delivery log (STREAMS_ATTEMPT_LOG_MEMORY=0); ask a "
                "worker that does, or set STREAMS_ATTEMPT_LOG_MEMORY above 0 here"
            )

    def __len__(self) -> int:
        return len(self._order)

    def apply(self, key: str, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            # Straight to the row: building an Attempt only to take it apart costs 2x.
            row = Attempt.row_from_bytes(raw)
        except DecodeError as exc:
            log.error("undecodable attempt record skipped: %s", exc)
            return
        self._add_row(row)

    def add(self, attempt: Attempt) -> None:
        self._add_row(_as_row(attempt))

    def _add_row(self, row: Row) -> None:
        self._order.append(row)
        by_delivery = self._by_delivery
        key = row[_DELIVERY_ID]
        before = by_delivery.get(key)
        by_delivery[key] = (row,) if before is None else (*before, row)
        while len(self._order) > self.capacity:
            old = self._order.popleft()
            gone = old[_DELIVERY_ID]
            rest = by_delivery.get(gone)
            if rest is None:
                continue
            # Rows leave in arrival order, so the oldest of a delivery is its first.
            rest = rest[1:] if rest[0] is old else tuple(r for r in rest if r is not old)
            if rest:
                by_delivery[gone] = rest
            else:
                del by_delivery[gone]

    def rows(self) -> list[Row]:
        """Every attempt in memory as a row, oldest first (a copy: safe to read in a thread)."""
        return list(self._order)

    def snapshot(self) -> list[Attempt]:
        """Every attempt in memory, oldest first."""
        return materialize(self._order)

    def attempts(self, delivery_id: str) -> list[Attempt]:
        """A delivery's attempts in memory, by attempt number."""
        return materialize(sorted(self._by_delivery.get(delivery_id, ()), key=_attempt_order))

    def deliveries(
        self, query: DeliveryQuery, rows: list[Row] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Deliveries whose latest attempt matches ``query``, newest first.

        ``rows`` is a copy from :meth:`rows`, taken on the event loop: with it,
        this may run in a thread (a whole window takes about a second to scan).
        Tenant, subscription and event type are the same in every attempt of a
        delivery, so they are checked on the row before its history is built.
        """
        seen: set[str] = set()
        count = 0
        fixed = [
            (index, value)
            for index, value in (
                (_TENANT, query.tenant_id),
                (_SUBSCRIPTION, query.subscription_id),
                (_EVENT_TYPE, query.event_type),
            )
            if value is not None
        ]
        for row in reversed(self._order if rows is None else rows):
            delivery_id = row[_DELIVERY_ID]
            if delivery_id in seen:
                continue
            seen.add(delivery_id)
            if any(row[index] != value for index, value in fixed):
                continue
            history = self.attempts(delivery_id)
            if not history:
                continue  # left the window since the copy was taken
            last = history[-1]
            if not query.matches(last):
                continue
            yield summary(history)
            count += 1
            if count >= query.limit:
                return


def _attempt_order(row: Row) -> tuple[Any, Any]:
    return row[_ATTEMPT], row[_AT]


def attempt_view(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "at": a.at,
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "status": a.status,
        "response_snippet": a.response_snippet,
        "error": a.error,
        "replay_id": a.replay_id,
        "sent": a.sent,
    }


def summary(history: list[Attempt]) -> dict[str, Any]:
    last = history[-1]
    return {
        "delivery_id": last.delivery_id,
        "event_id": last.event_id,
        "event_type": last.event_type,
        "tenant_id": last.tenant_id,
        "subscription_id": last.subscription_id,
        "status": last.status,
        "outcome": last.outcome,
        "attempts": len(history),
        "first_attempt_at": history[0].at,
        "last_attempt_at": last.at,
        "last_error": last.error,
    }
