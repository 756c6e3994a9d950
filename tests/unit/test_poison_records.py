"""No record stops the pipeline: every record Kafka can hold, fed to every reader of the worker.

One table of hostile records (no value, an empty one, no key, any bytes, any
headers, wrong shapes and types, out-of-range numbers, the largest a topic
holds) and one table of every handler the worker runs on a topic it reads:

- the fan-out (``events`` and ``ops``), the delivery engine (``deliveries``)
  and the retry-tier consumer (every tier) must park each record on
  ``events.invalid`` with a reason, its key and value byte for byte, and ack it;
- the readers of the state topics and the delivery log (``subscriptions``,
  ``tokens``, ``endpoint.health``) must skip it (or apply a tombstone as the
  delete it means there) without raising and without taking it into their view;
- the log indexer's store (``attempts``) must skip it with its position and
  reason, count it, and index the next record.

Before the fixes of issue 17, a null value raised ``TypeError`` in the fan-out
and in the engine's parking, a string ``due_at`` raised in the retry tiers, an
``attempt`` of 0 raised in the delivery lane, a non-UTF-8 key stopped a state
reader for good, and an event of about 800 KB could not be parked at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from cryptography.fernet import Fernet

from streams.api.auth import TokenIndex
from streams.config import Settings
from streams.delivery.engine import FOLLOW_UP_ROOM, DeliveryEngine, SendResult
from streams.delivery.request import PreparedRequest
from streams.fanout.agent import fan_out_one
from streams.health import HealthMonitor
from streams.kafka.commits import OrderedAcks
from streams.kafka.topics import TopicNames, parked_record_bytes, retry_tiers
from streams.log.store import SNIPPET_BYTES, DeliveryQuery, LogReader, LogWriter
from streams.records import (
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    MAX_ERROR_READ_CHARS,
    MAX_ID_CHARS,
    ORIGINAL,
    Delivery,
    ParkedRecord,
    Subscription,
    record_size,
)
from streams.retry.agent import TierConsumer
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.secrets import SecretBox
from streams.subscriptions.store import CompactedReader

SETTINGS = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p.", "STREAMS_RETRY_SCHEDULE": "1s,1m"})
NAMES = TopicNames("p.")
REGISTRY = SchemaRegistry.load()
LIMIT = SETTINGS.max_record_bytes
SUB = Subscription(id="sub_1", tenant_id="acme", url="https://h.example/", event_types=["*"])

# -- the records --------------------------------------------------------------------


def delivery_with(**fields: Any) -> bytes:
    """A delivery record of ``sub_1`` with ``fields`` replaced (as JSON, any type)."""
    good = Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_1",
        body="{}",
        attempt=1,
    ).to_dict()
    return orjson.dumps(good | fields)


def largest_value() -> bytes:
    """A value as large as a topic of the pipeline holds (with a 2-byte key, no headers)."""
    head, tail = b'{"x":"', b'"}'
    size = LIMIT - record_size(b"k1", b"", ())
    return head + b"a" * (size - len(head) - len(tail)) + tail


@dataclass(frozen=True)
class Bad:
    name: str
    value: bytes | None
    key: bytes | None = b"k1"
    headers: tuple[tuple[str, bytes | None], ...] = ()


BAD = [
    Bad("tombstone", None),
    Bad("empty value", b""),
    Bad("null key", b"garbage", key=None),
    Bad("empty key", b"garbage", key=b""),
    Bad("binary key and value", b"\x00\xff\xfe\x80binary", key=b"\xff\xfe\x00"),
    Bad(
        "arbitrary headers",
        b"{}",
        headers=(
            ("content-type", b"\xff\x00"),
            ("", None),
            ("dup", b"1"),
            ("dup", b"2"),
            # A name that was not UTF-8, as the lenient record reader hands it over.
            ("\udcff\udcfe", b"v"),
        ),
    ),
    Bad("a JSON array", b"[1, 2]"),
    Bad("a JSON string", b'"text"'),
    Bad("JSON null", b"null"),
    Bad("a number past a double", b"1e400"),
    Bad("nested 5,000 deep", b"[" * 5000 + b"]" * 5000),
    Bad("an integer beyond 64 bits", b'{"n": 123456789012345678901234567890}'),
    Bad("the largest value", largest_value()),
    Bad("a delivery due 'soon'", delivery_with(due_at="soon")),
    Bad("a delivery at attempt 0", delivery_with(attempt=0)),
    Bad("a delivery at attempt 2**64-1", delivery_with(attempt=2**64 - 1)),
    Bad("a delivery with negative deferrals", delivery_with(deferrals=-1)),
    Bad("a delivery with a null body", delivery_with(body=None)),
    Bad("a delivery with a 10,000-character event type", delivery_with(event_type="a" * 10_000)),
    Bad("a delivery with a dict as last error", delivery_with(last_error={"a": 1})),
    Bad("a delivery with a boolean status", delivery_with(last_status=True)),
    Bad(
        "a subscription with a number pattern",
        b'{"id": "k1", "tenant_id": "t", "url": "u", "event_types": [5]}',
    ),
    Bad(
        "a subscription with an unknown body format",
        orjson.dumps(dataclasses.asdict(SUB) | {"id": "k1", "body_format": "xml"}),
    ),
    Bad(
        "a subscription with a bad pattern",
        orjson.dumps(dataclasses.asdict(SUB) | {"id": "k1", "event_types": ["a**"]}),
    ),
    Bad("a health record with text counts", b'{"consecutive": "many", "at": 1}'),
    Bad("a token record with numbers", b'{"tenant_id": 1, "sha256": 2}'),
    Bad(
        "an attempt with a text attempt",
        orjson.dumps(
            {
                "delivery_id": "d",
                "event_id": "e",
                "subscription_id": "s",
                "attempt": "1",
                "at": 1,
                "outcome": "retry",
            }
        ),
    ),
]

# -- the handlers -------------------------------------------------------------------


@dataclass
class Message:
    topic: str
    key: bytes | None
    headers: Any
    partition: int = 2
    offset: int = 41
    timestamp: float = 1.0

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Any

    def ack(self) -> bool:
        return True


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class Pipeline:
    """What the stages use of :class:`streams.app.Pipeline`, recording what they send."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.names = NAMES
        self.registry = REGISTRY
        self.subscriptions = SubscriptionIndex()
        self.subscriptions.apply(SUB.id, SUB.to_bytes())
        self.stats: Counter[str] = Counter()
        self.extras: dict[str, Any] = {}
        self.readers: list[CompactedReader] = []
        self.sent: list[Sent] = []
        # An automatic disable re-writes a pre-encryption record's headers sealed.
        self.box = SecretBox([Fernet.generate_key().decode()])

    async def send(self, topic: str, key: Any, value: bytes | None, headers: Any = None) -> Any:
        key = key.encode() if isinstance(key, str) else key
        # What Kafka would refuse: every record a stage writes fits its topic.
        parked = topic in (NAMES.events_invalid, NAMES.dlq)
        limit = parked_record_bytes(SETTINGS) if parked else LIMIT
        assert record_size(key, value, headers or ()) <= limit, (topic, len(value or b""))
        self.sent.append(Sent(topic, key, value, tuple(headers or ())))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def ready(self) -> None:
        return None


