"""The receiver-side ledger and the dead-letter topic: what happened to every pair.

:class:`LedgerTail` follows the JSON-lines ledgers of every receiver node
incrementally; :class:`LedgerState` folds their entries into what the checks
need (first successful receipt per (event, endpoint) pair, duplicates,
signatures, webhook ids). :class:`TopicTail` follows a Kafka topic from its
beginning (the DLQ, the retry tiers). :func:`check_pairs` says, for the
expected pairs, which were delivered, which were parked with a reason, and
which were lost.

A request counts as delivered when the receiver sent a 2xx status line for
it. That includes ``close`` (status line, then the body is cut) and
``trickle`` (status line, then a body too slow to finish): the receiver
answered, and the pipeline, too, takes a status over a later body error.
``hang`` and ``reset`` send no status line and never deliver.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.config import Settings
from streams.records import DeadLetter, Delivery, delivery_id_for

Pair = tuple[str, str]  # (event id, endpoint name)

#: librdkafka's own log of the harness's clients (connection refused while a broker restarts).
QUIET = logging.getLogger("streams.tools.bench.kafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

NOT_DELIVERING_MODES = frozenset({"hang", "reset"})


def delivered(entry: dict[str, Any]) -> bool:
    status = entry.get("status")
    return (
        isinstance(status, int)
        and 200 <= status < 300
        and entry.get("mode") not in NOT_DELIVERING_MODES
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class LedgerTail:
    """Read new complete lines of several JSON-lines files, as they grow."""

    def __init__(self, paths: Iterable[Path], *, from_end: bool = False) -> None:
        """``from_end``: skip what the files hold now (an earlier phase of the run)."""
        self.paths = list(paths)
        self._offsets = {p: (_size(p) if from_end else 0) for p in self.paths}
        self.lines = 0
        self.bad_lines = 0

    def poll(self, sink: Callable[[dict[str, Any]], None], max_bytes: int = 64 << 20) -> int:
        """Feed every new entry to ``sink``; returns how many."""
        fed = 0
        for path in self.paths:
            try:
                with open(path, "rb") as fh:
                    fh.seek(self._offsets[path])
                    chunk = fh.read(max_bytes)
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] += end + 1
            for line in chunk[: end + 1].splitlines():
                if not line:
                    continue
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.bad_lines += 1
                    continue
                self.lines += 1
                fed += 1
                sink(entry)
        return fed


@dataclass
class LedgerState:
    """What the ledgers say, folded per (event, endpoint) pair.

    ``endpoints`` maps endpoint name → subscription id of the run; requests to
    other endpoints (e.g. the ceiling probe) are counted apart and not checked.
    """

    endpoints: dict[str, str] = field(default_factory=dict)
    keep_attempts: bool = False
    events: set[str] | None = None  # only these event ids (None: every event)
    first_ok: dict[Pair, float] = field(default_factory=dict)
    first_seen: dict[Pair, float] = field(default_factory=dict)
    duplicates: Counter[Pair] = field(default_factory=Counter)
    ok_times: list[float] = field(default_factory=list)
    ok_by_endpoint: Counter[str] = field(default_factory=Counter)
    other_by_endpoint: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    attempts: list[tuple[str, int, float]] = field(default_factory=list)
    requests: int = 0
    other_requests: int = 0
    invalid_signatures: int = 0
    unsigned: int = 0
    webhook_id_mismatch: int = 0
    replays_ok: int = 0
    last_at: float = 0.0

    def add(self, entry: dict[str, Any]) -> None:
        endpoint = entry.get("endpoint") or ""
        sub_id = self.endpoints.get(endpoint)
        if sub_id is None or (self.events is not None and entry.get("event_id") not in self.events):
            self.other_requests += 1
            self.other_by_endpoint[endpoint] += 1
            return
        endpoint = sys.intern(endpoint)
        self.requests += 1
        received = float(entry.get("received_at") or 0.0)
        self.last_at = max(self.last_at, received)
        status = entry.get("status")
        mode = entry.get("mode") or "normal"
        answered = status is not None and mode not in NOT_DELIVERING_MODES
        self.statuses[f"{status if answered else 'none'}/{mode}"] += 1
        valid = entry.get("valid")
        if valid is False:
            self.invalid_signatures += 1
        elif valid is None:
            self.unsigned += 1
        event_id = str(entry.get("event_id") or "")
        webhook_id = entry.get("webhook_id")
        if webhook_id != delivery_id_for(event_id, sub_id):
            self.webhook_id_mismatch += 1
        pair = (event_id, endpoint)
        if pair not in self.first_seen:
            self.first_seen[pair] = received
        attempt = int(entry.get("attempt") or 0)
        if self.keep_attempts and isinstance(webhook_id, str):
            self.attempts.append((webhook_id, attempt, received))
        if delivered(entry):
            self.ok_by_endpoint[endpoint] += 1
            if entry.get("replay"):
                self.replays_ok += 1
            if pair in self.first_ok:
                self.duplicates[pair] += 1
            else:
                self.first_ok[pair] = received
                self.ok_times.append(received)

    @property
    def delivered_pairs(self) -> int:
        return len(self.first_ok)

    @property
    def duplicate_count(self) -> int:
        return sum(self.duplicates.values())


class TopicTail:
    """Follow one topic from its beginning with a group-less consumer (bounded polls)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"bench-tail-{uuid.uuid4().hex[:10]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "logger": QUIET,  # a broker restart is expected in kill-broker
            }
        )
        meta = self._consumer.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        self._consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.records = 0

    def poll(self, max_records: int = 200_000, timeout_s: float = 0.2) -> Iterator[Any]:
        """Messages available now (up to ``max_records``)."""
        got = 0
        deadline = time.monotonic() + 10
        while got < max_records and time.monotonic() < deadline:
            batch = self._consumer.consume(5000, timeout=timeout_s)
            if not batch:
                return
            for msg in batch:
                if msg.error() is not None:
                    continue
                got += 1
                self.records += 1
                yield msg

    def close(self) -> None:
        self._consumer.close()


