"""The worker's Kafka output: confirmations as futures, Java-compatible partitioning."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.config import Settings
from streams.kafka.output import KafkaOutput, OutputError
from streams.kafka.topics import TopicNames, create_topics

pytestmark = pytest.mark.integration


async def _send_all(output: KafkaOutput, topic: str, keys: list[bytes]) -> list[tuple[int, int]]:
    futures = [await output.send(topic, key, b'{"n": %d}' % i) for i, key in enumerate(keys)]
    results = await asyncio.wait_for(asyncio.gather(*futures), 30)
    await output.close()
    return list(results)


def test_every_record_is_confirmed_on_the_partition_aiokafka_would_choose(
    settings: Settings,
) -> None:
    create_topics(settings)
    topic = TopicNames(settings.topic_prefix).deliveries
    keys = [f"sub_{i}".encode() for i in range(200)]
    results = asyncio.run(_send_all(KafkaOutput(settings), topic, keys))

    partitions = list(range(settings.partitions))
    expected = [DefaultPartitioner()(key, partitions, partitions) for key in keys]
    assert [p for p, _ in results] == expected
    # Offsets grow per partition in send order: nothing reordered, nothing lost.
    for partition in partitions:
        offsets = [o for p, o in results if p == partition]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == len(offsets)


def test_a_record_kafka_refuses_fails_its_future_with_the_topic(settings: Settings) -> None:
    create_topics(settings)
    topic = TopicNames(settings.topic_prefix).attempts

    async def run() -> BaseException | None:
        output = KafkaOutput(settings)
        too_big = b"x" * (settings.max_payload_bytes * 4 + 2_000_000)
        future = await output.send(topic, b"k", too_big)
        try:
            await asyncio.wait_for(future, 30)
        except OutputError as exc:
            return exc
        finally:
            await output.close()
        return None

    error = asyncio.run(run())
    assert isinstance(error, OutputError)
    assert topic in str(error)


def test_a_closed_output_refuses_new_records(settings: Settings) -> None:
    async def run() -> None:
        output = KafkaOutput(settings)
        await output.close()
        with pytest.raises(OutputError, match="closed"):
            await output.send("any", b"k", b"v")

    asyncio.run(run())


def test_attempt_records_go_through_their_own_lingering_producer_and_all_are_confirmed(
    settings: Settings,
) -> None:
    import dataclasses

    create_topics(settings)
    names = TopicNames(settings.topic_prefix)
    slow = dataclasses.replace(settings, kafka_linger_ms=5, kafka_attempts_linger_ms=200)

    async def run() -> tuple[list[tuple[int, int]], float, int]:
        output = KafkaOutput(slow)
        loop = asyncio.get_running_loop()
        # Warm both producers up (connection, producer id) before timing one.
        warm = [
            await output.send(names.deliveries, b"sub_1", b"{}"),
            await output.send(names.attempts, b"sub_1", b"{}"),
        ]
        await asyncio.wait_for(asyncio.gather(*warm), 30)
        started = loop.time()
        logged = [await output.send(names.attempts, b"sub_1", b"{}") for _ in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*logged), 30)
        slow_s = loop.time() - started
        producers = len(output._producers)
        await output.close()
        return list(results), slow_s, producers

    results, slow_s, producers = asyncio.run(run())
    assert producers == 2
    assert len({o for _p, o in results}) == 20  # every attempt record confirmed, once
    # The attempts producer waits out its own linger (the main one lingers 5 ms).
    assert slow_s >= 0.19


def test_equal_lingers_write_everything_through_one_producer(settings: Settings) -> None:
    import dataclasses

    same = dataclasses.replace(settings, kafka_linger_ms=8, kafka_attempts_linger_ms=8)

    async def run() -> int:
        output = KafkaOutput(same)
        count = len(output._producers)
        await output.close()
        return count

    assert asyncio.run(run()) == 1


def test_by_default_one_producer_writes_everything(settings: Settings) -> None:
    async def run() -> int:
        output = KafkaOutput(settings)
        count = len(output._producers)
        await output.close()
        return count

    assert settings.kafka_attempts_linger_ms == -1
    assert asyncio.run(run()) == 1
