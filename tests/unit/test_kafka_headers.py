"""Fetched records whose header names are not UTF-8 reach the application (issue 17).

The batches are built with aiokafka's own Python writer, as a broker would hand
them to the fetcher; without :func:`streams.kafka.headers.install`, aiokafka's
reader raises ``UnicodeDecodeError`` on them, which stopped every consumer of
the worker for good (the same fetch is read again, and raises again).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBase, _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords

from streams.kafka import headers as kafka_headers
from streams.records import park

TP = TopicPartition("events", 0)


class RawName(str):
    """A header name whose bytes (``encode``, which aiokafka's writer calls) are not UTF-8."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe" + str.encode(self)


def batch(base: int, names: list[str | None], *, codec: int = 0) -> bytes:
    """One v2 batch with a record per entry of ``names`` (its header's name, or no header)."""
    builder = _DefaultRecordBatchBuilderPy(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=2**20,
    )
    for n, name in enumerate(names):
        headers = [] if name is None else [(name, b"v")]
        builder.append(
            n, timestamp=1000 + n, key=b"k", value=f"r{base + n}".encode(), headers=headers
        )
    data = builder.build()
    struct.pack_into(">q", data, 0, base)  # the broker's base offset (outside the CRC)
    return bytes(data)


def read(data: bytes, position: int = 0) -> list[Any]:
    """What aiokafka's fetcher hands out of one fetched partition, from ``position``."""
    records = fetcher.PartitionRecords(
        TP,
        fetcher.MemoryRecords(data),
        None,
        position,
        None,
        None,
        True,  # check CRCs, as the consumer does by default
        fetcher.READ_UNCOMMITTED,
    )
    return list(records)


@pytest.fixture
def escaping() -> Any:
    kafka_headers.install()
    kafka_headers.install()  # idempotent
    return fetcher


def test_without_the_fix_a_non_utf8_header_name_stops_the_read() -> None:
    # aiokafka's own reader (it keeps no bytes to read again): what every consumer did.
    data = batch(0, ["ok", RawName("bad")])
    records = fetcher.PartitionRecords(
        TP, MemoryRecords(data), None, 0, None, None, True, fetcher.READ_UNCOMMITTED
    )
    with pytest.raises(UnicodeDecodeError):
        list(records)


def test_every_record_is_handed_out_once_in_order_with_the_name_escaped(escaping: Any) -> None:
    data = batch(0, ["a", None]) + batch(2, ["b", RawName("x"), None]) + batch(5, ["c"])
    got = read(data)
    assert [r.offset for r in got] == [0, 1, 2, 3, 4, 5]
    assert [r.value for r in got] == [f"r{n}".encode() for n in range(6)]
    name = got[3].headers[0][0]
    assert name.encode("utf-8", "surrogateescape") == b"\xff\xfex"  # its bytes, given back
    assert tuple(got[2].headers) == (("b", b"v"),)


def test_reading_from_a_later_position_hands_out_nothing_twice(escaping: Any) -> None:
    # A fetch at 2 that starts with an earlier batch (as compaction and retries allow).
    data = batch(0, ["a", "b"]) + batch(2, [None, RawName("x"), "c"])
    assert [r.offset for r in read(data, position=2)] == [2, 3, 4]


@pytest.mark.parametrize("codec", [DefaultRecordBase.CODEC_GZIP])
def test_a_compressed_batch_is_read_again_too(escaping: Any, codec: int) -> None:
    data = batch(0, ["a" * 100, RawName("x" * 100), "c" * 100], codec=codec)
    assert [r.value for r in read(data)] == [b"r0", b"r1", b"r2"]


def test_a_fetch_that_ends_inside_a_batch_stops_before_it(escaping: Any) -> None:
    whole = batch(0, [RawName("x")]) + batch(1, ["y"])
    assert [r.offset for r in read(whole[:-5])] == [0]


def test_an_escaped_name_is_parked_printable() -> None:
    parked = park(
        b"{}",
        key=b"k",
        headers=[("\udcff\udcfex", b"v")],
        reason="r",
        topic="events",
        partition=0,
        offset=3,
        parked_at=0.0,
        limit=10**6,
    )
    assert parked.original_headers == [("\\xff\\xfex", b"v")]