@dataclass
class DlqState:
    """Dead letters of the run, by pair, with their reasons."""

    sub_endpoints: dict[str, str] = field(default_factory=dict)  # subscription id -> endpoint
    events: set[str] | None = None  # only these event ids (None: every event)
    parked: dict[Pair, str] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0

    def add(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            letter = DeadLetter.from_bytes(value)
        except Exception:
            self.undecodable += 1
            return
        d = letter.delivery
        endpoint = self.sub_endpoints.get(str(d.get("subscription_id")))
        if endpoint is None or (self.events is not None and d.get("event_id") not in self.events):
            return
        self.reasons[letter.reason] += 1
        self.parked.setdefault((str(d.get("event_id")), endpoint), letter.reason)


@dataclass
class DueTimes:
    """``due_at`` of every retry record, by (delivery id, attempt), from the retry tiers."""

    due: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def add(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            d = Delivery.from_bytes(value)
        except Exception:
            return
        self.due.setdefault((d.delivery_id, d.attempt), []).append(d.due_at)

    def lateness(self, webhook_id: str, attempt: int, received: float) -> float | None:
        """Receipt minus the due time of the record that asked for this attempt.

        Several records may ask for one attempt (a deferral, a repeat after a
        crash): the latest due time not after the receipt is the one served; if
        every due time is after the receipt, the attempt was early (negative)."""
        dues = self.due.get((webhook_id, attempt))
        if not dues:
            return None
        before = [d for d in dues if d <= received]
        if before:
            return received - max(before)
        return received - min(dues)


@dataclass(frozen=True)
class PairCheck:
    expected: int
    delivered: int
    parked: int
    lost: int
    lost_sample: list[Pair]
    parked_reasons: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected_pairs": self.expected,
            "delivered_pairs": self.delivered,
            "parked_pairs": self.parked,
            "lost_pairs": self.lost,
            "lost_sample": [list(p) for p in self.lost_sample],
            "parked_reasons": self.parked_reasons,
        }


def check_pairs(
    expected: Iterable[Pair], ledger: LedgerState, dlq: DlqState, *, sample: int = 5
) -> PairCheck:
    """Every expected pair is delivered, else parked in the DLQ with a reason, else lost."""
    total = delivered_n = parked_n = 0
    lost: list[Pair] = []
    lost_n = 0
    reasons: Counter[str] = Counter()
    for pair in expected:
        total += 1
        if pair in ledger.first_ok:
            delivered_n += 1
            continue
        reason = dlq.parked.get(pair)
        if reason is not None:
            parked_n += 1
            reasons[reason] += 1
            continue
        lost_n += 1
        if len(lost) < sample:
            lost.append(pair)
    return PairCheck(total, delivered_n, parked_n, lost_n, lost, dict(reasons))
