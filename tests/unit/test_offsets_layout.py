"""The offsets reader reads the cluster's topic layout once a minute, not every sample."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import Settings
from streams.kafka.offsets import LAYOUT_TTL_S, OffsetReader


class FakeAdmin:
    def __init__(self) -> None:
        self.described = 0
        self.partitions = 2

    async def describe_topics(self, topics: Any) -> list[dict[str, Any]]:
        assert topics is None  # all topics: naming one could auto-create it
        self.described += 1
        return [
            {
                "topic": "t",
                "error_code": 0,
                "partitions": [{"partition": p} for p in range(self.partitions)],
            },
            {"topic": "broken", "error_code": 5, "partitions": [{"partition": 0}]},
        ]


class FakeConsumer:
    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 10)


def test_the_layout_is_reused_until_it_is_a_minute_old() -> None:
    now = [0.0]
    reader = OffsetReader(Settings.from_env({}), clock=lambda: now[0])
    admin = FakeAdmin()
    reader._admin, reader._consumer = admin, FakeConsumer()
    try:
        assert [(o.topic, o.partition) for o in reader.read(["t", "broken", "missing"])] == [
            ("t", 0),
            ("t", 1),
        ]
        admin.partitions = 3  # an operator added a partition
        now[0] += LAYOUT_TTL_S - 1
        assert len(reader.read(["t"])) == 2
        assert admin.described == 1
        now[0] += 1
        assert len(reader.read(["t"])) == 3
        assert admin.described == 2
    finally:
        reader._admin = reader._consumer = None
        reader.close()


class FailingConsumer(FakeConsumer):
    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        raise RuntimeError("unknown topic or partition")


def test_a_failed_read_forgets_the_layout() -> None:
    from streams.errors import KafkaUnavailableError

    reader = OffsetReader(Settings.from_env({}), clock=lambda: 0.0)
    admin = FakeAdmin()
    reader._admin, reader._consumer = admin, FailingConsumer()
    try:
        with pytest.raises(KafkaUnavailableError):
            reader.read(["t"])
        # The clients were dropped with the layout; the next read starts both anew.
        reader._admin, reader._consumer = admin, FakeConsumer()
        assert len(reader.read(["t"])) == 2
        assert admin.described == 2
    finally:
        reader._admin = reader._consumer = None
        reader.close()
