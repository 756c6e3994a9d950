"""The offsets reader against a real broker: watermarks, two groups' commits, no broker."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.kafka.offsets import OffsetReader, PartitionOffsets
from streams.kafka.topics import TopicNames, create_topics

pytestmark = pytest.mark.integration


async def _produce(settings: Settings, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for _ in range(count):
                await producer.send_and_wait(topic, b"{}", partition=partition)
    finally:
        await producer.stop()


async def _commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


def test_the_reader_reports_watermarks_and_the_furthest_commit_of_two_groups(
    settings: Settings,
) -> None:
    create_topics(settings)
    topic = TopicNames(settings.topic_prefix).events
    asyncio.run(_produce(settings, topic, {0: 5, 1: 3, 2: 0}))
    asyncio.run(_commit(settings, "g1", {TopicPartition(topic, 0): 2}))
    asyncio.run(_commit(settings, "g2", {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 3}))

    reader = OffsetReader(settings, timeout_s=10)
    try:
        got = reader.read([topic, settings.topic_prefix + "no-such-topic"], ["g1", "g2"])
        again = reader.read([topic], ["g1"])  # the clients are reused
    finally:
        reader.close()
    assert got == [
        PartitionOffsets(topic, 0, 0, 5, 4),
        PartitionOffsets(topic, 1, 0, 3, 3),
        PartitionOffsets(topic, 2, 0, 0, None),
    ]
    assert [p.lag for p in got] == [1, 0, 0]
    assert [p.committed for p in again] == [2, None, None]


def test_without_a_broker_the_reader_fails_within_its_timeout(settings: Settings) -> None:
    from tests.integration.harness import free_port

    nowhere = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    reader = OffsetReader(nowhere, timeout_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_BOOTSTRAP") as caught:
            reader.read([TopicNames(settings.topic_prefix).events], ["g"])
    finally:
        reader.close()
    assert time.monotonic() - started < 5
    assert nowhere.kafka_bootstrap in str(caught.value)
