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
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
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


class AttemptLog:
    """The most recent attempts, by delivery; bounded by ``capacity`` attempts."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[Attempt] = deque()
        self._by_delivery: dict[str, list[Attempt]] = {}

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
            attempt = Attempt.from_bytes(raw)
        except DecodeError as exc:
            log.error("undecodable attempt record skipped: %s", exc)
            return
        self.add(attempt)

    def add(self, attempt: Attempt) -> None:
        self._order.append(attempt)
        self._by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        while len(self._order) > self.capacity:
            old = self._order.popleft()
            rest = self._by_delivery.get(old.delivery_id)
            if rest:
                rest.remove(old)
                if not rest:
                    del self._by_delivery[old.delivery_id]

    def snapshot(self) -> list[Attempt]:
        """Every attempt in memory, oldest first (a copy: safe to read in another thread)."""
        return list(self._order)

    def attempts(self, delivery_id: str) -> list[Attempt]:
        return sorted(self._by_delivery.get(delivery_id, []), key=lambda a: (a.attempt, a.at))

    def deliveries(self, query: DeliveryQuery) -> Iterator[dict[str, Any]]:
        """Deliveries whose latest attempt matches ``query``, newest first."""
        seen: set[str] = set()
        count = 0
        for attempt in reversed(self._order):
            if attempt.delivery_id in seen:
                continue
            seen.add(attempt.delivery_id)
            history = self.attempts(attempt.delivery_id)
            last = history[-1]
            if not query.matches(last):
                continue
            yield summary(history)
            count += 1
            if count >= query.limit:
                return


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