class Sender:
    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        raise AssertionError("no bad record may reach an endpoint")


def acks() -> OrderedAcks:
    def fatal(exc: BaseException) -> None:
        raise AssertionError(f"the worker would stop: {exc!r}")

    return OrderedAcks(max_pending=10, on_fatal=fatal)


async def settle(done: Callable[[], bool]) -> None:
    for _ in range(100):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the record was never acked")


async def fanout(p: Pipeline, topic: str, bad: Bad) -> None:
    futures = await fan_out_one(p, bad.key, bad.value, Message(topic, bad.key, bad.headers))
    await asyncio.gather(*futures)


async def engine_handle(p: Pipeline, topic: str, bad: Bad) -> None:
    engine = DeliveryEngine(p, Sender())  # type: ignore[arg-type]
    tracker = acks()
    message = Message(topic, bad.key, bad.headers)
    ticket = await tracker.track(Event(message))
    await engine.handle(bad.value, message, ticket, tracker)
    await settle(lambda: ticket.done)


@dataclass
class ConsumerRecord:
    """What aiokafka hands the retry-tier consumer."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    timestamp: int = 1000


@dataclass
class TierKafka:
    paused_tps: set[Any] = field(default_factory=set)

    def paused(self) -> set[Any]:
        return self.paused_tps

    def pause(self, tp: Any) -> None:
        self.paused_tps.add(tp)

    def resume(self, tp: Any) -> None:
        self.paused_tps.discard(tp)


async def tier(p: Pipeline, topic: str, bad: Bad) -> None:
    """The tier consumer's own read of the record (its due time), then the engine."""
    engine = DeliveryEngine(p, Sender())  # type: ignore[arg-type]
    consumer = TierConsumer(p, engine)  # type: ignore[arg-type]
    consumer._consumer = TierKafka()  # type: ignore[assignment]
    consumer._acks = tracker = acks()
    tp = TopicPartition(topic, 2)
    record = ConsumerRecord(topic, 2, 41, bad.key, bad.value, bad.headers)
    consumer.waiting = {tp: deque([record])}
    await consumer._release_due()
    await settle(lambda: tracker.acked == 1)
    assert consumer.committable[tp] == 42


