"""The retry tiers take a new assignment: committed partitions resume where they were,
the others start at the beginning, all of them in one seek (each seek waits for the
fetch in flight: one per partition kept a worker's tiers idle for ~27 s)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from streams.retry.agent import TierConsumer


class FakeConsumer:
    """The calls TierConsumer._apply_assignment makes on aiokafka's consumer."""

    def __init__(self, committed: dict[TopicPartition, int]) -> None:
        self.committed_at = committed
        self.assigned: list[TopicPartition] = []
        self.seeks: dict[TopicPartition, int] = {}
        self.to_beginning: list[list[TopicPartition]] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = sorted(tps)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_at.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.append(sorted(tps))


def tiers(consumer: FakeConsumer, partitions: set[int], tier_topics: list[str]) -> Any:
    tc = TierConsumer.__new__(TierConsumer)  # only the assignment's state: no pipeline
    tc.tier_of = {t: float(i + 1) for i, t in enumerate(tier_topics)}
    tc.partitions = partitions
    tc.waiting, tc.committable, tc._committed = {}, {}, {}
    tc._reassign = asyncio.Event()
    tc._consumer = consumer
    return tc


async def test_fresh_partitions_start_at_the_beginning_in_one_seek() -> None:
    topics = [f"retry.{d}" for d in ("1s", "5s", "30s")]
    done = {TopicPartition("retry.5s", 1): 42, TopicPartition("retry.30s", 0): 7}
    consumer = FakeConsumer(done)
    tc = tiers(consumer, {0, 1}, topics)
    await tc._apply_assignment()
    every = sorted(TopicPartition(t, p) for t in topics for p in (0, 1))
    assert consumer.assigned == every
    assert consumer.seeks == done
    assert tc._committed == done
    assert consumer.to_beginning == [sorted(set(every) - set(done))]


async def test_all_partitions_committed_needs_no_seek_to_the_beginning() -> None:
    topics = ["retry.1s"]
    done = {TopicPartition("retry.1s", 0): 3, TopicPartition("retry.1s", 2): 9}
    consumer = FakeConsumer(done)
    await tiers(consumer, {0, 2}, topics)._apply_assignment()
    assert consumer.seeks == done
    assert consumer.to_beginning == []
