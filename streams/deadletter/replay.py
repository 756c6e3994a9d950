"""Listing and replaying dead letters; redelivering past deliveries.

A replay re-sends parked deliveries through ``deliveries`` with their
original ``delivery_id`` (so ``webhook-id``, the receiver's idempotency key,
is unchanged), a fresh run of the retry schedule, and a ``replay_id`` that
marks the request with ``webhook-replay: true``. Its attempts are numbered on
after the parked run's (``prior_attempts``), so the delivery's history in the
log reads 1, 2, 3, then 4 for the replay, not 1 again.

Replaying the same range twice does not send twice: every replayed dead
letter is recorded by its position (``partition:offset``) in the compacted
topic ``deliveries.dlq.replayed``, and later replays skip recorded positions
unless ``force`` is given.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from streams.config import Settings
from streams.deadletter.scan import Located, scan
from streams.delivery.lanes import TokenBucket
from streams.errors import DecodeError, InvalidRequestError, PublishError
from streams.health import ops_event
from streams.kafka.output import producer_config
from streams.kafka.topics import TopicNames
from streams.records import DeadLetter, Delivery

REASONS = ("exhausted", "not_retryable", "subscription_disabled", "subscription_deleted", "gone")


@dataclass(frozen=True, slots=True)
class DlqFilter:
    subscription_id: str | None = None
    tenant_id: str | None = None
    event_type: str | None = None
    reason: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in REASONS:
            raise InvalidRequestError(f"`reason`: one of {', '.join(REASONS)}", field="reason")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidRequestError("`since` must be before `until`", field="since")

    def matches(self, letter: DeadLetter) -> bool:
        d = letter.delivery
        return (
            (self.subscription_id is None or d.get("subscription_id") == self.subscription_id)
            and (self.tenant_id is None or d.get("tenant_id") == self.tenant_id)
            and (self.event_type is None or d.get("event_type") == self.event_type)
            and (self.reason is None or letter.reason == self.reason)
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def letter_view(found: Located, letter: DeadLetter) -> dict[str, Any]:
    d = letter.delivery
    return {
        "position": f"{found.partition}:{found.offset}",
        "dead_lettered_at": letter.dead_lettered_at,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "last_status": letter.last_status,
        "last_error": letter.last_error,
        "delivery_id": d.get("delivery_id"),
        "event_id": d.get("event_id"),
        "event_type": d.get("event_type"),
        "tenant_id": d.get("tenant_id"),
        "subscription_id": d.get("subscription_id"),
    }


def find(
    settings: Settings,
    flt: DlqFilter,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[Located, DeadLetter]]:
    """Dead letters matching ``flt``, scanning only its time range (and key's partition)."""
    names = TopicNames(settings.topic_prefix)
    key = flt.subscription_id.encode() if flt.subscription_id else None
    for found in scan(
        settings, names.dlq, since=flt.since, until=flt.until, key=key, progress=progress
    ):
        if found.value is None:
            continue
        try:
            letter = DeadLetter.from_bytes(found.value)
        except DecodeError:
            continue
        if flt.matches(letter):
            yield found, letter


def replayed_positions(settings: Settings) -> set[str]:
    names = TopicNames(settings.topic_prefix)
    done: set[str] = set()
    for found in scan(settings, names.dlq_replayed):
        if found.key is None:
            continue
        position = found.key.decode()
        if found.value is None:
            done.discard(position)
        else:
            done.add(position)
    return done


@dataclass
class ReplaySummary:
    replay_id: str
    matched: int = 0
    replayed: int = 0
    skipped: int = 0  # already replayed (use force to send again)
    dry_run: bool = False
    started_at: float = 0.0
    finished_at: float | None = None
    status: str = "running"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def new_replay_id() -> str:
    return f"rpl_{uuid.uuid4().hex[:16]}"


def replay(
    settings: Settings,
    flt: DlqFilter,
    *,
    dry_run: bool = False,
    force: bool = False,
    rate: float | None = None,
    replay_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    summary: ReplaySummary | None = None,
) -> ReplaySummary:
    """Re-send the dead letters matching ``flt``. Every send is confirmed or raised."""
    from confluent_kafka import Producer

    names = TopicNames(settings.topic_prefix)
    result = summary or ReplaySummary(replay_id=replay_id or new_replay_id())
    result.dry_run = dry_run
    result.started_at = time.time()
    already = set() if force else replayed_positions(settings)
    producer = None if dry_run else Producer(producer_config(settings))
    failures: list[str] = []
    bucket = TokenBucket(rate, max(1.0, rate), time.monotonic()) if rate else None
    ops_tenant = flt.tenant_id or "_platform"

    def confirm(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(err.str())

    if producer is not None:
        started = ops_event(
            "replay.started",
            ops_tenant,
            {
                "replay_id": result.replay_id,
                "filters": flt.as_dict(),
                "started_at": _iso(time.time()),
            },
        )
        producer.produce(
            names.ops, key=ops_tenant.encode(), value=started.to_bytes(), on_delivery=confirm
        )
    for found, letter in find(settings, flt, progress=progress):
        result.matched += 1
        position = f"{found.partition}:{found.offset}"
        if position in already:
            result.skipped += 1
            continue
        if producer is None:
            continue
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            while wait > 0:
                producer.poll(0)
                time.sleep(wait)
                wait = bucket.take(time.monotonic())
        parked = letter.parked()
        again = replayed(parked, letter.attempts, result.replay_id)
        _produce(producer, names.deliveries, parked.subscription_id, again.to_bytes(), confirm)
        record = orjson.dumps(
            {"replay_id": result.replay_id, "at": time.time(), "delivery_id": parked.delivery_id}
        )
        _produce(producer, names.dlq_replayed, position, record, confirm)
        result.replayed += 1
    if producer is not None:
        finished = ops_event(
            "replay.finished",
            ops_tenant,
            {
                "replay_id": result.replay_id,
                "replayed": result.replayed,
                "skipped": result.skipped,
                "finished_at": _iso(time.time()),
            },
        )
        producer.produce(
            names.ops, key=ops_tenant.encode(), value=finished.to_bytes(), on_delivery=confirm
        )
        remaining = producer.flush(60)
        if remaining or failures:
            raise PublishError(
                f"replay {result.replay_id}: {remaining + len(failures)} record(s) not "
                f"confirmed by Kafka ({failures[0] if failures else 'timeout'}); run it again: "
                "recorded positions are skipped"
            )
    result.finished_at = time.time()
    result.status = "finished"
    return result


def replayed(parked: Delivery, attempts_made: int, replay_id: str) -> Delivery:
    """A dead letter sent again: a fresh run of the retry schedule (``attempt`` 1) whose
    attempts the log numbers on after the ``attempts_made`` of the parked run."""
    return dataclasses.replace(
        parked,
        attempt=1,
        prior_attempts=parked.prior_attempts + attempts_made,
        due_at=0.0,
        last_status=None,
        last_error=None,
        replay_id=replay_id,
    )


def redelivery(delivery: Delivery, attempts_before: int) -> Delivery:
    """A past delivery sent again: same delivery id, a fresh run of the retry schedule,
    numbered after the ``attempts_before`` of its history, marked as a replay."""
    return dataclasses.replace(
        delivery,
        attempt=1,
        prior_attempts=attempts_before,
        due_at=0.0,
        last_status=None,
        last_error=None,
        replay_id=f"rdl_{uuid.uuid4().hex[:16]}",
    )


def _produce(producer: Any, topic: str, key: str, value: bytes, confirm: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value, on_delivery=confirm)
            producer.poll(0)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise PublishError(
                    "the producer queue stayed full for 30s: is Kafka reachable?"
                ) from None
            producer.poll(0.1)


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