AGENTS: list[tuple[str, Callable[[Pipeline, str, Bad], Awaitable[None]]]] = [
    (NAMES.events, fanout),
    (NAMES.ops, fanout),
    (NAMES.deliveries, engine_handle),
    *((NAMES.retry(t), tier) for t in retry_tiers(SETTINGS)),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
@pytest.mark.parametrize(("topic", "handle"), AGENTS, ids=[t for t, _ in AGENTS])
async def test_every_agent_parks_every_bad_record_with_its_reason_and_acks_it(
    topic: str, handle: Callable[[Pipeline, str, Bad], Awaitable[None]], bad: Bad
) -> None:
    p = Pipeline()
    await handle(p, topic, bad)
    assert [s.topic for s in p.sent] == [NAMES.events_invalid]
    sent = p.sent[0]
    parked = ParkedRecord(sent.key, sent.value, sent.headers)
    assert (parked.key, parked.value) == (bad.key, bad.value)  # byte for byte, nothing cut
    assert parked.truncated == frozenset()
    assert parked.reason
    assert parked.source == (topic, 2, 41)
    assert [(n, v) for n, v in parked.headers if n.startswith(ORIGINAL)] == [
        (ORIGINAL + n.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), v)
        for n, v in bad.headers
    ]
    assert dict(parked.headers)[H_SOURCE_TOPIC] == topic.encode()
    assert dict(parked.headers)[H_SOURCE_PARTITION] == b"2"
    assert dict(parked.headers)[H_SOURCE_OFFSET] == b"41"


# -- the readers of state topics and the delivery log --------------------------------


def reader_of(name: str) -> tuple[CompactedReader, Callable[[str], bool]]:
    """A reader with its real apply function, and whether it took a key into its view."""
    if name == "subscriptions":
        index = SubscriptionIndex()
        return CompactedReader(SETTINGS, NAMES.subscriptions, index.apply, name=name), (
            lambda key: index.get(key) is not None
        )
    if name == "tokens":
        tokens = TokenIndex()
        return CompactedReader(SETTINGS, NAMES.tokens, tokens.apply, name=name), (
            lambda key: tokens.get(key) is not None
        )
    if name == "health":
        monitor = HealthMonitor(Pipeline())  # type: ignore[arg-type]
        return CompactedReader(SETTINGS, NAMES.health, monitor._apply, name=name), (
            lambda key: key in monitor.table
        )
    raise AssertionError(f"no reader {name}")


