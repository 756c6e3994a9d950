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

A replay can be stopped between two letters through its :class:`Stop`:
*cancelled* (``DELETE /v1/dlq/replays/{id}``, Ctrl-C of ``streams dlq
replay``) or *interrupted* (its worker shuts down). It then waits, briefly
and boundedly, for Kafka to confirm what it sent, and records where it
stopped. Its :class:`ReplaySummary` lives in the compacted topic
``deliveries.dlq.replays`` (key: the replay id), written when it starts,
every :data:`HEARTBEAT_S` while it runs and when it ends, so that any worker
and the CLI can show it, and resume it, after a restart. A resumed replay runs
the same request under the same id; the letters it sent before count as
replayed and are not sent again, even with ``force``.

Progress is reported per letter, against the total that the dry-run count
found before the replay began (``total``), not per batch of records read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.config import Settings
from streams.deadletter.scan import Located, Stop, Stopped, scan
from streams.delivery.lanes import TokenBucket
from streams.errors import DecodeError, InvalidRequestError, PublishError, StreamsError
from streams.health import ops_event
from streams.kafka.output import producer_config
from streams.kafka.topics import Connectivity, TopicNames
from streams.records import DeadLetter, Delivery
from streams.tenants import PLATFORM_TENANT

log = logging.getLogger(__name__)

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
    stop: Stop | None = None,
) -> Iterator[tuple[Located, DeadLetter]]:
    """Dead letters matching ``flt``, scanning only its time range (and key's partition).

    ``progress(records read, records in range)`` after each fetch; ``stop`` ends the scan
    with :class:`~streams.deadletter.scan.Stopped`."""
    names = TopicNames(settings.topic_prefix)
    key = flt.subscription_id.encode() if flt.subscription_id else None
    for found in scan(
        settings,
        names.dlq,
        since=flt.since,
        until=flt.until,
        key=key,
        progress=progress,
        stop=stop,
    ):
        if found.value is None:
            continue
        try:
            letter = DeadLetter.from_bytes(found.value)
            letter.parked()  # a letter whose delivery cannot be replayed is not one
        except DecodeError as exc:
            log.warning(
                "dead letter at %s[%d]@%d skipped: %s",
                names.dlq,
                found.partition,
                found.offset,
                exc,
            )
            continue
        if flt.matches(letter):
            yield found, letter


def replayed_positions(settings: Settings, *, stop: Stop | None = None) -> dict[str, str]:
    """Every replayed dead letter's position (``partition:offset``) and the replay that sent
    it last (``""`` when its record does not say)."""
    names = TopicNames(settings.topic_prefix)
    done: dict[str, str] = {}
    for found in scan(settings, names.dlq_replayed, stop=stop):
        if found.key is None:
            continue
        try:
            position = found.key.decode("utf-8")
        except UnicodeDecodeError:
            continue  # not one of ours (positions are "partition:offset")
        if found.value is None:
            done.pop(position, None)
            continue
        try:
            by = orjson.loads(found.value).get("replay_id")
        except (orjson.JSONDecodeError, AttributeError):
            by = None
        done[position] = by if isinstance(by, str) else ""
    return done


#: How a replay ended, or that it has not (``running``).
STATUSES = ("running", "finished", "failed", "cancelled", "interrupted")
#: The endings after which the same replay may be resumed.
RESUMABLE = ("failed", "cancelled", "interrupted")
#: A running replay writes its summary at least this often (its heartbeat).
HEARTBEAT_S = 5.0
#: A ``running`` summary not written for this long belongs to a worker that died.
LOST_AFTER_S = 6 * HEARTBEAT_S
#: How long a finishing replay waits for Kafka to confirm what it sent; a stopping one.
FLUSH_S = 60.0
STOP_FLUSH_S = 5.0


