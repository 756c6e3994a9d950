"""A parked record always fits ``events.invalid``, and keeps the original byte for byte.

Fixed vectors for :func:`streams.records.park`. Before issue 17 a parked event
was JSON holding the raw bytes in base64: an event of about 786 KB or more
made a record over the 1 MiB limit, Kafka refused it, and the worker stopped,
again at every restart.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from streams.config import Settings
from streams.kafka.topics import TopicNames, parked_record_bytes, topic_specs
from streams.records import (
    H_FIELD,
    H_KEY_SHA256,
    H_KEY_SIZE,
    H_ORIGINAL_HEADERS,
    H_PARKED_AT,
    H_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_TRUNCATED,
    H_VALUE_SHA256,
    H_VALUE_SIZE,
    MAX_PARKED_KEY,
    MAX_REASON_CHARS,
    MIN_PARK_LIMIT,
    ParkedRecord,
    park,
    record_size,
)

SETTINGS = Settings.from_env({})
LIMIT = parked_record_bytes(SETTINGS)


def parked(value: bytes | None, **kw: object) -> ParkedRecord:
    args: dict[str, object] = {
        "key": b"t_42",
        "headers": (),
        "reason": "event is not JSON",
        "topic": "events",
        "partition": 3,
        "offset": 1234,
        "parked_at": 1_700_000_000.25,
        "limit": LIMIT,
    }
    return park(value, **(args | kw))  # type: ignore[arg-type]


def test_a_small_record_is_copied_whole_with_its_reason_and_source_in_headers() -> None:
    value = b"\xff\xfe{not json"
    record = parked(
        value,
        field="data.name",
        headers=[("traceparent", b"00-ab"), ("streams.reason", b"forged")],
    )
    assert (record.key, record.value) == (b"t_42", value)
    assert record.headers == (
        (H_REASON, b"event is not JSON"),
        (H_FIELD, b"data.name"),
        (H_SOURCE_TOPIC, b"events"),
        (H_SOURCE_PARTITION, b"3"),
        (H_SOURCE_OFFSET, b"1234"),
        (H_PARKED_AT, b"1700000000.250"),
        (H_VALUE_SIZE, b"11"),
        (H_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()),
        # The original's headers follow, renamed: a forged streams.* header stays the original's.
        ("original.traceparent", b"00-ab"),
        ("original.streams.reason", b"forged"),
    )
    assert record.reason == "event is not JSON"
    assert record.field == "data.name"
    assert record.source == ("events", 3, 1234)
    assert record.truncated == frozenset()
    assert record.original_headers == [("traceparent", b"00-ab"), ("streams.reason", b"forged")]


def test_a_tombstone_is_parked_as_one() -> None:
    record = parked(None, key=None)
    assert (record.key, record.value) == (None, None)
    assert record.header(H_VALUE_SIZE) == "null"
    assert record.header(H_VALUE_SHA256) is None


@pytest.mark.parametrize("size", [700_000, 800_000, 1_000_000, 1_048_576 - 1])
def test_records_up_to_the_largest_the_pipeline_reads_are_parked_whole_and_fit(
    size: int,
) -> None:
    value = orjson.dumps({"id": "e1", "data": {"blob": "x" * (size - 30)}})[:size]
    value = value.ljust(size, b" ")
    assert len(value) == size
    # The old format: base64 inside JSON, a third larger, over the 1 MiB limit from ~786 KB.
    old = len(base64.b64encode(value)) + 200
    assert (old > SETTINGS.max_record_bytes) == (size >= 800_000)
    record = parked(value, reason="event is 800000 bytes, over the limit of 262144")
    assert record.value == value
    assert record.truncated == frozenset()
    assert record.size <= LIMIT


def test_the_topics_hold_what_is_parked_and_the_limit_covers_any_record_read() -> None:
    names = TopicNames(SETTINGS.topic_prefix)
    limits = {s.name: s.config.get("max.message.bytes") for s in topic_specs(SETTINGS)}
    assert limits[names.events_invalid] == str(LIMIT)
    assert limits[names.dlq] == str(LIMIT)
    assert limits[names.events] == limits[names.deliveries] == str(SETTINGS.max_record_bytes)
    # A record as large as events holds, with a long key and many headers, parks whole.
    headers = [(f"h{n}", b"v" * 100) for n in range(100)]
    key = b"k" * 200
    room = SETTINGS.max_record_bytes - record_size(key, b"", headers)
    record = parked(b"x" * room, key=key, headers=headers, reason="r" * 5000)
    assert record.truncated == frozenset()
    assert record.size <= LIMIT


def test_a_value_larger_than_the_limit_is_cut_with_its_size_and_hash() -> None:
    value = bytes(range(256)) * 10_000  # 2.56 MB: e.g. a compressed batch of another producer
    record = parked(value, headers=[("a", b"b")])
    assert record.truncated == frozenset({"headers", "value"})
    assert record.header(H_TRUNCATED) == "headers,value"
    assert record.size <= LIMIT
    assert record.value is not None
    assert value.startswith(record.value)
    assert len(record.value) > LIMIT - 2048  # as much as fits
    assert record.header(H_VALUE_SIZE) == str(len(value))
    assert record.header(H_VALUE_SHA256) == hashlib.sha256(value).hexdigest()
    assert record.header(H_ORIGINAL_HEADERS) == "1"
    assert record.original_headers == []
    assert record.source == ("events", 3, 1234)  # where the whole record still is


def test_large_headers_go_first_and_a_large_key_is_cut() -> None:
    headers = [("big", b"h" * LIMIT)]
    only_headers = parked(b"small", headers=headers)
    assert only_headers.truncated == frozenset({"headers"})
    assert only_headers.value == b"small"

    key = b"k" * LIMIT
    cut = parked(b"small", key=key)
    assert cut.truncated == frozenset({"key"})
    assert cut.key == key[:MAX_PARKED_KEY]
    assert cut.header(H_KEY_SIZE) == str(len(key))
    assert cut.header(H_KEY_SHA256) == hashlib.sha256(key).hexdigest()
    assert cut.size <= LIMIT


@pytest.mark.parametrize("limit", [MIN_PARK_LIMIT, 100_000, LIMIT])
@pytest.mark.parametrize(
    ("key_size", "value_size", "header_size"),
    [(0, 0, 0), (10, 10**6, 0), (10**6, 10**6, 10**6), (0, 3 * 10**6, 10), (MAX_PARKED_KEY, 0, 0)],
)
def test_whatever_the_sizes_a_parked_record_fits(
    limit: int, key_size: int, value_size: int, header_size: int
) -> None:
    record = parked(
        b"v" * value_size,
        key=b"k" * key_size,
        headers=[("h", b"x" * header_size)],
        reason="\x00" * 10_000,
        field="f" * 10_000,
        limit=limit,
    )
    assert record.size <= limit


def test_reasons_and_fields_are_bounded_and_header_names_made_printable() -> None:
    record = parked(b"x", reason="r" * 10_000, headers=[("\udcff\udcfeid", b"1")])
    assert len(record.reason) == MAX_REASON_CHARS
    assert record.reason.endswith("\u2026")
    assert record.original_headers == [("\\xff\\xfeid", b"1")]


def test_a_limit_too_small_for_the_headers_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        parked(b"x", limit=MIN_PARK_LIMIT - 1)
