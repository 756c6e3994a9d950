"""Topic creation is complete and idempotent."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.config import Settings
from streams.kafka.topics import TopicNames, create_topics, topic_specs

pytestmark = pytest.mark.integration


def test_every_topic_is_created_once_with_its_configuration(settings: Settings) -> None:
    first = create_topics(settings)
    names = TopicNames(settings.topic_prefix)
    expected = {s.name for s in topic_specs(settings)}
    assert set(first) == expected
    assert set(first.values()) == {"created"}
    for name in (
        names.events,
        names.subscriptions,
        names.deliveries,
        names.dlq,
        names.attempts,
        names.ops,
        names.events_invalid,
        names.retry(5),
        names.retry(86400),
    ):
        assert name in expected

    second = create_topics(settings)
    assert set(second.values()) == {"exists"}

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    meta = admin.list_topics(timeout=10)
    assert len(meta.topics[names.events].partitions) == settings.partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, names.subscriptions)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"


def test_a_record_limit_below_what_this_version_parks_is_raised(settings: Settings) -> None:
    # A cluster set up by an earlier version: events.invalid and the DLQ at the 1 MiB
    # limit of every topic, too small for what is parked now (issue 17).
    from confluent_kafka.admin import NewTopic

    from streams.kafka.topics import parked_record_bytes

    names = TopicNames(settings.topic_prefix)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    old = str(settings.max_record_bytes)
    futures = admin.create_topics(
        [
            NewTopic(name, 1, 1, config={"max.message.bytes": old})
            for name in (names.events_invalid, names.dlq)
        ]
    )
    for future in futures.values():
        future.result(timeout=30)

    result = create_topics(settings)
    assert result[names.events_invalid] == result[names.dlq] == "raised"
    assert result[names.events] == "created"
    for name in (names.events_invalid, names.dlq):
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert config["max.message.bytes"].value == str(parked_record_bytes(settings))
    assert set(create_topics(settings).values()) == {"exists"}  # raised once
