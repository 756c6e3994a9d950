"""An idle aiokafka consumer with the long fetch wait, against a real broker: it asks
less often, and a record written during a held fetch still arrives at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.config import Settings
from streams.kafka.fetch_wait import _IdleAwareFetcher, adapt_fetch_wait
from streams.kafka.topics import TopicNames, create_topics

pytestmark = pytest.mark.integration


async def _run(settings: Settings) -> tuple[int, list[float]]:
    topic = TopicNames(settings.topic_prefix).events
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, fetch_max_wait_ms=100
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await producer.start()
    try:
        assert adapt_fetch_wait(consumer, 3000)
        fetcher = consumer._fetcher
        assert isinstance(fetcher, _IdleAwareFetcher)
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        # Idle: a few short fetches, then held ones; count the fetches of 4 s.
        await asyncio.sleep(1.0)
        before = fetcher._empty_fetches
        await asyncio.sleep(4.0)
        idle_fetches = fetcher._empty_fetches - before
        lags = []
        for partition in (0, 2, 1):
            await asyncio.sleep(1.0)  # back to idle between records
            assert fetcher._fetch_max_wait_ms == 3000  # the fetch in flight is a held one
            sent = time.monotonic()
            await producer.send_and_wait(topic, b"{}", partition=partition)
            got = await consumer.getmany(timeout_ms=5000)
            assert sum(len(v) for v in got.values()) == 1
            lags.append(time.monotonic() - sent)
            await asyncio.sleep(0.5)
        return idle_fetches, lags
    finally:
        await producer.stop()
        await consumer.stop()


def test_an_idle_consumer_fetches_rarely_and_still_gets_a_record_at_once(
    settings: Settings,
) -> None:
    create_topics(settings)
    idle_fetches, lags = asyncio.run(_run(settings))
    # 100 ms alone would be about 40 fetches in 4 s; held for 3 s, one or two.
    assert idle_fetches <= 3, idle_fetches
    # Each record ends the held fetch: far less than its 3 s.
    assert max(lags) < 1.0, lags
