"""The delivery log on disk: an indexed SQLite store of the ``attempts`` topic.

The ``attempts`` topic is the source of truth; this store is a materialized
view of it that a log node (:mod:`streams.log.indexer`) keeps up to date and
the log API queries. It can be deleted at any time and rebuilt from the topic.

Why SQLite (standard library, WAL mode): one writer (the indexer's thread)
and any number of readers (the API's threads) work at once without blocking
each other; every filter the API offers is a B-tree index; a batch of
attempts and the position it reaches in the topic commit in one transaction,
so a restart resumes exactly where the last commit stopped, without gaps or
double rows. Measured in docs/benchmarks.md ("The delivery-log store").

Tables:

- ``deliveries``: one summary row per delivery, numbered ``seq`` in the order
  stored (so new rows append): its latest attempt *by time* (a redelivery's 200
  after three failures reads ``delivered``), the number of attempts, and
  ``first_at``, the time of its first attempt. ``first_at`` never changes once
  the delivery is stored, so listing newest first by ``(first_at, dkey)`` gives
  cursors that neither skip nor repeat a delivery while new attempts arrive.
  ``dkey`` is a hash of the delivery id: how a delivery is found by id, and the
  order of equal first times, the same in a rebuilt store.
- ``dkeys`` and ``dkeys_delta``: the delivery id index, in two levels. A hash
  is random, so a B-tree of every delivery's key took a page write per new
  delivery once the store held millions (a batch's keys fall on as many
  pages): most of what made a large store slower to write. New keys, and the
  keys of pruned deliveries (``live = 0``), go to the small ``dkeys_delta``;
  once it outgrows :func:`merge_after` of the large level, it is merged into
  ``dkeys`` in key order, one key range per batch (:meth:`LogWriter._merge_keys`),
  each of that level's pages written once for many keys. A small store
  (``DIRECT_ROWS``) keeps its keys in the large level directly. A lookup reads
  both levels by key; a pruned delivery's key finds no row.
- ``attempts``: one row per attempt, clustered by delivery (``seq``) and keyed
  by its position in the topic (``partition << 40 | offset``): a delivery's
  history is one range read, and no record is stored twice.
- ``names``: tenants, subscriptions, event types and topics, stored once; the
  other tables and their indexes hold small integer ids.
- ``buckets``: counts per minute (kept a day) and per hour (kept for the
  retention), for everything, per tenant and per subscription, with a
  latency histogram and the newest error. Statistics over 5 minutes to 7 days
  read at most 1,440 of these rows instead of millions of attempts. Minute
  buckets are written with every batch; an hour's buckets once, from its
  minutes, when the hour closes (``meta`` keeps where the open hours start,
  and readers add up their minutes), which halves the buckets a batch writes.
  ``totals``: attempts and deliveries stored, per tenant and in all.
- ``saved_filter``: the writer's filter of stored delivery keys
  (:mod:`streams.log.keyfilter`), saved when it closes and taken out by the next
  writer as it opens, so a clean restart does not build it again.
- ``positions``: the next offset to read, per partition. ``meta``: the
  schema version and the topic the store follows. ``skipped``: the last
  undecodable records (position and reason); they stay in the topic.

Every query reads through an index chosen for its filters (``INDEXED BY``,
see :func:`plan_index`); ``tests/unit/test_log_plans.py`` checks each
combination with ``EXPLAIN QUERY PLAN``. Memory is bounded in bytes: each
connection's page cache (``WRITER_CACHE_KIB``, ``READER_CACHE_KIB``; the OS keeps
the rest of the file cached) and the indexer's batch.
"""

# S608: every SQL text here is put together from this module's constants (columns,
# index names); every value is a bound parameter.
# ruff: noqa: S608
from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import logging
import math
import operator
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.errors import InvalidRequestError, StreamsError, UnavailableError
from streams.log.keyfilter import KeyFilter, filter_bits
from streams.records import MAX_ERROR_READ_CHARS, MAX_ID_CHARS, Attempt

log = logging.getLogger(__name__)

#: Bumped when the schema changes; an older store is refused with the fix (delete, rebuild),
#: except a version-2 store, which is upgraded in place (:func:`open_schema`).
SCHEMA_VERSION = 4
#: The delta level of the delivery id index is merged into the large one when it holds
#: ``max(MERGE_MIN_ROWS, sqrt(large rows * MERGE_FACTOR))`` keys (:func:`merge_after`).
MERGE_MIN_ROWS = 50_000
MERGE_FACTOR = 20_000
#: Keys of the large level one merge covers, about (:func:`merge_ranges`): a merge
#: writes its share of the large level's pages (~25 MB of WAL), whatever the size.
MERGE_RANGE_ROWS = 1_000_000
#: Below this many keys in the large level (and with nothing in the delta), new keys and
#: pruned ones go to the large level directly: a small B-tree stays in the writer's
#: cache, and a delta would only add a second write per key (a new store measured 12%
#: more CPU per attempt through the indexer with every key going through the delta).
DIRECT_ROWS = 2_000_000
#: Keys of the large id level read into a key filter being built again, per batch
#: (about a second of one core on a slow day; the first build, when the writer opens,
#: reads them all). See :mod:`streams.log.keyfilter`.
FILTER_BUILD_ROWS = 500_000
#: An attempt's key: its partition in the high bits, its offset in the low 40 (10^12 records).
OFFSET_BITS = 40
#: The largest response snippet stored, in UTF-8 bytes (the engine keeps 4,096 characters).
SNIPPET_BYTES = 4096
#: Page cache of the writer and of each reader's connection, KiB: SQLite's bound on the
#: memory a connection holds (a reader per API thread).
WRITER_CACHE_KIB = 256 * 1024
READER_CACHE_KIB = 8 * 1024
#: Bytes of the file the writer and each reader read through a memory map instead of
#: read() calls (0: none; this SQLite build maps at most 2 GiB). Not used: at 6.6 million
#: attempts the writer's reads of the database file were ~600 a batch (its cache holds
#: what a batch touches); its other reads are the checkpoint's, of the WAL, which SQLite
#: never maps. A 2 GiB map measured no CPU gain (docs/benchmarks.md, issue 19).
WRITER_MMAP_BYTES = 0
READER_MMAP_BYTES = 0
#: WAL pages after which a commit copies the WAL into the database (a checkpoint): 256
#: MiB. With millions of attempts stored a batch of 10,000 wrote 15,000-20,000 pages
#: (schema 2), so at 32 MiB every batch paid a checkpoint, reading each of its pages back
#: from the WAL, writing it again and syncing; at 256 MiB one checkpoint every two or
#: three batches copies a page they all dirtied (index ends, buckets) once. The WAL file
#: stays at most this plus one batch's pages (a batch's rows, and one key range of the id
#: index when it merges: ~25 MB): it is cut back to WAL_SIZE_LIMIT_BYTES after a
#: checkpoint. The upgrade from schema 2 writes the whole id index in one transaction
#: (~250 MB at 10 million deliveries), once.
WAL_AUTOCHECKPOINT_PAGES = 65_536
WAL_SIZE_LIMIT_BYTES = 384 * 1024 * 1024
#: Undecodable records remembered (position and reason) for the operator.
KEPT_SKIPPED = 1000
#: Names (tenants, subscriptions, event types) whose ids each writer or reader remembers.
NAMES_CACHED = 100_000
#: Seconds a reader waits for the writer's lock before the query fails.
BUSY_TIMEOUT_MS = 5000

#: Bucket widths: a minute (windows up to a day) and an hour (7 days, charts).
MINUTE, HOUR = 60, 3600
#: The ``meta`` key of the first hour not closed: hours before it have their hour
#: buckets; from it on, readers add up the minutes (:meth:`LogWriter._add_buckets`).
HOURS_FROM = "hours_from"
#: How long minute buckets are kept: the longest window they serve plus one bucket.
MINUTE_BUCKETS_KEPT_S = 86_400 + HOUR
#: The statistics windows: name -> (seconds, bucket width).
WINDOWS: tuple[tuple[str, int, int], ...] = (
    ("5m", 300, MINUTE),
    ("1h", 3600, MINUTE),
    ("24h", 86_400, MINUTE),
    ("7d", 604_800, HOUR),
)
OUTCOMES = ("delivered", "retry", "give_up")
#: ``status`` filter words and the outcome each selects (anything else: an HTTP status).
STATUS_WORDS = {"delivered": "delivered", "failed": "give_up", "retrying": "retry"}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")

#: Latency histogram: bin 0 is below 0.5 ms; bin i >= 1 holds [0.5 * 2^((i-1)/8), 0.5 *
#: 2^(i/8)) ms, so a percentile read from it is within 4.5% of the exact one; the last bin
#: (from 65.5 s) is open.
HIST_BASE_MS = 0.5
HIST_PER_OCTAVE = 8
HIST_BINS = 1 + 17 * HIST_PER_OCTAVE


class StoreFault(StreamsError):
    """The store cannot be used (full disk, corrupt file, another schema): the message
    names the file and the fix. The log routes answer 503 with it; delivery goes on."""


# -- pure helpers -------------------------------------------------------------------


def position(partition: int, offset: int) -> int:
    """The key of the record at ``partition``/``offset`` of the attempts topic."""
    if not 0 <= offset < 1 << OFFSET_BITS or not 0 <= partition < 1 << (62 - OFFSET_BITS):
        raise ValueError(f"position out of range: partition {partition}, offset {offset}")
    return partition << OFFSET_BITS | offset


def split_position(pos: int) -> tuple[int, int]:
    return pos >> OFFSET_BITS, pos & ((1 << OFFSET_BITS) - 1)


KEY_MASK = (1 << 62) - 1


