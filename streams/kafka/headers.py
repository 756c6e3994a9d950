"""Reading records whose header names are not UTF-8 (aiokafka's consumers).

Kafka stores a header name as bytes and never checks them. aiokafka's record
readers, the C one and the Python one alike, decode every name as strict
UTF-8, so one record with another name makes ``getmany`` raise
``UnicodeDecodeError``, and the consumer never gets past it: the partition is
fetched again from the same position, and raises again. Faust's fetcher
crashed the worker on it, and so did every restart (issue 17; reproduced in
``tests/integration/test_poison.py``).

:func:`install` makes aiokafka's fetcher read such a fetch a second time, from
its bytes, with aiokafka's Python reader and header names decoded with
``surrogateescape``: the records already handed out are skipped (the fetcher
skips offsets below its position), the rest reach the application, the odd
name as a ``str`` whose ``encode("utf-8", "surrogateescape")`` gives its bytes
back. Fetches without such a name are read exactly as before (the C reader);
the cost there is one small wrapper object per fetched partition.

This relies on aiokafka internals (``PartitionRecords._unpack_records``, the
``MemoryRecords`` name in its fetcher module, the Python batch reader's
``_buffer``), checked against aiokafka 0.14 by ``tests/unit/test_kafka_headers.py``;
:func:`install` refuses, loudly, an aiokafka without them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from streams.errors import ConfigError

log = logging.getLogger(__name__)

#: A record batch starts with its base offset (8 bytes) and its length (4 bytes, the
#: bytes after these 12); the magic byte is at 16.
_BATCH_HEAD = 12
_MAGIC_AT = 16


class _KeepsBytes:
    """aiokafka's reader of one fetched partition's records, keeping the bytes it read."""

    __slots__ = ("_records", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._records = MemoryRecords(data)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        return self._records.next_batch()

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())


class _EscapedSlice(bytearray):
    """Bytes whose ``decode`` keeps bytes that are not UTF-8, as surrogates."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "surrogateescape")


class _EscapingBuffer(bytearray):
    """A batch's bytes whose slices are :class:`_EscapedSlice` (the reader decodes header
    names from slices; keys and values it copies with ``bytes()``, unchanged)."""

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return _EscapedSlice(item) if isinstance(index, slice) else item


class _EscapingBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's Python reader of a v2 batch, reading header names with their bytes escaped."""

    _buffer: bytearray  # the batch's (decompressed) bytes, read by _read_msg

    def __iter__(self) -> Any:
        super().__iter__()  # decompresses into self._buffer
        self._buffer = _EscapingBuffer(self._buffer)
        return self


class _EscapingRecords:
    """The batches of a fetch, read again from ``data``; batches wholly before ``start``
    (already handed out) are left out, so the fetcher's position never moves back."""

    __slots__ = ("_batches", "_next")

    def __init__(self, data: bytes, start: int) -> None:
        self._batches = _batches(data, start)
        self._next = next(self._batches, None)

    def has_next(self) -> bool:
        return self._next is not None

    def next_batch(self) -> Any:
        batch, self._next = self._next, next(self._batches, None)
        return batch


def _batches(data: bytes, start: int) -> Iterator[Any]:
    view = memoryview(data)
    pos = 0
    while pos + _MAGIC_AT < len(data):
        length = int.from_bytes(view[pos + 8 : pos + _BATCH_HEAD], "big", signed=True)
        end = pos + _BATCH_HEAD + length
        if length <= 0 or end > len(data):
            return  # a fetch may end in part of a batch: the next fetch reads it whole
        magic = view[pos + _MAGIC_AT]
        chunk = view[pos:end]
        batch = _EscapingBatch(chunk) if magic >= 2 else LegacyRecordBatch(chunk, magic)
        if batch.next_offset > start:
            yield batch
        pos = end


def _unpack_escaping(unpack: Any) -> Any:
    def _unpack_records(self: Any) -> Iterator[Any]:
        try:
            yield from unpack(self)
        except UnicodeDecodeError:
            data = getattr(self._records, "data", None)
            if data is None:
                raise
            log.warning(
                "a record of %s at offset %d or after has a header name that is not UTF-8; "
                "its fetch is read again with such names escaped",
                self._tp,
                self.next_fetch_offset,
            )
            self._records = _EscapingRecords(data, self.next_fetch_offset)
            yield from unpack(self)

    _unpack_records.streams_escaping = True  # type: ignore[attr-defined]
    return _unpack_records


def install() -> None:
    """Make every aiokafka consumer of this process survive header names that are not UTF-8.

    Idempotent. Raises :class:`~streams.errors.ConfigError` when the installed
    aiokafka lacks the internals this relies on (a version this was not tested with).
    """
    records: Any = getattr(fetcher, "PartitionRecords", None)
    unpack = getattr(records, "_unpack_records", None)
    if records is None or unpack is None or not hasattr(fetcher, "MemoryRecords"):
        raise ConfigError(
            "this aiokafka version reads fetches differently from 0.14, which the worker was "
            "tested with: install aiokafka 0.14 (streams.kafka.headers cannot apply)"
        )
    if getattr(unpack, "streams_escaping", False):
        return
    fetcher.MemoryRecords = _KeepsBytes
    records._unpack_records = _unpack_escaping(unpack)
