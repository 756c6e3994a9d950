"""What the delivery engine tells operators: delivery.exhausted, metrics, log ids, traceparent."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import pytest

from streams.config import Settings
from streams.delivery.engine import DeliveryEngine, SendResult
from streams.delivery.request import build_request
from streams.fanout.agent import deliveries_for
from streams.kafka.topics import TopicNames
from streams.records import Attempt, Delivery, EventEnvelope, Subscription
from streams.schemas import SchemaRegistry
from streams.subscriptions.model import reserved_headers

SETTINGS = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p.", "STREAMS_RETRY_SCHEDULE": "1s,2s"})
REGISTRY = SchemaRegistry.load()
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FakePipeline:
    def __init__(self) -> None:
        self.settings = SETTINGS
        self.names = TopicNames(SETTINGS.topic_prefix)
        self.stats: Counter[str] = Counter()
        self.extras: dict[str, Any] = {}
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send(self, topic: str, key: str | bytes, value: bytes | None) -> Any:
        self.sent.append((topic, key.encode() if isinstance(key, str) else key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def to(self, topic: str) -> list[tuple[bytes, bytes | None]]:
        return [(k, v) for t, k, v in self.sent if t == topic]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Delivery, Attempt]] = []

    def observe(self, delivery: Delivery, attempt: Attempt) -> None:
        self.seen.append((delivery, attempt))


SUB = Subscription(id="sub_1", tenant_id="acme", url="https://h.example/in", event_types=["*"])


def delivery(attempt: int, event_type: str = "alert.fired") -> Delivery:
    return Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type=event_type,
        tenant_id="acme",
        subscription_id="sub_1",
        body="{}",
        attempt=attempt,
        published_at=time.time() - 1,
    )


def engine() -> tuple[DeliveryEngine, FakePipeline, Recorder]:
    pipeline = FakePipeline()
    eng = DeliveryEngine(pipeline, sender=None, jitter=lambda: 0.0)  # type: ignore[arg-type]
    recorder = Recorder()
    eng.metrics = recorder
    return eng, pipeline, recorder


async def test_the_last_failed_attempt_emits_delivery_exhausted_under_the_tenant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng, p, recorder = engine()
    with caplog.at_level(logging.WARNING, logger="streams.delivery.engine"):
        await eng._follow_up(delivery(3), SUB, SendResult(status=500), started=time.time())
    assert len(p.to("p.deliveries.dlq")) == 1
    ((key, raw),) = p.to("p.ops")
    assert key == b"acme"
    assert raw is not None
    event = REGISTRY.decode(raw, max_bytes=SETTINGS.max_payload_bytes)  # schema-valid
    assert event.type == "delivery.exhausted"
    assert event.tenant_id == "acme"
    assert event.data == {
        "subscription_id": "sub_1",
        "delivery_id": "msg_1",
        "event_id": "evt_1",
        "event_type": "alert.fired",
        "attempts": 3,
        "reason": "exhausted",
        "last_status": 500,
        "last_error": "HTTP 500",
    }
    # The metrics hook saw the attempt, with the delivery for its publish time.
    ((seen_delivery, seen_attempt),) = recorder.seen
    assert (seen_delivery.delivery_id, seen_attempt.outcome, seen_attempt.status) == (
        "msg_1",
        "give_up",
        500,
    )
    # The log line about it carries the ids.
    (record,) = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert record.__dict__["delivery_id"] == "msg_1"
    assert record.__dict__["event_id"] == "evt_1"
    assert record.__dict__["subscription_id"] == "sub_1"


async def test_a_retry_or_a_success_emits_no_ops_event() -> None:
    eng, p, recorder = engine()
    await eng._follow_up(delivery(1), SUB, SendResult(status=503), started=time.time())
    await eng._follow_up(delivery(2), SUB, SendResult(status=200), started=time.time())
    assert p.to("p.ops") == []
    assert [a.outcome for _, a in recorder.seen] == ["retry", "delivered"]


async def test_a_give_up_that_is_not_exhaustion_emits_no_delivery_exhausted() -> None:
    eng, p, _ = engine()
    await eng._follow_up(delivery(1), SUB, SendResult(status=410), started=time.time())
    assert len(p.to("p.deliveries.dlq")) == 1
    assert p.to("p.ops") == []


async def test_an_exhausted_delivery_exhausted_event_does_not_beget_another() -> None:
    eng, p, _ = engine()
    await eng._follow_up(
        delivery(3, event_type="delivery.exhausted"), SUB, SendResult(status=500), started=0.0
    )
    assert len(p.to("p.deliveries.dlq")) == 1
    assert p.to("p.ops") == []


async def test_with_metrics_off_the_engine_records_nothing() -> None:
    eng, p, _ = engine()
    eng.metrics = None
    await eng._follow_up(delivery(1), SUB, SendResult(status=200), started=time.time())
    assert p.stats["attempts.delivered"] == 1


def test_the_events_traceparent_reaches_every_attempts_request() -> None:
    """Event -> fan-out -> deliveries topic -> retry tier -> the webhook request."""
    raw = EventEnvelope(
        id="evt_1",
        type="alert.fired",
        tenant_id="acme",
        occurred_at="2026-01-01T00:00:00Z",
        data={
            "organization_id": "o",
            "alert_id": "a",
            "watcher_id": "w",
            "platform": "reddit",
            "fired_at": "2026-01-01T00:00:00Z",
        },
        traceparent=TRACEPARENT,
    ).to_bytes()
    event = REGISTRY.decode(raw, max_bytes=SETTINGS.max_payload_bytes)
    (first,) = deliveries_for(
        event, [SUB], body_key=REGISTRY.body_key(event.type), published_at=1.0, now=2.0
    )
    on_topic = Delivery.from_bytes(first.to_bytes())
    retried = Delivery.from_bytes(
        on_topic.next_attempt(due_at=3.0, status=503, error="x").to_bytes()
    )
    for d in (on_topic, retried):
        request = build_request(
            d,
            SUB,
            secrets=("whsec_" + "A" * 44,),
            timestamp=1_700_000_000,
            user_agent="ua",
            reserved=reserved_headers(),
        )
        assert request.headers["traceparent"] == TRACEPARENT
    assert retried.attempt == 2


def test_an_event_without_traceparent_sends_none() -> None:
    event = EventEnvelope(
        id="evt_2", type="alert.fired", tenant_id="acme", occurred_at="x", data={}
    )
    (d,) = deliveries_for(event, [SUB], body_key="alert", published_at=1.0, now=2.0)
    request = build_request(
        Delivery.from_bytes(d.to_bytes()),
        SUB,
        secrets=("whsec_" + "A" * 44,),
        timestamp=1,
        user_agent="ua",
        reserved=reserved_headers(),
    )
    assert "traceparent" not in {k.lower() for k in request.headers}