READERS = ["subscriptions", "tokens", "health"]


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
@pytest.mark.parametrize("name", READERS)
def test_every_state_reader_skips_every_bad_record_and_keeps_reading(name: str, bad: Bad) -> None:
    reader, holds = reader_of(name)
    record = ConsumerRecord(reader.topic, 0, 7, bad.key, bad.value, bad.headers)
    reader._apply_record(record)  # never raises
    key = (bad.key or b"").decode("utf-8", "replace")
    assert not holds(key)
    # The reader goes on: a good record after it is applied.
    good = {
        "subscriptions": SUB.to_bytes(),
        "tokens": b'{"tenant_id": "acme", "sha256": "ab", "created_at": 1}',
        "health": b'{"consecutive": 2, "at": 1.0, "kinds": ["5xx"]}',
    }[name]
    reader._apply_record(ConsumerRecord(reader.topic, 0, 8, b"sub_1", good, ()))
    assert holds("sub_1")


GOOD_ATTEMPT = {
    "delivery_id": "d",
    "event_id": "e",
    "subscription_id": "s",
    "attempt": 1,
    "at": 1.0,
    "outcome": "retry",
    "duration_ms": 1.0,
    "event_type": "a.b",
    "tenant_id": "t",
}
#: Attempt records past the bounds the pipeline writes within (ids of at most
#: MAX_ID_CHARS): refused by the store, not kept as rows of any size.
BAD_ATTEMPTS = [
    Bad(
        "an attempt with a 10,000-character event type",
        orjson.dumps({**GOOD_ATTEMPT, "event_type": "a" * 10_000}),
    ),
    Bad(
        "an attempt with an id one past the bound",
        orjson.dumps({**GOOD_ATTEMPT, "delivery_id": "d" * (MAX_ID_CHARS + 1)}),
    ),
    Bad(
        "an attempt with a 300-character source topic",
        orjson.dumps(
            {**GOOD_ATTEMPT, "source_topic": "t" * 300, "source_offset": 1, "source_partition": 0}
        ),
    ),
]


@pytest.mark.parametrize("bad", BAD + BAD_ATTEMPTS, ids=[b.name for b in BAD + BAD_ATTEMPTS])
def test_the_log_store_skips_every_bad_record_with_its_reason_and_keeps_indexing(
    bad: Bad, tmp_path: Path
) -> None:
    """The indexer's decode path (LogWriter.write): where AttemptLog.apply returned a
    skip reason, the store records one and the indexer logs and counts it."""
    path = tmp_path / "log.sqlite3"
    writer = LogWriter(path, NAMES.attempts)
    try:
        result = writer.write([(0, 7, bad.value), (0, 8, orjson.dumps(GOOD_ATTEMPT))])
        assert writer.positions() == {0: 9}  # moved past it
    finally:
        writer.close()
    assert (result.attempts, result.skipped) == (1, 1)
    [(partition, offset, reason)] = result.skips
    assert (partition, offset) == (0, 7)
    assert reason
    reader = LogReader(path)
    try:
        assert [r["delivery_id"] for r in reader.page(DeliveryQuery()).data] == ["d"]
        assert [(s["offset"], s["reason"]) for s in reader.skipped()] == [(7, reason)]
    finally:
        reader.close()


