"""Published events reach Kafka byte for byte, in order within each tenant."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.config import Settings
from streams.errors import PublishError
from streams.kafka.topics import TopicNames, create_topics
from streams.publish import EventPublisher
from streams.records import EventEnvelope

pytestmark = pytest.mark.integration

N_EVENTS = 10_000
TENANTS = 37


def crawl(i: int) -> dict[str, object]:
    return {
        "organization_id": "org_1",
        "run_id": f"run_{i}",
        "watcher_id": "wch_1",
        "platform": "reddit",
        "status": "ok",
        "errored": False,
        "posts_fetched": i,
        "started_at": "2026-04-29T19:12:32.579Z",
    }


def read_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 60
) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    out: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.key(), msg.value(), msg.partition()))
    finally:
        consumer.close()
    return out


def test_ten_thousand_events_arrive_complete_and_in_order_per_tenant(settings: Settings) -> None:
    create_topics(settings)
    with EventPublisher(settings) as publisher:
        events = [
            publisher.build(
                "crawl.run.completed", f"tenant-{i % TENANTS}", crawl(i), event_id=f"e{i}"
            )
            for i in range(N_EVENTS)
        ]
        sent = publisher.publish_many(events)
    assert len(sent) == N_EVENTS
    assert all(p.offset >= 0 for p in sent)

    records = read_all(settings, TopicNames(settings.topic_prefix).events, N_EVENTS)
    assert len(records) == N_EVENTS
    by_id = {e.id: e.to_bytes() for e in events}
    seen: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for key, value, partition in records:
        event = EventEnvelope.from_bytes(value)
        assert value == by_id[event.id]  # byte for byte
        assert key == event.tenant_id.encode()
        seen[event.tenant_id].append(int(event.id[1:]))
        partition_of[key].add(partition)
    assert sum(len(v) for v in seen.values()) == N_EVENTS
    assert len({i for v in seen.values() for i in v}) == N_EVENTS  # none lost, none twice
    for tenant, order in seen.items():
        assert order == sorted(order), f"{tenant} reordered"
    assert all(len(p) == 1 for p in partition_of.values())  # one partition per tenant


def test_an_unreachable_bootstrap_is_one_clear_error(settings: Settings) -> None:
    from streams.errors import KafkaUnavailableError

    bad = Settings.from_env({"STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_BOOTSTRAP"):
        EventPublisher(bad)


def test_a_send_to_a_missing_topic_is_raised_not_dropped(settings: Settings) -> None:
    # No topics were created for this prefix and the broker does not auto-create.
    publisher = EventPublisher(settings, extra_config={"message.timeout.ms": 3000})
    with pytest.raises(PublishError, match="not confirmed"):
        publisher.publish("crawl.run.completed", "t", crawl(1))


def test_connect_learns_the_topic_up_front_or_says_what_is_missing(settings: Settings) -> None:
    from streams.errors import KafkaUnavailableError

    # No topics yet for this prefix: the error names the fix.
    with (
        EventPublisher(settings) as publisher,
        pytest.raises(KafkaUnavailableError, match="streams topics create"),
    ):
        publisher.connect(timeout_s=5)
    create_topics(settings)
    with EventPublisher(settings) as publisher:
        publisher.connect(timeout_s=10)
        assert publisher.publish("crawl.run.completed", "t", crawl(1)).offset >= 0


def test_connect_to_a_silent_bootstrap_fails_within_its_timeout() -> None:
    from streams.errors import KafkaUnavailableError

    bad = Settings.from_env({"STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    publisher = EventPublisher(bad, check_broker=False, extra_config={"message.timeout.ms": 1000})
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_BOOTSTRAP"):
        publisher.connect(timeout_s=1)
    assert time.monotonic() - started < 5
