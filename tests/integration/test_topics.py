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