def test_an_attempt_with_a_huge_error_is_kept_with_the_error_cut(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    writer = LogWriter(path, NAMES.attempts)
    huge = {**GOOD_ATTEMPT, "error": "e" * 900_000, "response_snippet": "s" * 900_000}
    try:
        assert writer.write([(0, 0, orjson.dumps(huge))]).attempts == 1
    finally:
        writer.close()
    reader = LogReader(path)
    try:
        found = reader.delivery("d")
    finally:
        reader.close()
    assert found is not None
    [kept] = found[1]
    assert kept.error == "e" * MAX_ERROR_READ_CHARS
    assert len(kept.response_snippet.encode()) == SNIPPET_BYTES


# -- what the engine writes from the largest delivery it accepts -------------------------

BOUND_SUB = Subscription(
    id="sub_" + "s" * (MAX_ID_CHARS - 4),
    tenant_id="acme",
    url="https://h.example/",
    event_types=["*"],
    signing="prospektr",  # signs without a secret: the request goes out
)


def largest_delivery(attempt: int, *, old_error: bool, extra: int = 0) -> bytes:
    """The largest delivery record the engine accepts (plus ``extra`` bytes), written so that
    re-encoding it grows it most: only the required fields, every id as long as allowed,
    the body filling the rest; with ``old_error``, an error as long as one read back may be
    (a dead letter carries it twice)."""
    fields: dict[str, Any] = {
        "delivery_id": "d" * MAX_ID_CHARS,
        "event_id": "e" * MAX_ID_CHARS,
        "event_type": "t" * MAX_ID_CHARS,
        "tenant_id": "a" * MAX_ID_CHARS,
        "subscription_id": BOUND_SUB.id,
        "attempt": attempt,
        "body": "",
    }
    if old_error:
        fields["last_error"] = "\x01" * MAX_ERROR_READ_CHARS  # 6 bytes each in JSON
    size = LIMIT - FOLLOW_UP_ROOM + extra
    fields["body"] = "b" * (size - len(orjson.dumps(fields)))
    raw = orjson.dumps(fields)
    assert len(raw) == size
    return raw


class ErrorSender:
    """Answers every request with a 500 and an error text as long and wide as can be."""

    def __init__(self, status: int = 500) -> None:
        self.status = status

    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        return SendResult(status=self.status, detail="\x02" * 100_000)


@pytest.mark.parametrize("old_error", [False, True])
@pytest.mark.parametrize(
    ("attempt", "status", "subscribed", "written"),
    [
        (1, 500, True, {"deliveries.retry.1s", "attempts", "endpoint.health"}),  # a retry
        (3, 500, True, {"deliveries.dlq", "attempts", "ops", "endpoint.health"}),  # exhausted
        # 410 Gone: a dead letter and the automatic disable (a copy of the subscription).
        (1, 410, True, {"deliveries.dlq", "attempts", "subscriptions", "ops", "endpoint.health"}),
        (1, 500, False, {"deliveries.dlq"}),  # its subscription was deleted
    ],
)
async def test_every_record_the_engine_writes_from_the_largest_delivery_fits_its_topic(
    attempt: int, status: int, subscribed: bool, written: set[str], old_error: bool
) -> None:
    p = Pipeline()  # its send() asserts that each record fits its topic's limit
    if subscribed:
        p.subscriptions.apply(BOUND_SUB.id, BOUND_SUB.to_bytes())
    engine = DeliveryEngine(p, ErrorSender(status))  # type: ignore[arg-type]
    health = HealthMonitor(p)  # type: ignore[arg-type]
    engine.on_outcome.append(health.on_attempt)
    tracker = acks()
    message = Message(NAMES.deliveries, BOUND_SUB.id.encode(), ())
    ticket = await tracker.track(Event(message))
    await engine.handle(largest_delivery(attempt, old_error=old_error), message, ticket, tracker)
    await settle(lambda: ticket.done)
    assert {s.topic.removeprefix("p.") for s in p.sent} == written
    attempt_records = [s.value for s in p.sent if s.topic == NAMES.attempts]
    for value in attempt_records:  # bounded ids, snippet and error: far under any limit
        assert value is not None
        assert len(value) < 64 * 1024


async def test_a_delivery_one_byte_larger_is_parked_before_any_attempt() -> None:
    p = Pipeline()
    p.subscriptions.apply(BOUND_SUB.id, BOUND_SUB.to_bytes())
    await engine_handle(
        p, NAMES.deliveries, Bad("largest + 1", largest_delivery(1, old_error=False, extra=1))
    )
    (sent,) = p.sent
    assert sent.topic == NAMES.events_invalid
    assert (
        "its retry or dead letter could exceed"
        in ParkedRecord(sent.key, sent.value, sent.headers).reason
    )
