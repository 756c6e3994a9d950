"""No record stops the pipeline, on a real broker (issue 17, items 1, 2 and 10).

Each hostile record is produced raw to each topic the worker reads. Afterwards
the worker is still running, delivers a valid event published after them, and
every bad record can be found with its reason:

- from ``events``, ``ops``, ``deliveries`` and each retry tier: parked on
  ``events.invalid``, key and value byte for byte, the reason and the source
  position in headers;
- from the state topics and the delivery log (``subscriptions``, ``tokens``,
  ``endpoint.health``, ``attempts``), which every worker reads whole at every
  start: skipped, with its position and reason in the worker's log (it stays
  in its topic); a tombstone there is the delete it means.

Events of 700 KB, 800 KB, 1,000 KB and the largest ``events`` holds are among
them: their old parked form (base64 in JSON) was over the record limit from
about 786 KB, which stopped the worker at every restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.kafka.topics import TopicNames, parked_record_bytes, retry_tiers
from streams.publish import EventPublisher
from streams.records import Delivery, ParkedRecord, record_size
from tests.integration.harness import Api, ReceiverProcess, WorkerProcess, read_topic

pytestmark = pytest.mark.integration

PROSPECT = {"id": "p1", "name": "Acme", "status": "qualified", "created_at": "2026-01-01T00:00:00Z"}
HERE = Path(__file__).resolve().parent


def wide_event() -> bytes:
    """A valid event but for one integer beyond 64 bits (orjson cannot write one: spliced)."""
    raw = orjson.dumps(
        {
            "id": "evt_wide",
            "type": "prospect.added",
            "tenant_id": "poison",
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": PROSPECT,
        }
    )
    return raw[:-2] + b',"n":12345678901234567890123}}'


def delivery_with(**fields: Any) -> bytes:
    good = Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="prospect.added",
        tenant_id="poison",
        subscription_id="sub_1",
        body="{}",
        attempt=1,
    ).to_dict()
    return orjson.dumps(good | fields)


def sized(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes (an event too large for the payload limit)."""
    head, tail = b'{"id":"big","data":{"blob":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@dataclass(frozen=True)
class Bad:
    name: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    topics: str = "all"  # "all", or "events": only where the case is about events


def bad_records(settings: Settings) -> list[Bad]:
    largest = settings.max_record_bytes - record_size(b"k", b"", ())
    return [
        Bad("tombstone", b"k", None),
        Bad("empty value", b"k", b""),
        Bad("null key", None, b"garbage"),
        Bad("binary key and value", b"\xff\xfe\x00", b"\x00\xff\xfe binary"),
        Bad("arbitrary headers", b"k", b"{}", (("x", b"\xff\x00"), ("", None), ("x", b"2"))),
        Bad("a JSON array", b"k", b"[1, 2]"),
        Bad("a delivery due 'soon'", b"sub_1", delivery_with(due_at="soon")),
        Bad("a delivery at attempt 0", b"sub_1", delivery_with(attempt=0)),
        Bad("the largest value", b"k", sized(largest)),
        Bad("an integer beyond 64 bits", b"poison", wide_event(), topics="events"),
        Bad("a 700 KB event", b"poison", sized(700_000), topics="events"),
        Bad("an 800 KB event", b"poison", sized(800_000), topics="events"),
        Bad("a 1,000 KB event", b"poison", sized(1_000_000), topics="events"),
    ]


@dataclass(frozen=True)
class Produced:
    bad: Bad
    topic: str
    partition: int
    offset: int


