"""The fan-out joins events with subscriptions: exactly the expected deliveries."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.publish import EventPublisher
from streams.records import Delivery, ParkedRecord, delivery_id_for
from tests.integration.harness import ALERT, Api, read_topic

pytestmark = pytest.mark.integration

PROSPECT = {"id": "p1", "name": "Acme", "status": "qualified", "created_at": "2026-01-01T00:00:00Z"}
CRAWL = {
    "organization_id": "o",
    "run_id": "r",
    "watcher_id": "w",
    "platform": "reddit",
    "status": "ok",
    "errored": False,
    "started_at": "2026-01-01T00:00:00Z",
}
URL = "http://127.0.0.1:9/hook"


def deliveries(settings: Settings, expected: int, settle_s: float = 2.0) -> list[Delivery]:
    records = read_topic(
        settings, settings.topic_prefix + "deliveries", expected=expected, settle_s=settle_s
    )
    return [Delivery.from_bytes(m.value()) for m in records]


def test_events_fan_out_to_exactly_the_matching_enabled_subscriptions_of_their_tenant(
    admin: Api, worker_settings: Settings
) -> None:
    exact = admin.create(tenant_id="acme", url=URL, event_types=["prospect.added"])
    prefix = admin.create(tenant_id="acme", url=URL, event_types=["crawl.*"])
    every = admin.create(tenant_id="acme", url=URL, event_types=["*"], body_format="keyed")
    admin.create(tenant_id="acme", url=URL, event_types=["*"], enabled=False)
    other = admin.create(tenant_id="globex", url=URL, event_types=["prospect.*"])

    with EventPublisher(worker_settings) as pub:
        sent = pub.publish_many(
            [
                pub.build(
                    "prospect.added", "acme", PROSPECT, event_id="e1", tenant_name="Acme Inc."
                ),
                pub.build("crawl.run.completed", "acme", CRAWL, event_id="e2"),
                pub.build("alert.fired", "acme", ALERT, event_id="e3"),
                pub.build("prospect.added", "globex", PROSPECT, event_id="e4"),
                pub.build("alert.fired", "initech", ALERT, event_id="e5"),
            ]
        )
    assert len(sent) == 5
    expected = {
        ("e1", exact["id"]),
        ("e1", every["id"]),
        ("e2", prefix["id"]),
        ("e2", every["id"]),
        ("e3", every["id"]),
        ("e4", other["id"]),
    }
    got = deliveries(worker_settings, len(expected))
    assert {(d.event_id, d.subscription_id) for d in got} == expected
    assert len(got) == len(expected)  # nothing twice
    for d in got:
        assert d.delivery_id == delivery_id_for(d.event_id, d.subscription_id)
        assert d.attempt == 1
    keyed = next(d for d in got if d.event_id == "e1" and d.subscription_id == every["id"])
    assert orjson.loads(keyed.body) == {
        "type": "prospect.added",
        "tenant": {"id": "acme", "name": "Acme Inc."},
        "prospect": PROSPECT,
    }
    envelope = next(d for d in got if d.subscription_id == exact["id"])
    body = orjson.loads(envelope.body)
    assert (body["type"], body["id"], body["event_id"], body["data"]) == (
        "prospect.added",
        "e1",
        "e1",
        PROSPECT,
    )


def test_invalid_events_are_parked_with_their_reason_and_the_agent_keeps_going(
    admin: Api, worker_settings: Settings
) -> None:
    sub = admin.create(tenant_id="badinput", url=URL, event_types=["*"])
    producer = Producer({"bootstrap.servers": worker_settings.kafka_bootstrap})
    topic = worker_settings.topic_prefix + "events"
    bad = [
        b"not json at all",
        b'{"id": "x1", "type": "prospect.added", "tenant_id": "badinput"}',
        orjson.dumps(
            {
                "id": "x2",
                "type": "invoice.paid",
                "tenant_id": "badinput",
                "occurred_at": "2026-01-01T00:00:00Z",
                "data": {},
            }
        ),
        orjson.dumps(
            {
                "id": "x3",
                "type": "prospect.added",
                "tenant_id": "badinput",
                "occurred_at": "2026-01-01T00:00:00Z",
                "data": {"name": 5},
            }
        ),
        b"\xff\xfe\x00binary",
        orjson.dumps(
            {
                "id": "x4",
                "type": "prospect.added",
                "tenant_id": "badinput",
                "occurred_at": "2026-01-01T00:00:00Z",
                "data": PROSPECT | {"lead_reasoning": "x" * 300_000},
            }
        ),
    ]
    for raw in bad:
        producer.produce(topic, key=b"badinput", value=raw)
    producer.flush(10)
    with EventPublisher(worker_settings) as pub:
        pub.publish("prospect.added", "badinput", PROSPECT, event_id="after-bad")

    invalid = [
        ParkedRecord(m.key(), m.value(), tuple(m.headers() or ()))
        for m in read_topic(
            worker_settings, worker_settings.topic_prefix + "events.invalid", expected=len(bad)
        )
    ]
    assert sorted(r.value or b"" for r in invalid) == sorted(bad)
    assert {r.key for r in invalid} == {b"badinput"}
    reasons = {r.value: r.reason for r in invalid}
    assert "not JSON" in reasons[b"not json at all"]
    assert "unknown event type `invoice.paid`" in reasons[bad[2]]
    assert next(r.field for r in invalid if r.value == bad[3]).startswith("data")
    assert "over the limit" in reasons[bad[5]]
    good = [d for d in deliveries(worker_settings, 1, settle_s=0) if d.subscription_id == sub["id"]]
    assert [d.event_id for d in good] == ["after-bad"]


def test_subscription_changes_apply_to_the_next_event_without_a_restart(
    admin: Api, worker_settings: Settings
) -> None:
    # Changes apply to events processed after them. A tenant's events are processed in
    # order, so each step waits until the previous event's effect is visible, and a
    # witness subscription on the same tenant marks that later events were processed.
    sub = admin.create(tenant_id="live", url=URL, event_types=["alert.fired"])
    witness = admin.create(tenant_id="live", url=URL, event_types=["prospect.added"])

    def delivered_to(sub_id: str, event_id: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(
                d.subscription_id == sub_id and d.event_id == event_id
                for d in deliveries(worker_settings, 1, settle_s=0)
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"{event_id} never reached {sub_id}")

    with EventPublisher(worker_settings) as pub:
        pub.publish("alert.fired", "live", ALERT, event_id="live-1")
        delivered_to(sub["id"], "live-1")
        assert (
            admin.call(
                "POST", f"/v1/subscriptions/{sub['id']}/disable", {"reason": "maintenance"}
            ).status_code
            == 200
        )
        pub.publish("alert.fired", "live", ALERT, event_id="live-2")
        pub.publish("prospect.added", "live", PROSPECT, event_id="mark-2")
        delivered_to(witness["id"], "mark-2")
        assert admin.call("POST", f"/v1/subscriptions/{sub['id']}/enable").status_code == 200
        assert (
            admin.call(
                "PATCH", f"/v1/subscriptions/{sub['id']}", {"event_types": ["crawl.run.completed"]}
            ).status_code
            == 200
        )
        pub.publish("alert.fired", "live", ALERT, event_id="live-3")
        pub.publish("crawl.run.completed", "live", CRAWL, event_id="live-4")
        delivered_to(sub["id"], "live-4")
        assert admin.call("DELETE", f"/v1/subscriptions/{sub['id']}").status_code == 204
        pub.publish("crawl.run.completed", "live", CRAWL, event_id="live-5")
        pub.publish("prospect.added", "live", PROSPECT, event_id="mark-5")
        delivered_to(witness["id"], "mark-5")
    mine = [
        d.event_id
        for d in deliveries(worker_settings, 1, settle_s=0)
        if d.subscription_id == sub["id"]
    ]
    assert mine == ["live-1", "live-4"]


def test_the_test_endpoint_queues_a_sample_delivery_for_that_subscription_only(
    admin: Api, worker_settings: Settings
) -> None:
    sub = admin.create(tenant_id="tester", url=URL, event_types=["crawl.*"])
    admin.create(tenant_id="tester", url=URL, event_types=["*"])
    resp = admin.call("POST", f"/v1/subscriptions/{sub['id']}/test")
    assert resp.status_code == 202, resp.text
    info: dict[str, Any] = resp.json()
    assert info["event_type"] == "crawl.run.completed"
    got = [d for d in deliveries(worker_settings, 1, settle_s=1) if d.event_id == info["event_id"]]
    assert [(d.subscription_id, d.delivery_id) for d in got] == [(sub["id"], info["delivery_id"])]
    assert orjson.loads(got[0].body)["data"]["watcher_name"] == "SaaS founders"
