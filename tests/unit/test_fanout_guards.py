"""No event stops the fan-out: what it cannot deliver is parked in events.invalid, whole.

Each case is an event an upstream producer can write to ``events`` (no
publisher-side check applies to other producers). Before these guards, the
first two raised inside the agent, which stopped the worker with the event
un-acked, and again at every restart.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from streams.config import Settings
from streams.fanout.agent import fan_out_one
from streams.kafka.topics import TopicNames
from streams.records import Delivery, ParkedRecord, Subscription
from streams.schemas import MAX_NESTING, SchemaRegistry

REGISTRY = SchemaRegistry.load()
SUBS = [
    Subscription(id=f"sub_{n}", tenant_id="acme", url="https://h.example/", event_types=["*"])
    for n in range(3)
]


@dataclass
class Message:
    topic: str = "events"
    partition: int = 0
    offset: int = 7
    timestamp: float = 1.0


class Index:
    def matching(self, tenant_id: str, event_type: str, **_: Any) -> list[Subscription]:
        return [s for s in SUBS if s.tenant_id == tenant_id]


class FakePipeline:
    def __init__(self, **env: str) -> None:
        self.settings = Settings.from_env(env)
        self.names = TopicNames(self.settings.topic_prefix)
        self.registry = REGISTRY
        self.subscriptions = Index()
        self.stats: Counter[str] = Counter()
        self.sent: list[tuple[str, bytes]] = []
        self.parked: list[ParkedRecord] = []

    async def send(
        self, topic: str, key: str | bytes | None, value: bytes, headers: Any = None
    ) -> Any:
        self.sent.append((topic, value))
        if topic == self.names.events_invalid:
            assert not isinstance(key, str)
            self.parked.append(ParkedRecord(key, value, tuple(headers)))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def event(data: bytes) -> bytes:
    head = orjson.dumps(
        {
            "id": "evt_1",
            "type": "alert.fired",
            "tenant_id": "acme",
            "occurred_at": "2026-01-01T00:00:00Z",
        }
    )
    return head[:-1] + b',"data":' + data + b"}"


def sample_data(**extra: bytes) -> bytes:
    body = orjson.dumps(REGISTRY.sample("alert.fired"))
    for name, raw in extra.items():
        body = body[:-1] + b',"' + name.encode() + b'":' + raw + b"}"
    return body


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def run(pipeline: FakePipeline, raw: bytes) -> list[tuple[str, bytes]]:
    asyncio.run(fan_out_one(pipeline, b"acme", raw, Message()))
    return pipeline.sent


def only_invalid(p: FakePipeline) -> ParkedRecord:
    assert [topic for topic, _ in p.sent] == [p.names.events_invalid]
    return p.parked[0]


def test_a_plain_event_is_fanned_out_to_every_subscription() -> None:
    p = FakePipeline()
    sent = run(p, event(sample_data()))
    assert [topic for topic, _ in sent] == [p.names.deliveries] * 3
    assert {Delivery.from_bytes(v).subscription_id for _, v in sent} == {s.id for s in SUBS}


def test_an_event_nested_past_what_orjson_writes_is_parked_not_raised() -> None:
    # 300 levels: orjson reads it, but writing the delivery body raised TypeError.
    p = FakePipeline()
    raw = event(sample_data(extra=nested(300)))
    run(p, raw)
    invalid = only_invalid(p)
    assert f"nested deeper than {MAX_NESTING} levels" in invalid.reason
    assert invalid.field.startswith("data.extra[0]")
    assert invalid.value == raw  # kept exactly, for whoever fixes the producer
    assert p.stats["invalid"] == 1


def test_a_deep_value_in_a_schema_field_is_parked_not_a_recursion_error() -> None:
    # 1,000 levels in a typed field: jsonschema's error message recursed past the limit.
    p = FakePipeline()
    run(p, event(sample_data(score=nested(1000))))
    invalid = only_invalid(p)
    assert invalid.field.startswith("data.score[0]")


def test_an_event_whose_deliveries_outgrow_a_kafka_record_is_parked_whole() -> None:
    # orjson writes 9e15 as 9000000000000000.0: the body grows 4.5x when re-encoded.
    p = FakePipeline(STREAMS_MAX_PAYLOAD_BYTES="400000")
    numbers = b"[" + b",".join([b"9e15"] * 78_000) + b"]"
    raw = event(sample_data(extra=numbers))
    assert len(raw) <= p.settings.max_payload_bytes
    run(p, raw)
    invalid = only_invalid(p)  # no delivery of it was written
    assert "record limit" in invalid.reason
    assert invalid.field == "data"


def test_nesting_up_to_the_limit_is_delivered() -> None:
    p = FakePipeline()
    # The envelope is level 1 and data level 2: the value may add MAX_NESTING - 2.
    sent = run(p, event(sample_data(extra=nested(MAX_NESTING - 2))))
    assert [topic for topic, _ in sent] == [p.names.deliveries] * 3