def produce_raw(settings: Settings, records: list[tuple[str, Bad]]) -> list[Produced]:
    """Produce each record as is (no publisher checks), with its position once confirmed."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "message.max.bytes": parked_record_bytes(settings),
        }
    )
    done: list[Produced] = []
    errors: list[str] = []

    def report(bad: Bad) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"{bad.name} to {msg.topic()}: {err}")
            else:
                done.append(Produced(bad, msg.topic(), msg.partition(), msg.offset()))

        return on_delivery

    for topic, bad in records:
        producer.produce(
            topic, bad.value, bad.key, headers=list(bad.headers) or None, on_delivery=report(bad)
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    return done


def produce_non_utf8_header_name(settings: Settings, topic: str) -> Produced:
    """A record whose header name is not UTF-8 (written by ``_rawheader.py``: our clients
    cannot write one). Kafka stores it; aiokafka's reader raised on it before the fix."""
    done = subprocess.run(
        [sys.executable, str(HERE / "_rawheader.py"), settings.kafka_bootstrap, topic],
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    partition, offset = (int(n) for n in done.stdout.split())
    bad = Bad("a header name that is not UTF-8", b"k", b"{}")
    return Produced(bad, topic, partition, offset)


def test_no_record_stops_the_worker_and_every_bad_record_is_found_with_its_reason(
    worker: WorkerProcess, admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    settings = worker_settings
    names = TopicNames(settings.topic_prefix)
    sub = admin.create(tenant_id="poison", url=receiver.url("poison"), event_types=["*"])
    agents = [names.events, names.ops, names.deliveries, *map(names.retry, retry_tiers(settings))]
    state = [names.subscriptions, names.tokens, names.health, names.attempts]
    compacted = {names.subscriptions, names.tokens, names.health}
    plan = [
        (topic, bad)
        for bad in bad_records(settings)
        for topic in agents + state
        if (bad.topics == "all" or topic == names.events)
        # Kafka refuses a record without a key on a compacted topic: none can be there.
        and not (bad.key is None and topic in compacted)
    ]
    produced = produce_raw(settings, plan)
    produced += [produce_non_utf8_header_name(settings, topic) for topic in agents + state]

    with EventPublisher(settings) as pub:
        pub.publish("prospect.added", "poison", PROSPECT, event_id="after-the-poison")
    got = receiver.wait_for("poison", 1, timeout_s=60)
    assert [e["event_id"] for e in got] == ["after-the-poison"], worker.tail()
    assert worker.proc is not None
    assert worker.proc.poll() is None, worker.tail()

    # Agents' topics: each record parked whole, with its reason and where it was read.
    expected = [p for p in produced if p.topic in agents]
    messages = read_topic(settings, names.events_invalid, expected=len(expected), timeout_s=60)
    parked = {}
    for m in messages:
        record = ParkedRecord(m.key(), m.value(), tuple(m.headers() or ()))
        parked[record.source] = record
    assert len(parked) == len(messages)  # each parked once
    for p in expected:
        record = parked.get((p.topic, p.partition, p.offset))
        assert record is not None, f"{p.bad.name} on {p.topic} was not parked"
        assert (record.key, record.value) == (p.bad.key, p.bad.value), p.bad.name
        assert record.truncated == frozenset()
        assert record.reason, p.bad.name
    reasons = {
        (p.bad.name, p.topic): parked[(p.topic, p.partition, p.offset)].reason for p in expected
    }
    assert "no value" in reasons[("tombstone", names.events)]
    assert "no value" in reasons[("tombstone", names.deliveries)]
    assert "integer beyond 64 bits" in reasons[("an integer beyond 64 bits", names.events)]
    assert "over the limit" in reasons[("an 800 KB event", names.events)]
    assert (
        "its retry or dead letter could exceed" in reasons[("the largest value", names.deliveries)]
    )

    # State topics: skipped with position and reason in the log; tombstones are deletes.
    # The log indexer writes (and so logs) in transactions of about two seconds: give the
    # lines a bounded while to appear.
    wanted = [
        (p, f"skipped the record at {p.topic}[{p.partition}]@{p.offset} ")
        for p in produced
        if p.topic in state and not (p.bad.value is None and p.bad.key == b"k")
    ]
    deadline = time.monotonic() + 30
    while True:
        log = Path(worker.log_path).read_text(errors="replace")
        missing = [(p.bad.name, p.topic) for p, line in wanted if line not in log]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert missing == []
    # The subscription the bad records were produced around is untouched.
    assert admin.call("GET", f"/v1/subscriptions/{sub['id']}").status_code == 200
