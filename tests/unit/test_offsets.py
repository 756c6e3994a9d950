"""Lag and depth from partition offsets: fixed vectors."""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.kafka.offsets import PartitionOffsets, rate, stages, sum_by_topic


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


def test_assemble_takes_the_furthest_commit_of_the_worker_groups() -> None:
    from streams.kafka.offsets import assemble

    parts = [("x.events", 0), ("x.events", 1), ("x.retry", 0)]
    lows = {("x.events", 0): 0, ("x.events", 1): 4, ("x.retry", 0): 0}
    highs = {("x.events", 0): 10, ("x.events", 1): 10, ("x.retry", 0): 10}
    commits = [
        {("x.events", 0): 7, ("x.events", 1): -1, ("x.retry", 0): 2},  # -1: Kafka's "none"
        {("x.retry", 0): 9},
    ]
    got = assemble(parts, lows, highs, commits)
    assert got == [
        PartitionOffsets("x.events", 0, 0, 10, 7),
        PartitionOffsets("x.events", 1, 4, 10, None),
        PartitionOffsets("x.retry", 0, 0, 10, 9),
    ]
    assert [p.lag for p in got] == [3, 6, 1]


def test_assemble_reads_a_missing_or_negative_watermark_as_zero() -> None:
    from streams.kafka.offsets import assemble

    got = assemble([("t", 0)], {("t", 0): -1}, {}, [])
    assert got == [PartitionOffsets("t", 0, 0, 0, None)]
