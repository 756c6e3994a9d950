"""Lag and depth from partition offsets: fixed vectors."""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.offsets import PartitionOffsets, rate, stages, sum_by_topic


@pytest.mark.parametrize(
    ("low", "high", "committed", "lag", "messages"),
    [
        (0, 0, None, 0, 0),  # empty, never committed
        (0, 10, None, 10, 10),  # never committed: everything retained is still to read
        (5, 10, None, 5, 5),  # ... which is only what retention kept
        (0, 10, 10, 0, 10),  # caught up
        (0, 10, 7, 3, 10),
        (8, 10, 3, 2, 2),  # committed before the low watermark: read from the low one
        (0, 10, 12, 0, 10),  # never negative
    ],
)
def test_lag_and_messages_of_one_partition(
    low: int, high: int, committed: int | None, lag: int, messages: int
) -> None:
    p = PartitionOffsets("t", 0, low=low, high=high, committed=committed)
    assert (p.lag, p.messages) == (lag, messages)


def test_sums_by_topic() -> None:
    rows = sum_by_topic(
        [
            PartitionOffsets("a", 0, 0, 10, 4),
            PartitionOffsets("a", 1, 2, 5, None),
            PartitionOffsets("b", 0, 0, 7, 7),
        ]
    )
    assert rows == {
        "a": {"high": 15, "lag": 9, "messages": 13, "partitions": 2},
        "b": {"high": 7, "lag": 0, "messages": 7, "partitions": 1},
    }


def test_rate_needs_two_samples_and_time_between_them() -> None:
    assert rate(None, 10, 1.0) is None
    assert rate(10, None, 1.0) is None
    assert rate(10, 20, 0.0) is None
    assert rate(10, 30, 2.0) == 10.0
    assert rate(30, 10, 2.0) == 0.0  # a shrinking end offset (topic recreated) is not negative


def test_stages_are_the_groups_topics_in_pipeline_order() -> None:
    settings = Settings.from_env({"STREAMS_TOPIC_PREFIX": "x.", "STREAMS_RETRY_SCHEDULE": "5s,5m"})
    assert [(s.name, s.topic, s.kind) for s in stages(settings)] == [
        ("events", "x.events", "stage"),
        ("ops", "x.ops", "stage"),
        ("deliveries", "x.deliveries", "stage"),
        ("retry 5s", "x.deliveries.retry.5s", "retry"),
        ("retry 5m", "x.deliveries.retry.5m", "retry"),
    ]


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value

    def result(self, timeout: float | None = None) -> object:
        return self.value


class FakeAdmin:
    """Answers like confluent-kafka's AdminClient for two topics and two groups."""

    def __init__(self) -> None:
        from types import SimpleNamespace as NS

        self.ns = NS
        self.groups_asked: list[str] = []
        self.offset_calls = 0
        meta = {"x.events": NS(error=None, partitions={0: None, 1: None})}
        meta["x.deliveries.retry.5s"] = NS(error=None, partitions={0: None})
        self.meta = NS(topics=meta)
        self.commits = {
            "g": {("x.events", 0): 7, ("x.deliveries.retry.5s", 0): 2},
            "g-retry-tiers": {("x.deliveries.retry.5s", 0): 9},
        }

    def list_topics(self, timeout: float) -> object:
        return self.meta

    def list_offsets(self, specs: dict[object, object], request_timeout: float) -> object:
        self.offset_calls += 1  # the reader asks for the earliest offsets first, then the latest
        return {tp: _Done(self.ns(offset=0 if self.offset_calls == 1 else 10)) for tp in specs}

    def list_consumer_group_offsets(self, request: list[object], request_timeout: float) -> object:
        (req,) = request
        group = req.group_id  # type: ignore[attr-defined]
        self.groups_asked.append(group)
        commits = self.commits[group]
        parts = [
            self.ns(
                topic=tp.topic,
                partition=tp.partition,
                offset=commits.get((tp.topic, tp.partition), -1001),
                error=None,
            )
            for tp in req.topic_partitions  # type: ignore[attr-defined]
        ]
        return {group: _Done(self.ns(topic_partitions=parts))}


def test_the_reader_takes_the_furthest_commit_of_the_worker_groups() -> None:
    from streams.offsets import OffsetReader, consumer_groups

    settings = Settings.from_env({"STREAMS_APP_ID": "g", "STREAMS_TOPIC_PREFIX": "x."})
    assert consumer_groups(settings) == ("g", "g-retry-tiers")
    reader = OffsetReader(settings)
    reader.admin = FakeAdmin()
    got = reader.read(["x.events", "x.deliveries.retry.5s", "x.missing"], consumer_groups(settings))
    assert reader.admin.groups_asked == ["g", "g-retry-tiers"]
    assert got == [
        PartitionOffsets("x.events", 0, 0, 10, 7),
        PartitionOffsets("x.events", 1, 0, 10, None),
        PartitionOffsets("x.deliveries.retry.5s", 0, 0, 10, 9),
    ]
    assert [p.lag for p in got] == [3, 10, 1]