@dataclass
class ReplaySummary:
    """What a replay did so far, or did: the answer of ``GET /v1/dlq/replays/{id}``."""

    replay_id: str
    matched: int = 0  # letters matching the filter that it went through
    replayed: int = 0  # sent by this replay (before a resume too)
    skipped: int = 0  # replayed before by another replay (use force to send again)
    dry_run: bool = False
    started_at: float = 0.0
    finished_at: float | None = None
    status: str = "running"
    error: str | None = None
    total: int | None = None  # letters the count before it found: where progress ends
    to_send: int | None = None  # of those, the ones not replayed before (the "M" of N of M)
    position: str | None = None  # the last letter gone through, ``partition:offset``
    stopped_at: str | None = None  # ``position`` when it was cancelled, interrupted or failed
    tenant_id: str | None = None  # whose letters; None: every tenant's (the admin's replay)
    request: dict[str, Any] = field(default_factory=dict)  # filters, force, rate: to resume
    resumes: int = 0
    updated_at: float = 0.0

    def message(self) -> str:
        """One line a person can act on: where it is, or where it stopped and how to resume."""
        sent = f"{self.replayed}" + (f" of {self.to_send}" if self.to_send is not None else "")
        if self.dry_run:
            return (
                f"dry run: {self.matched} match, {self.to_send} would be sent, "
                f"{self.skipped} were replayed before"
            )
        if self.status == "running":
            return f"running: {sent} sent"
        if self.status == "finished":
            return f"finished: {self.replayed} sent, {self.skipped} skipped (replayed before)"
        where = (
            f"at {self.stopped_at} (partition:offset)"
            if self.stopped_at is not None
            else "before its first letter"
        )
        why = f" ({self.error})" if self.error else ""
        return (
            f"{self.status} {where}, {sent} sent{why}; resume it with POST "
            f"/v1/dlq/replays/{self.replay_id}/resume or `streams dlq replay --resume "
            f"{self.replay_id}` (what it sent is not sent again)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "message": self.message()}

    def to_bytes(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ReplaySummary:
        """A summary read back from ``deliveries.dlq.replays``; DecodeError if it is not one."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not a replay summary: {exc}", raw) from None
        if not isinstance(data, dict) or not isinstance(data.get("replay_id"), str):
            raise DecodeError("not a replay summary: no replay_id", raw)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise DecodeError(f"not a replay summary: {exc}", raw) from None

    def filter(self) -> DlqFilter:
        """The filter of the request it ran (to resume it)."""
        filters = self.request.get("filters") or {}
        return DlqFilter(**{k: v for k, v in filters.items() if k in DlqFilter.__slots__})

    def lost(self, now: float) -> bool:
        """``running`` in Kafka but silent too long: its worker died without a word."""
        return self.status == "running" and now - self.updated_at > LOST_AFTER_S


def new_replay_id() -> str:
    return f"rpl_{uuid.uuid4().hex[:16]}"


def load_summary(
    settings: Settings, replay_id: str, *, stop: Stop | None = None
) -> ReplaySummary | None:
    """The latest summary written for ``replay_id`` (any worker's, or the CLI's), if any."""
    names = TopicNames(settings.topic_prefix)
    found: ReplaySummary | None = None
    for record in scan(settings, names.dlq_replays, key=replay_id.encode(), stop=stop):
        if record.value is None:
            found = None
            continue
        try:
            found = ReplaySummary.from_bytes(record.value)
        except DecodeError:
            continue
    return found


def replay(
    settings: Settings,
    flt: DlqFilter,
    *,
    dry_run: bool = False,
    force: bool = False,
    rate: float | None = None,
    replay_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    scan_progress: Callable[[int, int], None] | None = None,
    summary: ReplaySummary | None = None,
    stop: Stop | None = None,
    resume: bool = False,
    counted: ReplaySummary | None = None,
) -> ReplaySummary:
    """Re-send the dead letters matching ``flt``, or only count them (``dry_run``).

    ``progress(letters gone through, total)`` after every letter, ``total`` being
    what ``counted``, the dry run the caller ran just before, found;
    ``scan_progress(records read, records in range)`` after every fetch.
    ``resume``: run ``replay_id`` again; what it sent before is not sent again.
    ``stop`` ends it between two letters: the summary says where (status
    ``cancelled`` or ``interrupted``). Every send is confirmed by Kafka, or the
    summary says ``failed`` with how many were not. Raises only before it
    sends anything: Kafka unreachable, or :class:`~streams.deadletter.scan.Stopped`
    while it counts (a dry run) or reads what was replayed before.
    """
    result = summary or ReplaySummary(replay_id=replay_id or new_replay_id())
    result.dry_run = dry_run
    result.tenant_id = flt.tenant_id
    result.request = {"filters": flt.as_dict(), "force": force, "rate": rate}
    result.started_at = result.started_at or time.time()
    result.status, result.error, result.finished_at = "running", None, None
    result.matched = result.replayed = result.skipped = 0
    result.position = result.stopped_at = None
    if counted is not None:
        result.total, result.to_send = counted.total, counted.to_send
    recorded = replayed_positions(settings, stop=stop)
    mine = {p for p, by in recorded.items() if by == result.replay_id} if resume else set()
    before = set() if force else set(recorded) - mine
    if dry_run:
        for found, _letter in find(settings, flt, progress=scan_progress, stop=stop):
            position = f"{found.partition}:{found.offset}"
            result.matched += 1
            if position in mine:
                result.replayed += 1
            elif position in before:
                result.skipped += 1
        result.total = result.matched
        result.to_send = result.matched - result.skipped
        result.status = "finished"
        result.finished_at = time.time()
        return result
    _Run(settings, flt, result, stop or Stop(), rate=rate, progress=progress).run(
        mine, before, scan_progress
    )
    return result


class _Run:
    """One replay's sending, from its start to its recorded end."""

    def __init__(
        self,
        settings: Settings,
        flt: DlqFilter,
        result: ReplaySummary,
        stop: Stop,
        *,
        rate: float | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.flt = flt
        self.result = result
        self.stop = stop
        self.progress = progress
        self.names = TopicNames(settings.topic_prefix)
        self.failures: list[str] = []
        self.bucket = TokenBucket(rate, max(1.0, rate), time.monotonic()) if rate else None
        self.ops_tenant = flt.tenant_id or PLATFORM_TENANT
        self.last_beat = 0.0
        self.producer = Producer({**producer_config(settings), **Connectivity().config()})

    def confirm(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(err.str())

    def run(
        self, mine: set[str], before: set[str], scan_progress: Callable[[int, int], None] | None
    ) -> None:
        result = self.result
        self._ops(
            "replay.started",
            {
                "replay_id": result.replay_id,
                "filters": self.flt.as_dict(),
                "started_at": iso_time(time.time()),
            },
        )
        self.beat(now=True)

        def scanned(done: int, total: int) -> None:
            self.beat()  # a long stretch without a match still shows the replay alive
            if scan_progress is not None:
                scan_progress(done, total)

        try:
            for found, letter in find(self.settings, self.flt, progress=scanned, stop=self.stop):
                self.stop.check()
                position = f"{found.partition}:{found.offset}"
                result.matched += 1
                if position in mine:
                    result.replayed += 1  # sent by this replay before it was resumed
                elif position in before:
                    result.skipped += 1
                else:
                    self.send(position, letter)
                    result.replayed += 1
                result.position = position
                if self.progress is not None:
                    self.progress(result.matched, max(result.total or 0, result.matched))
                self.beat()
            result.status = "finished"
        except Stopped as exc:
            result.status = exc.reason if exc.reason in STATUSES else "interrupted"
        except StreamsError as exc:  # Kafka went away or refused a record
            result.status, result.error = "failed", str(exc)
        self.end()

    def send(self, position: str, letter: DeadLetter) -> None:
        if self.bucket is not None:
            wait = self.bucket.take(time.monotonic())
            while wait > 0:
                self.producer.poll(0)
                if self.stop.wait(min(wait, HEARTBEAT_S)):
                    self.stop.check()
                self.beat()
                wait = self.bucket.take(time.monotonic())
        parked = letter.parked()
        again = replayed(parked, letter.attempts, self.result.replay_id)
        self.produce(self.names.deliveries, parked.subscription_id, again.to_bytes())
        record = orjson.dumps(
            {
                "replay_id": self.result.replay_id,
                "at": time.time(),
                "delivery_id": again.delivery_id,
            }
        )
        self.produce(self.names.dlq_replayed, position, record)

    def produce(self, topic: str, key: str, value: bytes) -> None:
        _produce(self.producer, topic, key, value, self.confirm, stop=self.stop)

    def beat(self, *, now: bool = False) -> None:
        """Write the summary when it is due (every HEARTBEAT_S), or ``now``."""
        clock = time.monotonic()
        if not now and clock - self.last_beat < HEARTBEAT_S:
            return
        self.last_beat = clock
        self.result.updated_at = time.time()
        with contextlib.suppress(BufferError):  # full of letters: the next beat writes it
            self.producer.produce(
                self.names.dlq_replays,
                key=self.result.replay_id.encode(),
                value=self.result.to_bytes(),
                on_delivery=self.confirm,
            )
        self.producer.poll(0)

    def end(self) -> None:
        """Record how it ended: the ops event, the summary; wait (bounded) for Kafka."""
        result = self.result
        if result.status != "finished":
            result.stopped_at = result.position
        result.finished_at = time.time()
        self._ops(
            "replay.finished",
            {
                "replay_id": result.replay_id,
                "status": result.status,
                "replayed": result.replayed,
                "skipped": result.skipped,
                "matched": result.matched,
                "stopped_at": result.stopped_at,
                "finished_at": iso_time(result.finished_at),
            },
        )
        wait = FLUSH_S if result.status == "finished" else STOP_FLUSH_S
        remaining = self.producer.flush(wait)
        if remaining or self.failures:
            unconfirmed = remaining + len(self.failures)
            if result.status == "finished":
                result.status = "failed"
                result.stopped_at = result.position
            result.error = (
                f"{unconfirmed} record(s) not confirmed by Kafka "
                f"({self.failures[0] if self.failures else 'timeout'})"
            )
        self.beat(now=True)
        self.producer.flush(STOP_FLUSH_S)

    def _ops(self, event_type: str, data: dict[str, Any]) -> None:
        event = ops_event(event_type, self.ops_tenant, data)
        try:
            self.producer.produce(
                self.names.ops,
                key=self.ops_tenant.encode(),
                value=event.to_bytes(),
                on_delivery=self.confirm,
            )
        except BufferError:
            self.failures.append(f"the producer queue was full for {event_type}")


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


def _produce(
    producer: Any, topic: str, key: str, value: bytes, confirm: Any, *, stop: Stop | None = None
) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value, on_delivery=confirm)
            producer.poll(0)
            return
        except BufferError:
            if stop is not None:
                stop.check()
            if time.monotonic() > deadline:
                raise PublishError(
                    "the producer queue stayed full for 30s: is Kafka reachable?"
                ) from None
            producer.poll(0.1)


def iso_time(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