def delivery_key(delivery_id: str) -> int:
    """62 bits of a BLAKE2b of a delivery id: how the store finds a delivery (two ids
    may share one; the row holds the id), and the order of deliveries whose first
    attempts have the same time, the same in a rebuilt store."""
    digest = hashlib.blake2b(delivery_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


KEY_SPACE = 1 << 62  # delivery keys are 62 bits


def merge_ranges(large_rows: int) -> int:
    """Key ranges the large level is merged in, one per batch, each about
    MERGE_RANGE_ROWS of its keys (the keys are uniform hashes)."""
    return max(1, -(-max(0, large_rows) // MERGE_RANGE_ROWS))


def merge_after(large_rows: int) -> int:
    """Keys the delta level of the delivery id index holds before it is merged.

    Each batch writes the delta's pages its new keys fall on (up to all of them, so a
    larger delta costs more per batch); each cycle of merges writes every page of the
    large level once (so a smaller delta merges more often). The square root of the
    large level's size balances the two: at 10 million deliveries, 447,213 keys.
    """
    return max(MERGE_MIN_ROWS, math.isqrt(max(0, large_rows) * MERGE_FACTOR))


def bounded_snippet(text: str, limit: int = SNIPPET_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    return raw[:limit].decode("utf-8", "ignore")


def latency_bin(ms: float) -> int:
    if not ms >= HIST_BASE_MS:  # NaN and negatives too
        return 0
    return min(HIST_BINS - 1, 1 + int(HIST_PER_OCTAVE * math.log2(ms / HIST_BASE_MS)))


def bin_value(index: int) -> float:
    """The value a percentile in bin ``index`` reports: the bin's geometric middle (ms)."""
    if index <= 0:
        return HIST_BASE_MS / 2
    return round(HIST_BASE_MS * 2 ** ((index - 0.5) / HIST_PER_OCTAVE), 3)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of a latency histogram; None when empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bin_value(index)
    raise AssertionError("unreachable: the rank is at most the total")


def encode_hist(hist: dict[int, int]) -> bytes:
    # [[bin, count], ...] in the order the bins were first seen: nothing reads them in
    # order, and sorting an hour's 60-odd bins took 13 of the 21 us this costs (the
    # indexer encodes a few thousand buckets per batch).
    return orjson.dumps(list(hist.items()))


def decode_hist(raw: bytes | None) -> dict[int, int]:
    return {int(k): int(v) for k, v in orjson.loads(raw)} if raw else {}


def status_class(status: int | None) -> str:
    """``2xx`` .. ``5xx``, or ``error`` (no status, or one outside 200-599)."""
    if status is None or not 200 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: An attempt decoded for the store: the Attempt's fields, in declaration order.
Row = tuple[Any, ...]
_TEXT = ("delivery_id", "event_id", "event_type", "tenant_id", "subscription_id", "outcome")
_OPTIONAL_TEXT = ("error", "replay_id")
#: Keys of the summary and the statistics: never empty ("" is the key of "everything").
_NON_EMPTY = ("delivery_id", "tenant_id", "subscription_id", "outcome")
#: Ids the pipeline bounds in every record it writes (:data:`~streams.records.MAX_ID_CHARS`):
#: a longer one was not written by it, and is refused rather than kept.
_BOUNDED = ("delivery_id", "event_id", "event_type", "tenant_id", "subscription_id", "replay_id")
#: Kafka's longest topic name.
MAX_TOPIC_CHARS = 249


def attempt_row(raw: bytes | None) -> tuple[Row | None, str]:
    """The attempt in ``raw`` as a row, or None and why it cannot be stored.

    Stricter than :meth:`Attempt.from_bytes`: every field must have the type the
    store keeps, ids are at most ``MAX_ID_CHARS`` (as the pipeline writes them), the
    snippet is cut to ``SNIPPET_BYTES`` and the error to ``MAX_ERROR_READ_CHARS``, and
    an unknown outcome is refused, so no record the topic can hold stops the indexer
    or grows a row without bound.
    """
    if raw is None or raw == b"":
        return None, "empty record (no value)"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON ({exc})"
    if type(obj) is not dict:
        return None, f"expected a JSON object, got {type(obj).__name__}"
    try:  # every field, as the pipeline writes each attempt: one call
        (
            delivery_id,
            event_id,
            event_type,
            tenant_id,
            sub_id,
            outcome,
            number,
            at,
            duration,
            status,
            snippet,
            error,
            replay_id,
            source_topic,
            source_partition,
            source_offset,
            sent,
        ) = _ALL_FIELDS(obj)
    except KeyError:  # a field left out (an older writer): its default, or None
        get: Callable[..., Any] = obj.get
        delivery_id, event_id = get("delivery_id"), get("event_id")
        event_type, tenant_id = get("event_type"), get("tenant_id")
        sub_id, outcome = get("subscription_id"), get("outcome")
        number, at, duration = get("attempt"), get("at"), get("duration_ms")
        status, snippet = get("status"), get("response_snippet", "")
        error, replay_id = get("error"), get("replay_id")
        source_topic = get("source_topic", "")
        source_partition, source_offset = get("source_partition", -1), get("source_offset", -1)
        sent = get("sent", True)
    # The common case in one expression (orjson gives exact types; a str is valid UTF-8);
    # anything else goes through the checks that say what is wrong.
    if not (
        type(delivery_id) is str
        and type(event_id) is str
        and type(event_type) is str
        and type(tenant_id) is str
        and type(sub_id) is str
        and 0 < len(delivery_id) <= MAX_ID_CHARS
        and 0 < len(tenant_id) <= MAX_ID_CHARS
        and 0 < len(sub_id) <= MAX_ID_CHARS
        and len(event_id) <= MAX_ID_CHARS
        and len(event_type) <= MAX_ID_CHARS
        and (replay_id is None or len(replay_id) <= MAX_ID_CHARS)
        and len(source_topic) <= MAX_TOPIC_CHARS
        and outcome in _OUTCOME_SET
        and type(number) is int
        and 0 <= number < 1 << 31
        and type(at) in (float, int)
        and type(duration) in (float, int)
        and (status is None or (type(status) is int and 0 <= status < 1000))
        and type(snippet) is str
        and (error is None or type(error) is str)
        and (replay_id is None or type(replay_id) is str)
        and type(source_topic) is str
        and type(source_partition) is int
        and type(source_offset) is int
        and -1 <= source_partition < 1 << 31
        and -1 <= source_offset < 1 << 62
        and type(sent) is bool
        and math.isfinite(at)
        and math.isfinite(duration)
    ):
        return None, _why_not(obj)
    if len(snippet) > SNIPPET_BYTES // 4:  # 4 bytes a character at most: cut only if needed
        snippet = bounded_snippet(snippet)
    if error is not None and len(error) > MAX_ERROR_READ_CHARS:
        error = error[:MAX_ERROR_READ_CHARS]  # as a delivery's last_error is read back
    return (
        delivery_id,
        event_id,
        event_type,
        tenant_id,
        sub_id,
        number,
        float(at),
        float(duration),
        outcome,
        status,
        snippet,
        error,
        replay_id,
        source_topic,
        source_partition,
        source_offset,
        sent,
    ), ""


_OUTCOME_SET = frozenset(OUTCOMES)
#: The fields :func:`attempt_row` reads, in one C call (17 ``dict.get`` calls were a
#: tenth of its time); a record without one of them takes the ``get`` path.
_ALL_FIELDS = operator.itemgetter(
    "delivery_id",
    "event_id",
    "event_type",
    "tenant_id",
    "subscription_id",
    "outcome",
    "attempt",
    "at",
    "duration_ms",
    "status",
    "response_snippet",
    "error",
    "replay_id",
    "source_topic",
    "source_partition",
    "source_offset",
    "sent",
)


def _why_not(obj: dict[str, Any]) -> str:
    """What makes ``obj`` an attempt the store cannot keep (the first problem)."""
    for name in _TEXT:
        value = obj.get(name)
        if not isinstance(value, str) or (not value and name in _NON_EMPTY):
            return f"`{name}` must be a string" + (" (not empty)" if name in _NON_EMPTY else "")
    for name in _OPTIONAL_TEXT:
        if not isinstance(obj.get(name), (str, type(None))):
            return f"`{name}` must be a string or null"
    for name in _BOUNDED:
        value = obj.get(name)
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            return f"`{name}` is longer than {MAX_ID_CHARS} characters"
    if obj["outcome"] not in OUTCOMES:
        return f"`outcome` must be one of {', '.join(OUTCOMES)}"
    if not _is_int(obj.get("attempt")) or not 0 <= obj["attempt"] < 1 << 31:
        return "`attempt` must be a whole number"
    for name in ("at", "duration_ms"):
        if not _is_number(obj.get(name)):
            return f"`{name}` must be a number"
    status = obj.get("status")
    if status is not None and (not _is_int(status) or not 0 <= status < 1000):
        return "`status` must be an HTTP status or null"
    if not isinstance(obj.get("response_snippet", ""), str):
        return "`response_snippet` must be a string"
    source_topic = obj.get("source_topic", "")
    source_partition = obj.get("source_partition", -1)
    source_offset = obj.get("source_offset", -1)
    if isinstance(source_topic, str) and len(source_topic) > MAX_TOPIC_CHARS:
        return f"`source_topic` is longer than {MAX_TOPIC_CHARS} characters (Kafka's limit)"
    if not isinstance(source_topic, str) or not (
        _is_int(source_partition) and _is_int(source_offset)
    ):
        return "`source_topic`, `source_partition`, `source_offset`: string, integers"
    if not -1 <= source_partition < 1 << 31 or not -1 <= source_offset < 1 << 62:
        return "`source_partition` or `source_offset` out of range"
    if not isinstance(obj.get("sent", True), bool):
        return "`sent` must be true or false"
    return "a field has a value the store cannot keep"


# Indexes of a Row's fields (the Attempt's declaration order).
(
    R_DELIVERY,
    R_EVENT,
    R_TYPE,
    R_TENANT,
    R_SUB,
    R_ATTEMPT,
    R_AT,
    R_DURATION,
    R_OUTCOME,
    R_STATUS,
    R_SNIPPET,
    R_ERROR,
    R_REPLAY,
    R_SOURCE_TOPIC,
    R_SOURCE_PARTITION,
    R_SOURCE_OFFSET,
    R_SENT,
) = range(17)


# -- queries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """A page of the delivery log: filters (all optional) and its size.

    ``since``/``until`` select deliveries by their first attempt's time, the order
    of the list. ``status`` is a word of :data:`STATUS_WORDS` or an HTTP status.
    """

    tenant_id: str | None = None
    subscription_id: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if (
            self.status is not None
            and self.status not in STATUS_WORDS
            and not (self.status.isdigit() and len(self.status) == 3)
        ):
            raise InvalidRequestError(
                "`status`: delivered, failed, retrying, or an HTTP status such as 503",
                field="status",
            )
        if not 1 <= self.limit <= 1000:
            raise InvalidRequestError("`limit`: a whole number from 1 to 1000", field="limit")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidRequestError("`since` must be before `until`", field="since")

    @property
    def outcome(self) -> str | None:
        return STATUS_WORDS.get(self.status) if self.status is not None else None

    @property
    def http_status(self) -> int | None:
        return int(self.status) if self.status is not None and self.outcome is None else None

    @property
    def failing(self) -> bool:
        """Whether the status filter selects attempts that were not delivered: the
        sparse set the partial ``*_failed`` and ``*_status`` indexes hold."""
        if self.http_status is not None:
            return not 200 <= self.http_status <= 299
        return self.outcome is not None and self.outcome != "delivered"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the delivery (first_at, dkey), newest first."""

    first_at: float
    dkey: int

    def encode(self) -> str:
        raw = orjson.dumps([self.first_at, self.dkey])
        return "c1." + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        problem = "`cursor`: pass back the `next_cursor` of the previous page unchanged"
        if not text.startswith("c1.") or len(text) > 100:
            raise InvalidRequestError(problem, field="cursor")
        body = text[3:]
        try:
            first_at, dkey = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise InvalidRequestError(problem, field="cursor") from None
        if not _is_number(first_at) or not _is_int(dkey) or not 0 <= dkey <= KEY_MASK:
            raise InvalidRequestError(problem, field="cursor")
        return cls(float(first_at), dkey)


def plan_index(q: DeliveryQuery) -> str:
    """The index that serves ``q``: the narrowest scope (subscription, tenant, all),
    then the sparse set of failures when the status asks for them.

    Every index ends with ``(first_at, dkey, event_type)``: the list's order, so a page
    reads its rows in order and stops after ``limit`` of them, and the event type, so
    that filter is checked in the index before a row is read. The other filters are
    checked on the rows read. ``delivered`` (most rows) has no index of its own.
    """
    status = q.http_status is not None
    if q.subscription_id is not None:
        return ("d_sub_status" if status else "d_sub_failed") if q.failing else "d_sub"
    if q.tenant_id is not None:
        if q.failing:
            return "d_tenant_status" if status else "d_tenant_failed"
        return "d_tenant"
    if q.failing:
        return "d_status" if status else "d_failed"
    return "d_time"


@dataclass(frozen=True, slots=True)
class NameIds:
    """The stored ids of a query's names (None: not asked for)."""

    tenant: int | None = None
    subscription: int | None = None
    event_type: int | None = None


def delivery_sql(q: DeliveryQuery, ids: NameIds, cursor: Cursor | None) -> tuple[str, list[Any]]:
    """The SELECT of one page of ``q`` after ``cursor`` (one row more than the page)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("tenant", ids.tenant),
        ("sub", ids.subscription),
        ("event_type", ids.event_type),
        ("status", q.http_status),
        ("outcome", q.outcome),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.failing:
        # SQLite reads through a partial index (failures only) when the query repeats its
        # condition word for word: a failure word or a non-2xx status implies it.
        where.append(_NOT_DELIVERED)
    elif q.http_status is not None:
        where.append("outcome = 'delivered'")  # a 2xx is delivered
    if q.since is not None:
        where.append("first_at >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("first_at < ?")
        args.append(q.until)
    if cursor is not None:
        where.append("(first_at, dkey) < (?, ?)")
        args.extend((cursor.first_at, cursor.dkey))
    sql = (
        f"SELECT {_SUMMARY_COLUMNS} FROM deliveries INDEXED BY {plan_index(q)}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY first_at DESC, dkey DESC LIMIT ?"
    )
    args.append(q.limit + 1)
    return sql, args


_NOT_DELIVERED = "outcome != 'delivered'"
_SUMMARY_COLUMNS = (
    "seq, dkey, delivery_id, event_id, event_type, tenant, sub, first_at, last_at, "
    "last_attempt, last_pos, outcome, status, last_error, attempts"
)
# Positions of the summary columns in a row.
(
    S_SEQ,
    S_DKEY,
    S_DELIVERY,
    S_EVENT,
    S_TYPE,
    S_TENANT,
    S_SUB,
    S_FIRST_AT,
    S_LAST_AT,
    S_LAST_ATTEMPT,
    S_LAST_POS,
    S_OUTCOME,
    S_STATUS,
    S_ERROR,
    S_ATTEMPTS,
) = range(15)


def by_key_sql(n: int) -> str:
    """The summary rows of the deliveries with one of ``n`` keys, through both levels of
    the delivery id index: bind the ``n`` keys once (numbered parameters, so 32,766 at
    most on any SQLite). A delivery found has its key (a pruned delivery's stale entry
    finds no row, even where its ``seq`` was given again); a key shared by two ids finds
    both, and the caller compares ids."""
    marks = ", ".join(f"?{i}" for i in range(1, n + 1))
    return (
        f"SELECT {_SUMMARY_COLUMNS} FROM deliveries WHERE seq IN "
        f"(SELECT seq FROM dkeys WHERE dkey IN ({marks}) "
        f"UNION ALL SELECT seq FROM dkeys_delta WHERE dkey IN ({marks}) AND live) "
        f"AND dkey IN ({marks})"
    )


def summary_view(row: Sequence[Any], names: Callable[[int], str]) -> dict[str, Any]:
    """A delivery as the API shows it: its latest attempt by time, and the count."""
    return {
        "delivery_id": row[S_DELIVERY],
        "event_id": row[S_EVENT],
        "event_type": names(row[S_TYPE]),
        "tenant_id": names(row[S_TENANT]),
        "subscription_id": names(row[S_SUB]),
        "status": row[S_STATUS],
        "outcome": row[S_OUTCOME],
        "attempts": row[S_ATTEMPTS],
        "first_attempt_at": row[S_FIRST_AT],
        "last_attempt_at": row[S_LAST_AT],
        "last_attempt": row[S_LAST_ATTEMPT],
        "last_error": row[S_ERROR],
    }


@dataclass
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None


# -- statistics ---------------------------------------------------------------------

#: A bucket's counters, in the column order of ``buckets``.
COUNTERS = ("attempts", "delivered", "retried", "failed", *(f"c{c}" for c in STATUS_CLASSES))
_OUTCOME_COUNTER = {"delivered": 1, "retry": 2, "give_up": 3}
_CLASS_COUNTER = {c: 4 + i for i, c in enumerate(STATUS_CLASSES)}
#: The counter of each HTTP status (anything else, None included, counts as ``error``).
_STATUS_COUNTER = {s: _CLASS_COUNTER[status_class(s)] for s in range(200, 600)}
_ERROR_COUNTER = _CLASS_COUNTER["error"]


@dataclass
class Bucket:
    """One row of ``buckets``: the attempts of one scope in one minute or hour."""

    tenant_id: str
    counts: list[int] = field(default_factory=lambda: [0] * len(COUNTERS))
    hist: dict[int, int] = field(default_factory=dict)
    # The newest attempt that was not delivered: (at, status, error).
    last_error: tuple[float, int | None, str | None] | None = None

    def add(self, row: Row) -> None:
        counts = self.counts
        counts[0] += 1
        counts[_OUTCOME_COUNTER[row[R_OUTCOME]]] += 1
        counts[_STATUS_COUNTER.get(row[R_STATUS], _ERROR_COUNTER)] += 1
        b = latency_bin(row[R_DURATION])
        self.hist[b] = self.hist.get(b, 0) + 1
        if row[R_OUTCOME] != "delivered" and (
            self.last_error is None or row[R_AT] >= self.last_error[0]
        ):
            self.last_error = (row[R_AT], row[R_STATUS], row[R_ERROR])

    def merge(self, other: Bucket) -> None:
        self.counts = list(map(operator.add, self.counts, other.counts))
        hist = self.hist
        for k, n in other.hist.items():
            hist[k] = hist.get(k, 0) + n
        last = other.last_error
        if last is not None and (self.last_error is None or last[0] >= self.last_error[0]):
            self.last_error = last


def window_view(buckets: Iterable[Bucket]) -> dict[str, Any]:
    """The statistics of a window from its buckets (the API's shape)."""
    counts = [0] * len(COUNTERS)
    hist: dict[int, int] = {}
    last: tuple[float, int | None, str | None] | None = None
    for b in buckets:
        for i, n in enumerate(b.counts):
            counts[i] += n
        for k, n in b.hist.items():
            hist[k] = hist.get(k, 0) + n
        if b.last_error is not None and (last is None or b.last_error[0] >= last[0]):
            last = b.last_error
    total = counts[0]
    return {
        "attempts": total,
        "delivered": counts[1],
        "retried": counts[2],
        "failed": counts[3],
        "success_rate": round(counts[1] / total, 6) if total else None,
        "latency_ms": {"p50": hist_percentile(hist, 0.50), "p99": hist_percentile(hist, 0.99)},
        "status_classes": {c: counts[4 + i] for i, c in enumerate(STATUS_CLASSES) if counts[4 + i]},
        "last_error": error_view(last),
    }


def error_view(last: tuple[float, int | None, str | None] | None) -> dict[str, Any] | None:
    if last is None:
        return None
    at, status, error = last
    return {
        "at": at,
        "status": status,
        "error": error or (f"HTTP {status}" if status is not None else None),
    }


def bucket_start(at: float, span: int) -> int:
    return int(at // span) * span


def window_first_bucket(now: float, seconds: int, span: int) -> int:
    """The oldest bucket of a window: the one holding ``now - seconds`` (so a window is
    up to one bucket longer than its name: 5m counts 5 to 6 minutes)."""
    return bucket_start(now - seconds, span)


def bucket_of(row: Sequence[Any]) -> Bucket:
    n = len(COUNTERS)
    error_at = row[6 + n]
    return Bucket(
        tenant_id=row[4],
        counts=list(row[5 : 5 + n]),
        hist=decode_hist(row[5 + n]),
        last_error=(error_at, row[7 + n], row[8 + n]) if error_at is not None else None,
    )


def bucket_params(k: tuple[str, str, int, int], b: Bucket) -> tuple[Any, ...]:
    last = b.last_error or (None, None, None)
    return (*k, b.tenant_id, *b.counts, encode_hist(b.hist), *last)


# -- the schema -----------------------------------------------------------------------

#: Kinds of ``names``: the strings stored once and referred to by id.
TENANT, SUBSCRIPTION, EVENT_TYPE, TOPIC = 1, 2, 3, 4
#: The list's order, then the event type: every list index carries it, so the event type
#: filter is checked in the index without reading a row (a grouped index of its own per
#: tenant and type dirtied a page per pair with each batch: 25% of the write cost).
_ORDER = "first_at, dkey, event_type"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    pos INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    dkey INTEGER NOT NULL,
    delivery_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type INTEGER NOT NULL,
    tenant INTEGER NOT NULL,
    sub INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    last_attempt INTEGER NOT NULL,
    last_pos INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    last_error TEXT,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS d_time ON deliveries ({_ORDER});
CREATE INDEX IF NOT EXISTS d_tenant ON deliveries (tenant, {_ORDER});
CREATE INDEX IF NOT EXISTS d_sub ON deliveries (sub, {_ORDER});
CREATE INDEX IF NOT EXISTS d_failed ON deliveries (outcome, {_ORDER}) WHERE {_NOT_DELIVERED};
CREATE INDEX IF NOT EXISTS d_tenant_failed ON deliveries (tenant, outcome, {_ORDER})
    WHERE {_NOT_DELIVERED};
CREATE INDEX IF NOT EXISTS d_sub_failed ON deliveries (sub, outcome, {_ORDER})
    WHERE {_NOT_DELIVERED};
CREATE INDEX IF NOT EXISTS d_status ON deliveries (status, {_ORDER}) WHERE {_NOT_DELIVERED};
CREATE INDEX IF NOT EXISTS d_tenant_status ON deliveries (tenant, status, {_ORDER})
    WHERE {_NOT_DELIVERED};
CREATE INDEX IF NOT EXISTS d_sub_status ON deliveries (sub, status, {_ORDER})
    WHERE {_NOT_DELIVERED};
CREATE TABLE IF NOT EXISTS dkeys (
    dkey INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (dkey, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dkeys_delta (
    dkey INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    live INTEGER NOT NULL,
    PRIMARY KEY (dkey, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    snippet TEXT NOT NULL,
    error TEXT,
    replay_id TEXT,
    source_topic INTEGER NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    PRIMARY KEY (seq, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    {", ".join(f"{c} INTEGER NOT NULL" for c in COUNTERS)},
    latency BLOB NOT NULL,
    error_at REAL,
    error_status INTEGER,
    error TEXT,
    PRIMARY KEY (span, start, kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS b_scope ON buckets (kind, key, span, start);
CREATE INDEX IF NOT EXISTS b_failing ON buckets (span, start, tenant_id)
    WHERE kind = 'sub' AND delivered < attempts;
CREATE TABLE IF NOT EXISTS totals (
    tenant INTEGER PRIMARY KEY,
    attempts INTEGER NOT NULL,
    deliveries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS saved_filter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bits BLOB NOT NULL,
    added INTEGER NOT NULL
);
"""

#: The indexes a page of the delivery log may read through (see :func:`plan_index`).
PAGE_INDEXES = (
    "d_time",
    "d_tenant",
    "d_sub",
    "d_failed",
    "d_tenant_failed",
    "d_sub_failed",
    "d_status",
    "d_tenant_status",
    "d_sub_status",
)
_BUCKET_COLUMNS = (
    f"kind, key, span, start, tenant_id, {', '.join(COUNTERS)}, latency, error_at, "
    "error_status, error"
)
_BUCKET_UPDATE = ", ".join(
    f"{c} = excluded.{c}" for c in (*COUNTERS, "latency", "error_at", "error_status", "error")
)
#: The files SQLite keeps beside the database in WAL mode.
_SIDE = ("-wal", "-shm")


def store_files(path: Path) -> list[Path]:
    """The database and the files beside it (delete all of them to drop the store)."""
    return [path, *(path.with_name(path.name + s) for s in _SIDE)]


def _bind_null(value: None) -> None:
    return value


# The standard library's sqlite3 binds int, float, str and bytearray directly; any other
# value (None, a bool) first goes through a failed adapter lookup (a tuple, a dictionary
# miss and two attribute lookups), about 0.7 us a value, before it binds NULL or an
# integer. An attempt binds three to five of them (status, error, replay_id, sent, the
# summary's last_error). Registered, the lookup finds them at once; what is bound is
# unchanged: NULL, and 0 or 1. Process-wide, like every sqlite3 adapter, and harmless to
# any other user for that reason.
sqlite3.register_adapter(type(None), _bind_null)
sqlite3.register_adapter(bool, int)


def _connect(path: Path, *, create: bool, cache_kib: int = READER_CACHE_KIB) -> sqlite3.Connection:
    target = str(path) if create else path.resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(target, uri=not create, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def fault(path: Path, exc: BaseException) -> StoreFault:
    """A store error as the operator must read it: the file, what is wrong, the fix."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    if isinstance(exc, OSError):
        code = _OS_ERRORS.get(exc.errno or 0, "")
    text = str(exc)
    where = f"the delivery-log store {path}"
    if code == "SQLITE_FULL" or "disk is full" in text or "No space left" in text:
        return StoreFault(
            f"{where}: the disk is full ({text}). Free space on that disk (or point "
            "STREAMS_LOG_DIR at a larger one) and restart this log node: it resumes from "
            "the last position it committed."
        )
    if (
        code in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
        or "malformed" in text
        or ("not a database" in text)
    ):
        return StoreFault(
            f"{where} is corrupt ({text}). Stop this log node and run `streams log rebuild` "
            "(or delete the file): the store is rebuilt from the attempts topic."
        )
    if code in ("SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM") or (
        "unable to open" in text
    ):
        return StoreFault(
            f"{where} cannot be opened or written ({text}). Check that its directory exists "
            "and is writable by this process and that its disk is healthy, then restart "
            "this log node."
        )
    if "no such table: dkeys" in text:
        return StoreFault(
            f"{where} is being upgraded from schema 2 by its log node (about 20 s per 10 "
            "million deliveries): lookups by id answer again when it is done. If this "
            "lasts, read the log node's log for why the upgrade failed."
        )
    return StoreFault(f"{where}: {text}")


_OS_ERRORS = {
    errno.ENOSPC: "SQLITE_FULL",
    errno.EDQUOT: "SQLITE_FULL",
    errno.EACCES: "SQLITE_PERM",
    errno.EPERM: "SQLITE_PERM",
    errno.EROFS: "SQLITE_READONLY",
    errno.EIO: "SQLITE_IOERR",
}


@contextlib.contextmanager
def _faults(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise fault(path, exc) from exc
    except OSError as exc:
        raise fault(path, exc) from exc


def open_schema(path: Path, topic: str) -> None:
    """Create the store at ``path`` (and its directory), or check that an existing one
    follows ``topic`` with this schema version. Raises :class:`StoreFault` with the fix."""
    with _faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(path, create=True)
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise StoreFault(f"the delivery-log store {path}: WAL mode is not available")
            # Read the version before creating anything: a store of another schema is
            # refused as it is (running this schema's script on it first would build
            # this version's indexes in it, minutes at 10 million deliveries), except
            # schema 2, which is upgraded in place.
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                meta = {}  # a new store
            if meta and meta.get("topic") != topic:
                raise StoreFault(
                    f"the delivery-log store {path} follows the topic {meta.get('topic')!r}, "
                    f"not {topic!r} (another STREAMS_TOPIC_PREFIX?): give this pipeline its "
                    "own STREAMS_LOG_DIR, or run `streams log rebuild`"
                )
            if meta.get("schema_version") == "2":
                _upgrade_from_2(conn)
                meta["schema_version"] = "3"
            if meta.get("schema_version") == "3":
                _upgrade_from_3(conn)
                meta["schema_version"] = str(SCHEMA_VERSION)
            if meta and meta.get("schema_version") != str(SCHEMA_VERSION):
                raise StoreFault(
                    f"the delivery-log store {path} has schema version "
                    f"{meta.get('schema_version')}, this version uses {SCHEMA_VERSION}: run "
                    "`streams log rebuild` (or delete the file) to rebuild it from the topic"
                )
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            if not meta:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("topic", topic)],
                )
        finally:
            conn.close()


def _upgrade_from_2(conn: sqlite3.Connection) -> None:
    """Version 2 to 3, in place and in one transaction: the delivery id index moves from
    ``d_key`` (an index of ``deliveries``) to the two-level ``dkeys`` tables, filled in
    key order from it (about 20 s at 10 million deliveries, instead of a rebuild)."""
    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
    try:
        rows = conn.execute(
            "INSERT INTO dkeys (dkey, seq) SELECT dkey, seq FROM deliveries ORDER BY dkey, seq"
        ).rowcount
        conn.execute("DROP INDEX IF EXISTS d_key")
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", "3"), ("dkeys_rows", str(rows))],
        )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _upgrade_from_3(conn: sqlite3.Connection) -> None:
    """Version 3 to 4, in place: hour buckets are written when their hour closes, not
    with every batch. A version-3 store kept every hour's bucket current, so every hour
    it holds counts as closed: the first open hour is the one after its newest."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT max(start) FROM buckets WHERE span = ?", (HOUR,)).fetchone()
        newest = row[0]
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                (HOURS_FROM, str(0 if newest is None else int(newest) + HOUR)),
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def hours_from(conn: sqlite3.Connection) -> int:
    """The first hour whose hour buckets are not written yet (its minutes stand for it)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (HOURS_FROM,)).fetchone()
    return int(row[0]) if row else 0


# -- the writer -----------------------------------------------------------------------


#: Where a round of pruning starts: before every (first_at, dkey).
_PRUNE_START = (-sys.float_info.max, -1)


@dataclass(slots=True)
class _Pending:
    """A delivery the batch being written touches: its summary row as it will be."""

    new: bool
    dkey: int
    row: list[Any]  # the summary columns (_SUMMARY_COLUMNS); [] until its first attempt


@dataclass
class WriteResult:
    attempts: int = 0
    deliveries: int = 0  # new deliveries
    duplicates: int = 0  # records before the stored position (read twice)
    merged: int = 0  # keys merged into the large level of the delivery id index
    skipped: int = 0  # undecodable records
    #: Each skipped record's (partition, offset, reason), for the indexer's log lines.
    skips: list[tuple[int, int, str]] = field(default_factory=list)


@dataclass
class PruneResult:
    deliveries: int = 0
    buckets: int = 0
    more: bool = False  # a full batch: call again


class LogWriter:
    """The store's one writer: batches of attempt records in, with their positions.

    Used from one thread (the indexer's). Each :meth:`write` is one transaction: the
    attempts, the summaries and statistics they change, and the next offset of each
    partition commit together or not at all.
    """

    def __init__(self, path: Path, topic: str) -> None:
        open_schema(path, topic)
        self.path = path
        self.topic = topic
        with _faults(path):
            self._conn = _connect(path, create=False, cache_kib=WRITER_CACHE_KIB)
            self._conn.execute("PRAGMA synchronous = NORMAL")  # WAL: consistent, not fsynced
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            self._conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            self._conn.execute(f"PRAGMA mmap_size = {WRITER_MMAP_BYTES}")
            self._positions: dict[int, int] = dict(
                self._conn.execute("SELECT partition, next_offset FROM positions").fetchall()
            )
            self._next_seq = self._max_seq() + 1
            self._large_rows, self._delta_rows = self._key_counts()
        self._saved_large_rows = self._large_rows
        self._merge_next = 0  # the key range the next merge takes
        # The filter of stored keys that rules most new deliveries out without a lookup,
        # and one being built to replace it once it is full (see _fill_filter).
        self._filter: KeyFilter | None = None
        self._building: KeyFilter | None = None
        self._build_from = 0
        self.filter_build_s = 0.0
        self.filter_loaded = False  # taken as the last writer saved it
        self._names: dict[tuple[int, str], int] = {}
        self._new_names: list[tuple[int, str]] = []
        # Buckets of the current minutes, so a batch adds to them in memory.
        self._buckets: dict[tuple[str, str, int, int], Bucket] = {}
        # The newest minute on disk, the minute from which every minute bucket on disk
        # is also in the cache (see _forget_buckets), and the first hour not closed.
        self._newest_minute = 0
        self._cached_from = sys.maxsize
        self._hours_from = 0
        with _faults(path):
            self._forget_buckets()
            started = time.process_time()
            self.filter_loaded = self._load_filter()
            if not self.filter_loaded:
                self._fill_filter(None)  # a full one saved is built again batch by batch
            self.filter_build_s = time.process_time() - started
        self._prune_after: tuple[float, int] = _PRUNE_START

    def _max_seq(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM deliveries").fetchone()[0])

    def close(self) -> None:
        """Save the key filter for the next writer to open with (see :meth:`_load_filter`),
        if the store still takes writes, and close."""
        if self._filter is not None:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    "INSERT OR REPLACE INTO saved_filter (id, bits, added) VALUES (1, ?, ?)",
                    (self._filter.to_bytes(), self._filter.added),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:  # a full disk, say: the next writer builds it
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                log.warning("delivery-log store %s: key filter not saved (%s)", self.path, exc)
        self._conn.close()

    def _load_filter(self) -> bool:
        """Take the key filter the last writer saved when it closed, if there is one.

        It is taken out of the store as it is read, in one transaction: a saved filter
        is only ever read by the writer that opens right after the one that saved it,
        so it holds every key stored. A writer that stops without closing (killed)
        leaves none, and the next one builds its filter from the id index."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT bits, added FROM saved_filter WHERE id = 1").fetchone()
            conn.execute("DELETE FROM saved_filter WHERE id = 1")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if row is None or not row[0]:
            return False
        self._filter = KeyFilter.from_bytes(row[0], int(row[1]))
        return True

    def positions(self) -> dict[int, int]:
        """The next offset to read of each partition indexed so far."""
        return dict(self._positions)

    def write(self, records: Sequence[tuple[int, int, bytes | None]]) -> WriteResult:
        """Store ``(partition, offset, value)`` records of the attempts topic, in one
        transaction. Records before a partition's stored position are skipped (read twice)."""
        result = WriteResult()
        reached: dict[int, int] = {}
        rows: list[tuple[int, Row]] = []
        skipped: list[tuple[int, str, float]] = []
        stored = self._positions
        for partition, offset, raw in records:
            if offset < reached.get(partition, stored.get(partition, 0)):
                result.duplicates += 1
                continue
            reached[partition] = offset + 1
            pos = position(partition, offset)
            row, why = attempt_row(raw)
            if row is None:
                skipped.append((pos, why, time.time()))
                result.skips.append((partition, offset, why))
            else:
                rows.append((pos, row))
        result.skipped = len(skipped)
        if not reached:
            return result
        with _faults(self.path):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._fill_filter(FILTER_BUILD_ROWS)
                result.attempts, result.deliveries = self._apply(rows)
                result.merged = self._merge_keys()
                self._save_key_count()
                if skipped:
                    conn.executemany(
                        "INSERT OR REPLACE INTO skipped (pos, reason, at) VALUES (?, ?, ?)",
                        skipped,
                    )
                    conn.execute(
                        "DELETE FROM skipped WHERE pos NOT IN "
                        "(SELECT pos FROM skipped ORDER BY at DESC, pos DESC LIMIT ?)",
                        (KEPT_SKIPPED,),
                    )
                conn.executemany(
                    "INSERT INTO positions (partition, next_offset) VALUES (?, ?) "
                    "ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
                    sorted(reached.items()),
                )
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._new_names.clear()
        self._positions.update(reached)
        return result

    def _rollback(self) -> None:
        """Undo a failed transaction, and what this writer remembered of it."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        for name in self._new_names:
            self._names.pop(name, None)
        with contextlib.suppress(sqlite3.Error):
            self._forget_buckets()  # they hold the rolled-back counts: read again from disk
        with contextlib.suppress(sqlite3.Error):
            self._next_seq = self._max_seq() + 1
            self._large_rows, self._delta_rows = self._key_counts()
            self._saved_large_rows = self._large_rows

    def _forget_buckets(self) -> None:
        """Empty the minute bucket cache, and read from disk the newest minute and where
        the open hours start.

        A minute bucket missing from the cache with a start from ``_cached_from`` on is
        new, and is not looked for on disk: at first that holds only after the newest
        minute on disk; once this writer has written a minute, every bucket of it is in
        the cache until it is evicted (two minutes behind the newest).
        """
        self._buckets.clear()
        self._cached_from = sys.maxsize  # until the newest minute is read: look on disk
        self._newest_minute = int(
            self._conn.execute(
                "SELECT coalesce(max(start), 0) FROM buckets WHERE span = ?", (MINUTE,)
            ).fetchone()[0]
        )
        self._cached_from = self._newest_minute + 1
        self._hours_from = hours_from(self._conn)

    def _name_id(self, kind: int, name: str) -> int:
        key = (kind, name)
        found = self._names.get(key)
        if found is not None:
            return found
        row = self._conn.execute(
            "SELECT id FROM names WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        if row is None:
            cur = self._conn.execute("INSERT INTO names (kind, name) VALUES (?, ?)", key)
            row = (cur.lastrowid,)
            self._new_names.append(key)
        if len(self._names) >= NAMES_CACHED:
            self._names.clear()
        self._names[key] = row[0]
        return int(row[0])

    def _locate(self, rows: list[tuple[int, Row]]) -> dict[str, _Pending]:
        """The stored summary of each delivery of a batch (an empty one when new), read
        in a few queries for the whole batch."""
        pending: dict[str, _Pending] = {}
        wanted: dict[int, None] = {}
        held = self._filter
        for _, row in rows:
            d = row[R_DELIVERY]
            if d in pending:
                continue
            k = delivery_key(d)
            pending[d] = _Pending(True, k, [])
            # A key the filter never saw is a new delivery: no lookup (most of a batch's).
            if held is None or held.may_hold(k):
                wanted[k] = None
        keys = list(wanted)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for found in self._conn.execute(by_key_sql(len(chunk)), chunk):
                p = pending.get(found[S_DELIVERY])  # two ids may share a key: the row says
                if p is not None:
                    p.new, p.row = False, list(found)
        return pending

    def _direct(self) -> bool:
        """Whether keys go to the large level directly (a small store, see DIRECT_ROWS)."""
        return self._large_rows < DIRECT_ROWS and not self._delta_rows

    def _add_keys(self, keys: list[tuple[int, int]]) -> None:
        """Put new deliveries' ``(dkey, seq)`` in the index: the delta level, or the large
        one directly while the store is small. (In the delta, the pair is there already
        only as the tombstone of a pruned delivery whose seq and key came back.)"""
        for f in (self._filter, self._building):
            if f is not None:
                f.add_all(k for k, _ in keys)
        if self._direct():
            self._large_rows += self._conn.executemany(
                "INSERT OR IGNORE INTO dkeys (dkey, seq) VALUES (?, ?)", keys
            ).rowcount
            return
        self._conn.executemany(
            "INSERT INTO dkeys_delta (dkey, seq, live) VALUES (?, ?, 1) "
            "ON CONFLICT (dkey, seq) DO UPDATE SET live = 1",
            keys,
        )
        self._delta_rows += len(keys)

    def _add_tombstones(self, keys: list[tuple[int, int]]) -> None:
        """Take pruned deliveries' ``(dkey, seq)`` out of the index: from the large level
        directly while the store is small, else as tombstones in the delta level, removed
        from the large one when their range is merged. An entry still in the delta (a
        delivery stored and pruned between two merges of its range) changes in place; the
        rest are new rows, and counted."""
        conn = self._conn
        if self._direct():
            self._large_rows -= conn.executemany(
                "DELETE FROM dkeys WHERE dkey = ? AND seq = ?", keys
            ).rowcount
            return
        conn.executemany("UPDATE dkeys_delta SET live = 0 WHERE dkey = ? AND seq = ?", keys)
        self._delta_rows += conn.executemany(
            "INSERT OR IGNORE INTO dkeys_delta (dkey, seq, live) VALUES (?, ?, 0)", keys
        ).rowcount

    def _save_key_count(self) -> None:
        """Keep the large level's size in ``meta`` (in the transaction that changed it)."""
        if self._large_rows != self._saved_large_rows:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('dkeys_rows', ?)",
                (str(self._large_rows),),
            )
            self._saved_large_rows = self._large_rows

    def _merge_keys(self) -> int:
        """Once the delta level holds :func:`merge_after` keys, merge one key range of it
        into the large level, in key order; the keys merged (0: none). Part of the batch's
        transaction, and bounded: a range is ``merge_ranges`` of the key space, so a
        merge writes about MERGE_RANGE_ROWS keys' worth of the large level's pages
        whatever its size. Ranges are taken in turn, one per batch while the delta is
        over the threshold: it settles where a range's share moves a batch's keys."""
        if self._delta_rows < merge_after(self._large_rows):
            return 0
        ranges = merge_ranges(self._large_rows)
        index = self._merge_next % ranges
        self._merge_next = index + 1
        bounds = (index * KEY_SPACE // ranges, (index + 1) * KEY_SPACE // ranges)
        conn = self._conn
        added = conn.execute(
            "INSERT OR IGNORE INTO dkeys (dkey, seq) SELECT dkey, seq FROM dkeys_delta "
            "WHERE dkey >= ? AND dkey < ? AND live ORDER BY dkey, seq",
            bounds,
        ).rowcount
        gone = conn.execute(
            "SELECT dkey, seq FROM dkeys_delta WHERE dkey >= ? AND dkey < ? AND NOT live "
            "ORDER BY dkey, seq",
            bounds,
        ).fetchall()
        removed = conn.executemany("DELETE FROM dkeys WHERE dkey = ? AND seq = ?", gone).rowcount
        merged = conn.execute(
            "DELETE FROM dkeys_delta WHERE dkey >= ? AND dkey < ?", bounds
        ).rowcount
        self._large_rows += added - removed
        self._delta_rows -= merged
        return merged

    def _key_counts(self) -> tuple[int, int]:
        """Rows of the large level (kept in ``meta``) and of the delta level (counted)."""
        meta = self._conn.execute("SELECT value FROM meta WHERE key = 'dkeys_rows'").fetchone()
        delta = self._conn.execute("SELECT count(*) FROM dkeys_delta").fetchone()[0]
        return (int(meta[0]) if meta else 0), int(delta)

    def _fill_filter(self, limit: int | None) -> None:
        """Build the key filter (all at once with no ``limit``), or take a build under
        way ``limit`` keys further; start one when the filter in use is full.

        Complete, because every key stored is in one of the two levels when a build
        starts, the delta level is read whole first, the large level in key order (a
        merge moving keys into a range already read moved keys the delta gave), and
        every key stored meanwhile is added by :meth:`_add_keys`. A rolled-back batch
        leaves its keys in the filter: a "maybe" too many, never a "no" too many."""
        if self._building is None:
            if self._filter is not None and not self._filter.full:
                return
            self._building = KeyFilter(filter_bits(self._large_rows + self._delta_rows))
            self._building.add_all(
                k for (k,) in self._conn.execute("SELECT dkey FROM dkeys_delta WHERE live")
            )
            self._build_from = 0
        building = self._building
        left = sys.maxsize if limit is None else limit
        while left > 0:
            n = min(left, FILTER_BUILD_ROWS)
            keys = [
                k
                for (k,) in self._conn.execute(
                    "SELECT dkey FROM dkeys WHERE dkey >= ? ORDER BY dkey LIMIT ?",
                    (self._build_from, n),
                )
            ]
            building.add_all(keys)
            left -= n
            if len(keys) < n:
                self._filter, self._building = building, None
                return
            self._build_from = keys[-1] + 1

    def _apply(self, rows: list[tuple[int, Row]]) -> tuple[int, int]:
        conn = self._conn
        name_id = self._name_id
        pending = self._locate(rows)
        attempt_rows: list[tuple[Any, ...]] = []
        # This batch's name ids by kind, keyed by the name alone (a (kind, name) key cost
        # a tuple and its hash at every lookup). Ids start at 1, so `or` reads a miss.
        topics: dict[str, int] = {}
        types: dict[str, int] = {}
        tenants: dict[str, int] = {}
        subs: dict[str, int] = {}

        def id_of(cache: dict[str, int], kind: int, name: str) -> int:
            cache[name] = found = name_id(kind, name)
            return found

        # This batch's counts per (tenant, subscription, minute), added to the buckets after.
        deltas: dict[tuple[str, str, int], Bucket] = {}
        next_seq = self._next_seq  # written back after the loop (a rollback reads it again)
        for pos, row in rows:
            p = pending[row[R_DELIVERY]]
            summary = p.row
            if not summary:  # its first attempt in the store: the summary is this attempt
                summary[:] = (
                    next_seq,
                    p.dkey,
                    row[R_DELIVERY],
                    row[R_EVENT],
                    types.get(row[R_TYPE]) or id_of(types, EVENT_TYPE, row[R_TYPE]),
                    tenants.get(row[R_TENANT]) or id_of(tenants, TENANT, row[R_TENANT]),
                    subs.get(row[R_SUB]) or id_of(subs, SUBSCRIPTION, row[R_SUB]),
                    row[R_AT],  # first_at: fixed from now on (the list's order)
                    row[R_AT],
                    row[R_ATTEMPT],
                    pos,
                    row[R_OUTCOME],
                    row[R_STATUS],
                    row[R_ERROR],
                    1,
                )
                next_seq += 1
            else:
                summary[S_ATTEMPTS] += 1
                # The summary is the latest attempt by time, then number, then position (a
                # delivery's attempts share a partition: position is the order written).
                if (row[R_AT], row[R_ATTEMPT], pos) > (
                    summary[S_LAST_AT],
                    summary[S_LAST_ATTEMPT],
                    summary[S_LAST_POS],
                ):
                    summary[S_LAST_AT : S_ERROR + 1] = (
                        row[R_AT],
                        row[R_ATTEMPT],
                        pos,
                        row[R_OUTCOME],
                        row[R_STATUS],
                        row[R_ERROR],
                    )
            # The attempts table's columns: the row's from `attempt` to `replay_id`, the
            # topic's name id, then the source position and `sent`.
            attempt_rows.append(
                (
                    summary[S_SEQ],
                    pos,
                    *row[R_ATTEMPT:R_SOURCE_TOPIC],
                    topics.get(row[R_SOURCE_TOPIC]) or id_of(topics, TOPIC, row[R_SOURCE_TOPIC]),
                    *row[R_SOURCE_PARTITION:],
                )
            )
            # Statistics count an attempt under its tenant and subscription, by minute.
            dk = (row[R_TENANT], row[R_SUB], int(row[R_AT] // MINUTE) * MINUTE)
            delta = deltas.get(dk)
            if delta is None:
                delta = deltas[dk] = Bucket(row[R_TENANT])
            delta.add(row)
        self._next_seq = next_seq
        conn.executemany(
            "INSERT INTO attempts (seq, pos, attempt, at, duration_ms, outcome, status, "
            "snippet, error, replay_id, source_topic, source_partition, source_offset, sent) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempt_rows,
        )
        new = [p.row for p in pending.values() if p.new]
        conn.executemany(
            f"INSERT INTO deliveries ({_SUMMARY_COLUMNS}) VALUES "
            f"({', '.join('?' * (S_ATTEMPTS + 1))})",
            new,
        )
        self._add_keys([(summary[S_DKEY], summary[S_SEQ]) for summary in new])
        conn.executemany(
            "UPDATE deliveries SET last_at = ?, last_attempt = ?, last_pos = ?, outcome = ?, "
            "status = ?, last_error = ?, attempts = ? WHERE seq = ?",
            [(*p.row[S_LAST_AT:], p.row[S_SEQ]) for p in pending.values() if not p.new],
        )
        totals: dict[int, list[int]] = {0: [len(attempt_rows), len(new)]}
        for summary in new:
            totals.setdefault(summary[S_TENANT], [0, 0])[1] += 1
        for (tenant_id, _, _), delta in deltas.items():
            totals.setdefault(name_id(TENANT, tenant_id), [0, 0])[0] += delta.counts[0]
        self._add_totals(totals)
        self._add_buckets(deltas)
        return len(attempt_rows), len(new)

    def _add_totals(self, totals: dict[int, list[int]], sign: int = 1) -> None:
        self._conn.executemany(
            "INSERT INTO totals (tenant, attempts, deliveries) VALUES (?, ?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET attempts = attempts + excluded.attempts, "
            "deliveries = deliveries + excluded.deliveries",
            [(t, sign * a, sign * d) for t, (a, d) in totals.items()],
        )

    def _add_buckets(self, deltas: dict[tuple[str, str, int], Bucket]) -> None:
        """Add a batch's per-minute counts to the minute buckets of their subscription,
        tenant and everything, and write the buckets changed.

        Hour buckets are not written batch by batch: an hour's bucket is written once,
        from its minutes, when the hour closes (:meth:`_roll_hours`, when an attempt of a
        later hour arrives or the pruner finds the hour past). Until then readers take
        that hour from its minutes (:meth:`LogReader._buckets`, :meth:`LogReader.series`).
        Only an attempt of an hour already closed (a late one) adds to that hour's bucket
        directly.
        """
        # Fold the subscriptions' minutes into their tenants' and everyone's first, so a
        # bucket of a tenant or of everything takes one merge per batch, not one per
        # subscription.
        scoped: dict[tuple[str, str, str, int], Bucket] = {}
        for (tenant_id, sub_id, minute), delta in deltas.items():
            scoped[("sub", sub_id, tenant_id, minute)] = delta
            for kind, key, owner in (("tenant", tenant_id, tenant_id), ("all", "", "")):
                folded = scoped.get((kind, key, owner, minute))
                if folded is None:
                    scoped[(kind, key, owner, minute)] = folded = Bucket(owner)
                folded.merge(delta)
        if not scoped:
            return
        cache = self._buckets
        if not self._hours_from:  # a new store: no hour before this batch's has minutes
            self._set_hours_from(bucket_start(min(s[3] for s in scoped), HOUR))
        hours_from = newest_hour = self._hours_from
        late: dict[tuple[str, str, int, int], Bucket] = {}
        for (kind, key, owner, minute), delta in scoped.items():
            k = (kind, key, MINUTE, minute)
            b = cache.get(k)
            if b is None:
                b = cache[k] = self._load_bucket(k, owner)
            b.merge(delta)
            hour = bucket_start(minute, HOUR)
            if hour < hours_from:
                hk = (kind, key, HOUR, hour)
                folded = late.get(hk)
                if folded is None:
                    late[hk] = folded = Bucket(owner)
                folded.merge(delta)
            elif hour > newest_hour:
                newest_hour = hour
        rows = [bucket_params(k, cache[k]) for k in {(s[0], s[1], MINUTE, s[3]) for s in scoped}]
        for hk, delta in late.items():
            b = self._load_bucket(hk, delta.tenant_id)
            b.merge(delta)
            rows.append(bucket_params(hk, b))
        self._upsert_buckets(rows)
        if newest_hour > hours_from:
            self._roll_hours(newest_hour)
        # Keep in memory only the minutes new attempts still land in (the newest two):
        # the rest are on disk, and read again if a late attempt needs one.
        newest = max(self._newest_minute, max(s[3] for s in scoped))
        self._newest_minute = newest
        for k in [k for k in cache if k[3] < newest - MINUTE]:
            del cache[k]
        self._cached_from = max(self._cached_from, newest - MINUTE)

    def _upsert_buckets(self, rows: list[tuple[Any, ...]]) -> None:
        # An upsert, not a replace: the key columns stay, so their indexes are not written.
        self._conn.executemany(
            f"INSERT INTO buckets ({_BUCKET_COLUMNS}) VALUES "
            f"({', '.join('?' * (9 + len(COUNTERS)))}) ON CONFLICT (span, start, kind, key) "
            f"DO UPDATE SET {_BUCKET_UPDATE}",
            rows,
        )

    def _roll_hours(self, until: int) -> None:
        """Close the hours from ``_hours_from`` to ``until`` (exclusive): write each one's
        hour buckets from its minute buckets, in this transaction, and move the mark
        readers split hours and minutes at. Reads each minute bucket once (an hour of
        2,000 busy subscriptions: about 130,000 rows)."""
        hours: dict[tuple[str, str, int, int], Bucket] = {}
        for r in self._conn.execute(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE span = ? AND start >= ? AND start < ?",
            (MINUTE, self._hours_from, until),
        ):
            hk = (r[0], r[1], HOUR, bucket_start(r[3], HOUR))
            b = hours.get(hk)
            if b is None:
                hours[hk] = b = Bucket(r[4])
            b.merge(bucket_of(r))
        self._upsert_buckets([bucket_params(k, b) for k, b in hours.items()])
        self._set_hours_from(until)

    def _set_hours_from(self, hour: int) -> None:
        """Move the mark where open hours start, in the batch's transaction (a rollback
        reads it back from disk: :meth:`_forget_buckets`)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (HOURS_FROM, str(hour))
        )
        self._hours_from = hour

    def _load_bucket(self, k: tuple[str, str, int, int], tenant_id: str) -> Bucket:
        if k[2] == MINUTE and k[3] >= self._cached_from:
            return Bucket(tenant_id)  # not cached, so not on disk either
        found = self._conn.execute(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE kind = ? AND key = ? AND span = ? "
            "AND start = ?",
            k,
        ).fetchone()
        return bucket_of(found) if found is not None else Bucket(tenant_id)

    # -- retention -------------------------------------------------------------------

    def prune(self, now: float, retention_s: float, limit: int = 1000) -> PruneResult:
        """Delete up to ``limit`` deliveries whose every attempt is older than
        ``retention_s``, with their attempts, then buckets past their keeping time.

        One bounded transaction (it holds the write lock for milliseconds): call it
        again, between batches of attempts, while the result says ``more``. A delivery
        redelivered recently is kept whole, however old its first attempt.
        """
        cutoff = now - retention_s
        result = PruneResult()
        with _faults(self.path):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                candidates = conn.execute(
                    "SELECT seq, first_at, dkey, last_at, tenant, attempts FROM deliveries "
                    "INDEXED BY d_time WHERE first_at < ? AND (first_at, dkey) > (?, ?) "
                    "ORDER BY first_at, dkey LIMIT ?",
                    (cutoff, *self._prune_after, limit),
                ).fetchall()
                doomed = [c for c in candidates if c[3] < cutoff]
                totals: dict[int, list[int]] = {0: [0, 0]}
                for _, _, _, _, tenant, attempts in doomed:
                    for key in (0, tenant):
                        t = totals.setdefault(key, [0, 0])
                        t[0] += attempts
                        t[1] += 1
                seqs = [(c[0],) for c in doomed]
                conn.executemany("DELETE FROM attempts WHERE seq = ?", seqs)
                conn.executemany("DELETE FROM deliveries WHERE seq = ?", seqs)
                self._add_tombstones([(c[2], c[0]) for c in doomed])
                self._save_key_count()
                self._add_totals(totals, sign=-1)
                if len(candidates) < limit:  # deliveries done: the buckets, a batch at a time
                    result.buckets = self._prune_buckets(now, retention_s, limit)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        result.deliveries = len(doomed)
        result.more = len(candidates) == limit or result.buckets >= limit
        # Deliveries kept (a recent attempt) are not looked at again in this round.
        self._prune_after = (
            (candidates[-1][1], candidates[-1][2]) if len(candidates) == limit else _PRUNE_START
        )
        return result

    def _prune_buckets(self, now: float, retention_s: float, limit: int) -> int:
        # Close every hour past by the clock first: its minutes are about to go, and its
        # hour bucket is written from them (an idle store gets no later attempt to do it).
        if self._hours_from < bucket_start(now, HOUR):
            self._roll_hours(bucket_start(now, HOUR))
        deleted = 0
        for span, keep in ((MINUTE, MINUTE_BUCKETS_KEPT_S), (HOUR, retention_s)):
            deleted += self._conn.execute(
                "DELETE FROM buckets WHERE (span, start, kind, key) IN (SELECT span, start, "
                "kind, key FROM buckets WHERE span = ? AND start < ? "
                "LIMIT ?)",
                (span, now - keep - span, limit),
            ).rowcount
        return deleted


# -- the reader -----------------------------------------------------------------------


class LogReader:
    """Queries of the store, from any number of threads (one connection per thread).

    Readers never block the writer, nor it them (WAL): a query sees the store as of
    the last batch committed when it began.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        # Names never change their id, so the cache is never stale (only bounded).
        self._ids: dict[tuple[int, str], int] = {}
        self._names: dict[int, str] = {}

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise UnavailableError(
                    f"the delivery log is not ready: {self.path} does not exist yet (the "
                    "indexer creates it when it starts)"
                )
            with _faults(self.path):
                conn = _connect(self.path, create=False)
                conn.execute("PRAGMA query_only = 1")
                conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with _faults(self.path):
            return self._conn().execute(sql, args).fetchall()

    def _id(self, kind: int, name: str | None) -> int | None:
        """The stored id of a name, -1 when the store has never seen it, None for None."""
        if name is None:
            return None
        found = self._ids.get((kind, name))
        if found is None:
            rows = self._all("SELECT id FROM names WHERE kind = ? AND name = ?", (kind, name))
            if not rows:
                return -1  # matches nothing; not cached, it may appear later
            if len(self._ids) >= NAMES_CACHED:
                self._ids.clear()
            found = self._ids[(kind, name)] = rows[0][0]
        return found

    def _name(self, name_id: int) -> str:
        found = self._names.get(name_id)
        if found is None:
            rows = self._all("SELECT name FROM names WHERE id = ?", (name_id,))
            if len(self._names) >= NAMES_CACHED:
                self._names.clear()
            found = self._names[name_id] = rows[0][0] if rows else ""
        return found

    # -- the delivery log ------------------------------------------------------------

    def page(self, q: DeliveryQuery, cursor: Cursor | None = None) -> Page:
        """One page of deliveries matching ``q``, newest first, after ``cursor``."""
        ids = NameIds(
            tenant=self._id(TENANT, q.tenant_id),
            subscription=self._id(SUBSCRIPTION, q.subscription_id),
            event_type=self._id(EVENT_TYPE, q.event_type),
        )
        if -1 in (ids.tenant, ids.subscription, ids.event_type):
            return Page([], None)
        sql, args = delivery_sql(q, ids, cursor)
        rows = self._all(sql, args)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        last = rows[-1] if rows else None
        return Page(
            [summary_view(r, self._name) for r in rows],
            Cursor(last[S_FIRST_AT], last[S_DKEY]).encode() if more and last else None,
        )

    def delivery(self, delivery_id: str) -> tuple[dict[str, Any], list[Attempt]] | None:
        """A delivery's summary and every attempt stored, oldest first; None if unknown."""
        found = [
            r
            for r in self._all(by_key_sql(1), (delivery_key(delivery_id),))
            if r[S_DELIVERY] == delivery_id
        ]
        if not found:
            return None
        row = found[0]
        view = summary_view(row, self._name)
        attempts = [
            Attempt(
                delivery_id=delivery_id,
                event_id=row[S_EVENT],
                event_type=view["event_type"],
                tenant_id=view["tenant_id"],
                subscription_id=view["subscription_id"],
                attempt=a[1],
                at=a[2],
                duration_ms=a[3],
                outcome=a[4],
                status=a[5],
                response_snippet=a[6],
                error=a[7],
                replay_id=a[8],
                source_topic=self._name(a[9]),
                source_partition=a[10],
                source_offset=a[11],
                sent=bool(a[12]),
            )
            for a in sorted(
                self._all(
                    "SELECT pos, attempt, at, duration_ms, outcome, status, snippet, error, "
                    "replay_id, source_topic, source_partition, source_offset, sent "
                    "FROM attempts WHERE seq = ?",
                    (row[S_SEQ],),
                ),
                key=lambda a: (a[2], a[1], a[0]),  # by time, number, position: as the summary
            )
        ]
        return view, attempts

    # -- statistics ------------------------------------------------------------------

    def _buckets(self, kind: str, key: str, span: int, since: int) -> list[tuple[int, Bucket]]:
        """The buckets of one scope and width from ``since`` on, by start. Hours not
        closed yet come as their minute buckets (each with its minute's start)."""
        sql = (
            f"SELECT {_BUCKET_COLUMNS} FROM buckets INDEXED BY b_scope WHERE kind = ? AND "
            "key = ? AND span = ? AND start >= ?"
        )
        if span != HOUR:
            rows = self._all(sql + " ORDER BY start", (kind, key, span, since))
        else:
            split = self._hours_from()
            rows = self._all(sql + " AND start < ? ORDER BY start", (kind, key, span, since, split))
            rows += self._all(sql + " ORDER BY start", (kind, key, MINUTE, max(since, split)))
        return [(r[3], bucket_of(r)) for r in rows]

    def _hours_from(self) -> int:
        """Where hour buckets stop and minutes stand for the open hours. Read before the
        rows it splits: a later close only adds an hour bucket before the minutes read."""
        return hours_from(self._conn())

    def windows(self, kind: str, key: str, now: float) -> dict[str, dict[str, Any]]:
        """Statistics of one scope (``all`` with key "", ``tenant``, ``sub``) over each
        window of :data:`WINDOWS`, from its buckets."""
        out: dict[str, dict[str, Any]] = {}
        fetched: dict[int, list[tuple[int, Bucket]]] = {}
        for name, seconds, span in WINDOWS:
            if span not in fetched:
                longest = max(s for _, s, w in WINDOWS if w == span)
                fetched[span] = self._buckets(
                    kind, key, span, window_first_bucket(now, longest, span)
                )
            first = window_first_bucket(now, seconds, span)
            out[name] = window_view(b for start, b in fetched[span] if start >= first)
        return out

    def failing(
        self, tenant_id: str | None, now: float, limit: int, seconds: int = 3600
    ) -> list[dict[str, Any]]:
        """Subscriptions with attempts not delivered in the last ``seconds`` (in minute
        buckets), most failures first, each with its attempts and newest error."""
        first = window_first_bucket(now, seconds, MINUTE)
        sql = (
            f"SELECT {_BUCKET_COLUMNS} FROM buckets INDEXED BY b_failing WHERE kind = 'sub' "
            "AND delivered < attempts AND span = ? AND start >= ?"
        )
        args: list[Any] = [MINUTE, first]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            args.append(tenant_id)
        by_sub: dict[str, dict[str, Any]] = {}
        for r in self._all(sql, args):
            b = bucket_of(r)
            row = by_sub.setdefault(
                r[1], {"subscription_id": r[1], "tenant_id": r[4], "failures": 0, "_last": None}
            )
            row["failures"] += b.counts[0] - b.counts[1]
            if b.last_error is not None and (
                row["_last"] is None or b.last_error[0] >= row["_last"][0]
            ):
                row["_last"] = b.last_error
        out = []
        for sub_id, row in by_sub.items():
            attempts = self._all(
                "SELECT coalesce(sum(attempts), 0) FROM buckets INDEXED BY b_scope "
                "WHERE kind = 'sub' AND key = ? "
                "AND span = ? AND start >= ?",
                (sub_id, MINUTE, first),
            )[0][0]
            row["attempts"] = attempts
            row["last_error"] = error_view(row.pop("_last"))
            row["success_rate"] = round(1 - row["failures"] / attempts, 6) if attempts else None
            out.append(row)
        out.sort(key=lambda r: (-r["failures"], r["success_rate"] or 0.0, r["subscription_id"]))
        return out[:limit]

    def health(
        self,
        subscription_ids: Iterable[str],
        now: float,
        hours: int = 24,
        *,
        newest_error: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """Per subscription: attempts and deliveries per hour over the last ``hours``
        (oldest first, empty hours included), the success rate over them, and, with
        ``newest_error``, the newest error the store still counts.

        Finding that error reads the subscription's hour buckets back until one holds
        an error: for an endpoint that never failed, every hour of the retention (2 ms
        an endpoint at 10 million stored). The console's endpoint lists chart many
        endpoints and do not show it, so they ask without it."""
        out: dict[str, dict[str, Any]] = {}
        for sub_id in subscription_ids:
            chart = self.series("sub", sub_id, now, HOUR, hours)
            total = sum(c["attempts"] for c in chart)
            delivered = sum(c["delivered"] for c in chart)
            out[sub_id] = {
                "attempts": total,
                "success_rate": round(delivered / total, 6) if total else None,
                "chart": chart,
            }
            if newest_error:
                out[sub_id]["last_error"] = self._newest_error(sub_id)
        return out

    def _newest_error(self, sub_id: str) -> dict[str, Any] | None:
        """The newest error the store counts for a subscription: in the open hours'
        minutes, else in the newest closed hour that holds one."""
        split = self._hours_from()
        sql = (
            "SELECT error_at, error_status, error FROM buckets INDEXED BY b_scope "
            "WHERE kind = 'sub' AND key = ? AND span = ? AND error_at IS NOT NULL "
        )
        newest = self._all(
            sql + "AND start >= ? ORDER BY start DESC LIMIT 1", (sub_id, MINUTE, split)
        ) or self._all(sql + "AND start < ? ORDER BY start DESC LIMIT 1", (sub_id, HOUR, split))
        return error_view(tuple(newest[0])) if newest else None

    def series(
        self, kind: str, key: str, now: float, span: int, count: int
    ) -> list[dict[str, Any]]:
        """Attempts and deliveries of one scope (as :meth:`windows`) per bucket of
        ``span`` seconds over the last ``count`` buckets, oldest first, empty ones
        included (the console's charts)."""
        first = bucket_start(now, span) - (count - 1) * span
        # The two counts only: a chart of 2,000 endpoints decoded every bucket's latency
        # histogram before (0.37 ms an endpoint at 10 million stored, 0.74 s a page).
        sql = (
            "SELECT start, attempts, delivered FROM buckets INDEXED BY b_scope "
            "WHERE kind = ? AND key = ? AND span = ? AND start >= ?"
        )
        if span != HOUR:
            rows = self._all(sql, (kind, key, span, first))
        else:
            split = self._hours_from()
            rows = self._all(sql + " AND start < ?", (kind, key, span, first, split))
            # The open hours, each added up from its minutes in SQLite (one hour at a
            # time: grouping by hour in one query would sort). Usually one or two: the
            # pruner closes every hour past within PRUNE_EVERY_S.
            last = bucket_start(now, HOUR)
            for hour in range(max(first, split), last + 1, HOUR):
                attempts, delivered = self._all(
                    "SELECT coalesce(sum(attempts), 0), coalesce(sum(delivered), 0) "
                    "FROM buckets INDEXED BY b_scope WHERE kind = ? AND key = ? AND span = ? "
                    "AND start >= ? AND start < ?",
                    (kind, key, MINUTE, hour, hour + HOUR),
                )[0]
                if attempts:
                    rows.append((hour, attempts, delivered))
        by_start = {start: (attempts, delivered) for start, attempts, delivered in rows}
        chart = []
        for i in range(count):
            attempts, delivered = by_start.get(first + i * span, (0, 0))
            chart.append({"start": first + i * span, "attempts": attempts, "delivered": delivered})
        return chart

    def layout(self) -> dict[str, Any]:
        """The store's schema version and the state of its delivery id index: keys in the
        large level, keys (and tombstones) waiting in the delta, and the delta's size at
        which merging starts; where the open hours start, and the keys of a saved key
        filter. For ``streams log status``; counts the delta (bounded)."""
        meta = dict(self._all("SELECT key, value FROM meta"))
        large = int(meta.get("dkeys_rows", 0))
        waiting = self._all("SELECT count(*) FROM dkeys_delta")[0][0]
        saved = self._all("SELECT added FROM saved_filter WHERE id = 1")
        return {
            "schema_version": int(meta.get("schema_version", 0)),
            "id_index": {"merged": large, "waiting": waiting, "merge_at": merge_after(large)},
            # The first hour whose hour buckets are not written yet (None: no bucket yet).
            "hours_open_from": int(meta[HOURS_FROM]) if meta.get(HOURS_FROM) else None,
            # Keys in the key filter the last writer saved as it closed (None: none saved).
            "key_filter_saved": int(saved[0][0]) if saved else None,
        }

    def figures(self, tenant_id: str | None) -> dict[str, Any]:
        """How much of the log the store holds, for a tenant or (None) for everyone."""
        tenant = 0 if tenant_id is None else self._id(TENANT, tenant_id)
        counted = self._all("SELECT attempts, deliveries FROM totals WHERE tenant = ?", (tenant,))
        if tenant_id is None:
            oldest = self._all("SELECT min(first_at) FROM deliveries INDEXED BY d_time")
        else:
            oldest = self._all(
                "SELECT min(first_at) FROM deliveries INDEXED BY d_tenant WHERE tenant = ?",
                (tenant,),
            )
        attempts, deliveries = counted[0] if counted else (0, 0)
        return {"attempts": attempts, "deliveries": deliveries, "oldest_at": oldest[0][0]}

    def positions(self) -> dict[int, int]:
        return dict(self._all("SELECT partition, next_offset FROM positions"))

    def skipped(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest undecodable records: where they are in the topic, and why."""
        out = []
        for pos, reason, at in self._all(
            "SELECT pos, reason, at FROM skipped ORDER BY at DESC, pos DESC LIMIT ?", (limit,)
        ):
            partition, offset = split_position(pos)
            out.append({"partition": partition, "offset": offset, "reason": reason, "at": at})
        return out

    def disk_bytes(self) -> int:
        """Bytes of the store's files on disk (the database, its WAL and shared memory)."""
        return sum(p.stat().st_size for p in store_files(self.path) if p.exists())
