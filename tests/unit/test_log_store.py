"""The delivery-log store against fixed attempt sequences (streams.log.store)."""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.errors import InvalidRequestError, UnavailableError
from streams.log import keyfilter as keyfilter_module
from streams.log import store as store_module
from streams.log.store import (
    HOUR,
    KEY_SPACE,
    MINUTE,
    R_AT,
    R_ERROR,
    R_OUTCOME,
    R_STATUS,
    SCHEMA_VERSION,
    SNIPPET_BYTES,
    Bucket,
    Cursor,
    DeliveryQuery,
    LogReader,
    LogWriter,
    StoreFault,
    attempt_row,
    bin_value,
    bounded_snippet,
    delivery_key,
    error_view,
    fault,
    hist_percentile,
    latency_bin,
    merge_after,
    merge_ranges,
    plan_index,
    position,
    split_position,
    store_files,
    window_first_bucket,
    window_view,
)
from streams.records import Attempt

T0 = 1_800_000_000.0  # a whole hour: 2027-01-15T08:00:00Z
TOPIC = "attempts"


def attempt(
    delivery: str,
    number: int = 1,
    at: float = T0,
    *,
    outcome: str = "delivered",
    status: int | None = 200,
    tenant: str = "t1",
    sub: str = "sub_a",
    event_type: str = "order.created",
    error: str | None = None,
    duration_ms: float = 10.0,
    replay_id: str | None = None,
    **extra: Any,
) -> Attempt:
    return Attempt(
        delivery_id=delivery,
        event_id=f"evt_{delivery}",
        event_type=event_type,
        tenant_id=tenant,
        subscription_id=sub,
        attempt=number,
        at=at,
        duration_ms=duration_ms,
        outcome=outcome,
        status=status,
        error=error,
        replay_id=replay_id,
        source_topic="deliveries",
        source_partition=0,
        source_offset=7,
        **extra,
    )


class Topic:
    """The attempts topic as the indexer reads it: (partition, offset, value) records."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.logs: list[list[bytes | None]] = [[] for _ in range(partitions)]

    def append(self, a: Attempt | bytes | None, partition: int | None = None) -> None:
        if partition is None:
            assert isinstance(a, Attempt)
            partition = delivery_key(a.delivery_id) % self.partitions  # keyed by delivery
        self.logs[partition].append(a.to_bytes() if isinstance(a, Attempt) else a)

    def records(self, start: dict[int, int] | None = None) -> list[tuple[int, int, bytes | None]]:
        """Every record from ``start``, partitions interleaved as a consumer returns them."""
        start = start or {}
        out: list[tuple[int, int, bytes | None]] = []
        for p, log in enumerate(self.logs):
            out.extend((p, o, v) for o, v in enumerate(log) if o >= start.get(p, 0))
        return out


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "attempts.sqlite3"


@pytest.fixture
def writer(path: Path) -> Iterator[LogWriter]:
    w = LogWriter(path, TOPIC)
    yield w
    w.close()


@pytest.fixture
def reader(path: Path, writer: LogWriter) -> Iterator[LogReader]:
    r = LogReader(path)
    yield r
    r.close()


_TOPICS: weakref.WeakKeyDictionary[LogWriter, Topic] = weakref.WeakKeyDictionary()


def store(writer: LogWriter, *attempts: Attempt) -> None:
    """Append ``attempts`` to the writer's topic and write what it has not read yet."""
    topic = _TOPICS.setdefault(writer, Topic())
    start = writer.positions()
    for a in attempts:
        topic.append(a)
    writer.write(topic.records(start))


# -- pure helpers ---------------------------------------------------------------------


def test_a_position_packs_partition_and_offset_and_unpacks_again() -> None:
    assert position(0, 0) == 0
    assert position(1, 5) == (1 << 40) + 5
    assert position(3, 123_456_789) == 3_298_658_340_117
    assert split_position(3_298_658_340_117) == (3, 123_456_789)
    with pytest.raises(ValueError, match="out of range"):
        position(0, 1 << 40)
    with pytest.raises(ValueError, match="out of range"):
        position(-1, 0)


def test_the_delivery_key_is_a_fixed_62_bit_hash_of_the_id() -> None:
    assert delivery_key("msg_abc") == 4464534276805406144
    assert delivery_key("msg_nllqv2pj6kulwa2t6q7j6w6wzu") == 655164469097552932
    assert delivery_key("msg_abc") != delivery_key("msg_abd")
    assert all(0 <= delivery_key(f"msg_{i}") < 1 << 62 for i in range(1000))


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("ok", 4096, "ok"),
        ("a" * 5000, 4096, "a" * 4096),
        ("é" * 3000, 4096, "é" * 2048),  # 2 bytes each
        ("aé", 2, "a"),  # never half a character
        ("a€b", 3, "a"),  # € is 3 bytes
        ("x\ud800y", 10, "x?y"),  # a lone surrogate cannot be stored as UTF-8
        ("", 4096, ""),
    ],
)
def test_a_snippet_is_bounded_in_utf8_bytes_on_a_character_boundary(
    text: str, limit: int, expected: str
) -> None:
    out = bounded_snippet(text, limit)
    assert out == expected
    assert len(out.encode()) <= limit


@pytest.mark.parametrize(
    ("ms", "index"),
    [(-1.0, 0), (0.0, 0), (0.49, 0), (0.5, 1), (1.0, 9), (2.0, 17), (100.0, 62), (1e9, 136)],
)
def test_latency_bins_are_an_eighth_of_an_octave_wide(ms: float, index: int) -> None:
    assert latency_bin(ms) == index


def test_a_bin_reports_its_geometric_middle() -> None:
    assert bin_value(0) == 0.25
    assert bin_value(1) == 0.522  # between 0.5 and 0.545
    assert bin_value(9) == 1.044  # between 1.0 and 1.09


def test_percentiles_from_the_histogram_are_within_five_percent_of_the_exact_ones() -> None:
    rnd = random.Random(7)
    samples = [rnd.lognormvariate(3, 1.2) for _ in range(5000)]
    hist: dict[int, int] = {}
    for s in samples:
        hist[latency_bin(s)] = hist.get(latency_bin(s), 0) + 1
    ordered = sorted(samples)
    for q in (0.5, 0.9, 0.99):
        exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]
        got = hist_percentile(hist, q)
        assert got is not None
        assert abs(got - exact) / exact < 0.05, (q, got, exact)
    assert hist_percentile({}, 0.5) is None
    assert hist_percentile({9: 1, 17: 3}, 0.25) == bin_value(9)
    assert hist_percentile({9: 1, 17: 3}, 0.26) == bin_value(17)


def test_a_good_attempt_decodes_to_its_fields() -> None:
    a = attempt("d1", 2, response_snippet="é" * 3000, error="timeout")
    row, why = attempt_row(a.to_bytes())
    assert why == ""
    assert row is not None
    assert Attempt(*row) == dataclasses.replace(a, response_snippet="é" * 2048)
    assert len(row[10].encode()) == SNIPPET_BYTES


def test_a_whole_number_of_seconds_is_a_time_too() -> None:
    raw = _obj(at=1_800_000_000, duration_ms=12)
    row, why = attempt_row(raw)
    assert why == ""
    assert row is not None
    assert (row[6], row[7]) == (1_800_000_000.0, 12.0)
    assert type(row[6]) is float


def test_a_record_of_an_older_writer_without_the_optional_fields_takes_their_defaults() -> None:
    optional = (
        "status",
        "response_snippet",
        "error",
        "replay_id",
        "source_topic",
        "source_partition",
        "source_offset",
        "sent",
    )
    row, why = attempt_row(_obj(**dict.fromkeys(optional, KeyError)))
    assert why == ""
    assert row is not None
    assert row[9:] == (None, "", None, None, "", -1, -1, True)
    assert row[:9] == attempt_row(attempt("d1").to_bytes())[0][:9]  # type: ignore[index]


def _obj(**changes: Any) -> bytes:
    obj = attempt("d1").to_dict()
    for k, v in changes.items():
        if v is KeyError:
            del obj[k]
        else:
            obj[k] = v
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty record"),
        (b"", "empty record"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"x"', "expected a JSON object, got str"),
        (_obj(delivery_id=KeyError), "`delivery_id` must be a string"),
        (_obj(delivery_id=""), "`delivery_id` must be a string (not empty)"),
        (_obj(tenant_id=5), "`tenant_id` must be a string"),
        (_obj(subscription_id=""), "`subscription_id` must be a string (not empty)"),
        (_obj(event_type=None), "`event_type` must be a string"),
        (_obj(outcome="exploded"), "`outcome` must be one of delivered, retry, give_up"),
        (_obj(attempt=True), "`attempt` must be a whole number"),
        (_obj(attempt=-1), "`attempt` must be a whole number"),
        (_obj(attempt=1.5), "`attempt` must be a whole number"),
        (_obj(at="yesterday"), "`at` must be a number"),
        (_obj(duration_ms=KeyError), "`duration_ms` must be a number"),
        (_obj(status="200"), "`status` must be an HTTP status or null"),
        (_obj(status=1000), "`status` must be an HTTP status or null"),
        (_obj(error=["x"]), "`error` must be a string or null"),
        (_obj(response_snippet=5), "`response_snippet` must be a string"),
        (_obj(source_offset="7"), "`source_topic`, `source_partition`, `source_offset`"),
        (_obj(source_offset=1 << 63), "out of range"),
        (_obj(sent="yes"), "`sent` must be true or false"),
        (  # orjson reads an integer beyond 64 bits as a float
            _obj(attempt=987654321).replace(b"987654321", b"123456789012345678901234567890"),
            "`attempt` must be a whole number",
        ),
    ],
)
def test_a_record_the_store_cannot_keep_is_refused_with_the_reason(
    raw: bytes | None, reason: str
) -> None:
    row, why = attempt_row(raw)
    assert row is None
    assert reason in why


# -- queries: validation and plans ---------------------------------------------------------


def test_a_query_refuses_a_bad_status_limit_or_range_naming_the_field() -> None:
    for kwargs, field in (
        ({"status": "broken"}, "status"),
        ({"status": "50"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"since": 2.0, "until": 1.0}, "since"),
    ):
        with pytest.raises(InvalidRequestError) as err:
            DeliveryQuery(**kwargs)
        assert err.value.field == field
    assert DeliveryQuery(status="failed").outcome == "give_up"
    assert DeliveryQuery(status="503").http_status == 503


@pytest.mark.parametrize(
    ("kwargs", "index"),
    [
        ({}, "d_time"),
        ({"status": "delivered"}, "d_time"),
        ({"status": "200"}, "d_time"),
        ({"status": "failed"}, "d_failed"),
        ({"status": "503"}, "d_status"),
        ({"event_type": "a.b"}, "d_time"),  # the type is in every list index
        ({"event_type": "a.b", "status": "retrying"}, "d_failed"),
        ({"tenant_id": "t"}, "d_tenant"),
        ({"tenant_id": "t", "event_type": "a.b"}, "d_tenant"),
        ({"tenant_id": "t", "status": "failed"}, "d_tenant_failed"),
        ({"tenant_id": "t", "status": "429"}, "d_tenant_status"),
        ({"tenant_id": "t", "status": "delivered", "event_type": "a.b"}, "d_tenant"),
        ({"tenant_id": "t", "subscription_id": "s"}, "d_sub"),
        ({"subscription_id": "s", "status": "retrying"}, "d_sub_failed"),
        ({"subscription_id": "s", "status": "500"}, "d_sub_status"),
        ({"subscription_id": "s", "status": "204"}, "d_sub"),
    ],
)
def test_each_filter_combination_reads_through_the_narrowest_index(
    kwargs: dict[str, Any], index: str
) -> None:
    assert plan_index(DeliveryQuery(**kwargs)) == index


def test_a_cursor_round_trips_and_a_tampered_one_is_refused() -> None:
    c = Cursor(1_800_000_000.123456, 12345)
    assert Cursor.decode(c.encode()) == c
    assert Cursor.decode("c1.WzEsMl0") == Cursor(1.0, 2)  # [1, 2]
    for bad in (
        "",
        "c1.",
        "c2." + c.encode()[3:],
        "c1.!!!",
        "c1.WzEsLTJd",  # [1, -2]
        "c1.WyJ4IiwxXQ",  # ["x", 1]
        "c1.WzEsMiwzXQ",  # [1, 2, 3]
        "c1.eyJhIjoxfQ",  # {"a": 1}
        "c1.WzEsNDYxMTY4NjAxODQyNzM4NzkwNF0",  # a key beyond 62 bits
        "c1." + "A" * 200,
    ):
        with pytest.raises(InvalidRequestError) as err:
            Cursor.decode(bad)
        assert err.value.field == "cursor"


def test_a_window_starts_at_the_bucket_holding_its_far_end() -> None:
    now = T0 + 3 * MINUTE + 30
    assert window_first_bucket(now, 300, MINUTE) == T0 - 2 * MINUTE
    assert window_first_bucket(now, 3600, HOUR) == T0 - HOUR
    assert window_first_bucket(T0, 300, MINUTE) == T0 - 5 * MINUTE


def test_none_and_bools_bind_through_registered_adapters_as_null_and_integers() -> None:
    # Registered by the store (a found adapter is cheaper than the failed lookup sqlite3
    # makes for every None or bool otherwise); what is stored is what it stored before.
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)] is store_module._bind_null
    assert sqlite3.adapters[(bool, sqlite3.PrepareProtocol)] is int
    conn = sqlite3.connect(":memory:")
    got = conn.execute(
        "SELECT typeof(?1), ?1 IS NULL, typeof(?2), ?2, typeof(?3), ?3", (None, True, False)
    ).fetchone()
    assert got == ("null", 1, "integer", 1, "integer", 0)


def test_a_store_error_names_the_file_the_problem_and_the_fix(tmp_path: Path) -> None:
    p = tmp_path / "attempts.sqlite3"
    full = fault(p, sqlite3.OperationalError("database or disk is full"))
    assert str(p) in str(full)
    assert "disk is full" in str(full)
    assert "Free space" in str(full)
    corrupt = fault(p, sqlite3.DatabaseError("database disk image is malformed"))
    assert str(p) in str(corrupt)
    assert "corrupt" in str(corrupt)
    assert "streams log rebuild" in str(corrupt)
    notadb = fault(p, sqlite3.DatabaseError("file is not a database"))
    assert "corrupt" in str(notadb)
    denied = fault(p, PermissionError(13, "Permission denied"))
    assert "writable" in str(denied)
    assert "Free space" in str(fault(p, OSError(28, "No space left on device")))


# -- the summary and the history -------------------------------------------------------


def test_a_redelivery_after_three_failures_makes_the_delivery_delivered(
    writer: LogWriter, reader: LogReader
) -> None:
    failed: dict[str, Any] = {"outcome": "retry", "status": 503}
    store(
        writer,
        attempt("d1", 1, T0, **failed),
        attempt("d1", 2, T0 + 5, **failed),
        attempt("d1", 3, T0 + 300, outcome="give_up", status=503),
        attempt("d1", 4, T0 + 4000, replay_id="rdl_1"),  # a redelivery, numbered on
    )
    found = reader.delivery("d1")
    assert found is not None
    view, history = found
    assert view["outcome"] == "delivered"
    assert view["status"] == 200
    assert view["attempts"] == 4
    assert view["last_attempt"] == 4
    assert view["first_attempt_at"] == T0
    assert view["last_attempt_at"] == T0 + 4000
    assert [a.attempt for a in history] == [1, 2, 3, 4]
    assert history[-1].replay_id == "rdl_1"


def test_the_summary_is_the_latest_attempt_by_time_even_when_numbered_lower(
    writer: LogWriter, reader: LogReader
) -> None:
    # Records written before redeliveries were numbered on: the replay restarted at 1.
    store(
        writer,
        attempt("d1", 1, T0, outcome="retry", status=500),
        attempt("d1", 2, T0 + 5, outcome="give_up", status=500),
        attempt("d1", 1, T0 + 100, replay_id="rpl_1"),
    )
    found = reader.delivery("d1")
    assert found is not None
    view, history = found
    assert (view["outcome"], view["status"]) == ("delivered", 200)
    assert [(a.attempt, a.at) for a in history] == [(1, T0), (2, T0 + 5), (1, T0 + 100)]
    assert reader.page(DeliveryQuery(status="delivered")).data[0]["delivery_id"] == "d1"
    assert reader.page(DeliveryQuery(status="failed")).data == []


def test_attempts_arriving_out_of_order_still_end_in_the_latest(
    writer: LogWriter, reader: LogReader
) -> None:
    # Two workers: attempt 3 is written (and read) before attempt 2, in another batch.
    store(writer, attempt("d1", 1, T0, outcome="retry", status=500))
    store(writer, attempt("d1", 3, T0 + 20, outcome="give_up", status=404))
    store(writer, attempt("d1", 2, T0 + 10, outcome="retry", status=502))
    found = reader.delivery("d1")
    assert found is not None
    view, history = found
    assert (view["outcome"], view["status"], view["attempts"]) == ("give_up", 404, 3)
    assert [a.attempt for a in history] == [1, 2, 3]


def test_attempts_come_back_equal_to_what_was_written(writer: LogWriter, reader: LogReader) -> None:
    written = [
        attempt("d1", 1, T0, outcome="retry", status=None, error="connect timeout", sent=False),
        attempt("d1", 2, T0 + 1.5, response_snippet='{"ok": true}', duration_ms=12.25),
    ]
    store(writer, *written)
    found = reader.delivery("d1")
    assert found is not None
    assert found[1] == written
    assert reader.delivery("nope") is None


def test_two_delivery_ids_with_the_same_key_stay_apart(
    writer: LogWriter, reader: LogReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.log.store as module

    monkeypatch.setattr(module, "delivery_key", lambda _: 42)  # every id collides
    store(writer, attempt("d1", 1, T0, outcome="retry", status=500), attempt("d2", 1, T0 + 1))
    store(writer, attempt("d1", 2, T0 + 2))
    one, two = reader.delivery("d1"), reader.delivery("d2")
    assert one is not None
    assert two is not None
    assert (one[0]["attempts"], one[0]["outcome"]) == (2, "delivered")
    assert (two[0]["attempts"], [a.delivery_id for a in two[1]]) == (1, ["d2"])


# -- positions: no gaps, no double rows ----------------------------------------------------


def test_a_batch_read_twice_is_stored_once(writer: LogWriter, reader: LogReader) -> None:
    topic = Topic()
    for n in range(5):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    first = writer.write(topic.records())
    again = writer.write(topic.records())
    assert (first.attempts, first.deliveries, first.duplicates) == (5, 5, 0)
    assert (again.attempts, again.duplicates) == (0, 5)
    assert reader.figures(None)["attempts"] == 5
    assert len(reader.page(DeliveryQuery()).data) == 5


def test_a_restarted_writer_resumes_at_the_committed_positions(path: Path) -> None:
    topic = Topic()
    for n in range(6):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    w = LogWriter(path, TOPIC)
    w.write(topic.records()[:4])
    committed = w.positions()
    w.close()
    w = LogWriter(path, TOPIC)  # a restart
    assert w.positions() == committed
    for n in range(6, 9):
        topic.append(attempt(f"d{n}", 1, T0 + n))
    # The consumer starts at the committed positions; give it some records again too.
    result = w.write(topic.records())
    w.close()
    r = LogReader(path)
    ids = [row["delivery_id"] for row in r.page(DeliveryQuery()).data]
    r.close()
    assert result.duplicates == 4
    assert sorted(ids) == [f"d{n}" for n in range(9)]


def test_undecodable_records_are_skipped_with_their_reason_and_the_position_moves_on(
    writer: LogWriter, reader: LogReader
) -> None:
    topic = Topic(partitions=1)
    topic.append(attempt("d1"), 0)
    topic.append(None, 0)  # a tombstone
    topic.append(b"\x00garbage", 0)
    topic.append(attempt("d2", at=T0 + 1), 0)
    result = writer.write(topic.records())
    assert (result.attempts, result.skipped) == (2, 2)
    assert writer.positions() == {0: 4}
    assert [(s["offset"], s["reason"][:12]) for s in reader.skipped()] == [
        (2, "not JSON (un"),
        (1, "empty record"),
    ]
    assert {r["delivery_id"] for r in reader.page(DeliveryQuery()).data} == {"d1", "d2"}


def test_a_full_disk_loses_nothing_and_names_the_file(path: Path) -> None:
    w = LogWriter(path, TOPIC)
    topic = Topic()
    topic.append(attempt("d0", 1, T0))
    w.write(topic.records())
    before = w.positions()
    pages = w._conn.execute("PRAGMA page_count").fetchone()[0]
    w._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
    for n in range(1, 400):
        topic.append(attempt(f"d{n}", 1, T0 + n, response_snippet="x" * 3000))
    with pytest.raises(StoreFault) as err:
        w.write(topic.records(before))
    assert str(path) in str(err.value)
    assert "disk is full" in str(err.value)
    assert w.positions() == before
    w._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    w.write(topic.records(before))
    w.close()
    r = LogReader(path)
    assert r.figures(None) == {"attempts": 400, "deliveries": 400, "oldest_at": T0}
    r.close()


def test_a_corrupt_or_foreign_store_is_refused_with_the_fix(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StoreFault) as err:
        LogWriter(path, TOPIC)
    assert str(path) in str(err.value)
    assert "streams log rebuild" in str(err.value)
    for p in store_files(path):
        p.unlink(missing_ok=True)
    LogWriter(path, TOPIC).close()
    with pytest.raises(StoreFault, match=r"follows the topic 'attempts', not 'other\.attempts'"):
        LogWriter(path, "other.attempts")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreFault, match="schema version 0"):
        LogWriter(path, TOPIC)


def test_a_store_of_another_schema_is_refused_before_anything_is_created_in_it(
    path: Path,
) -> None:
    """An older or newer store is refused as it is: this version's tables and indexes
    are not built in it first (at 10 million deliveries that took minutes)."""
    LogWriter(path, TOPIC).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        conn.execute("DROP INDEX d_sub")
        conn.execute("DROP TABLE totals")
    conn.close()
    with pytest.raises(StoreFault, match="schema version 99, this version uses"):
        LogWriter(path, TOPIC)
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "d_sub" not in names
    assert "totals" not in names


def test_a_lookup_during_the_upgrade_from_version_2_says_so() -> None:
    err = fault(
        Path("/var/lib/streams/log.sqlite3"), sqlite3.OperationalError("no such table: dkeys_delta")
    )
    assert "is being upgraded from schema 2" in str(err)
    assert "/var/lib/streams/log.sqlite3" in str(err)


def test_a_reader_before_the_store_exists_says_the_log_is_not_ready(tmp_path: Path) -> None:
    r = LogReader(tmp_path / "missing.sqlite3")
    with pytest.raises(UnavailableError, match="does not exist yet"):
        r.page(DeliveryQuery())
    assert not (tmp_path / "missing.sqlite3").exists()  # a reader never creates one


# -- the list: filters, order, cursors -------------------------------------------------------

TENANTS = ("t1", "t2")
SUBS = {"t1": ("s1", "s2"), "t2": ("s3",)}
TYPES = ("order.created", "order.paid")


def fixture_attempts(count: int, seed: int = 3) -> list[Attempt]:
    """``count`` deliveries of two tenants with every outcome, some retried."""
    rnd = random.Random(seed)
    out = []
    for n in range(count):
        tenant = TENANTS[n % 2]
        sub = rnd.choice(SUBS[tenant])
        kind = rnd.choice(TYPES)
        at = T0 + n * 7 + rnd.random()  # distinct times
        common: dict[str, Any] = {"tenant": tenant, "sub": sub, "event_type": kind}
        fate = rnd.random()
        if fate < 0.6:
            out.append(attempt(f"d{n:04d}", 1, at, status=rnd.choice((200, 204)), **common))
            continue
        out.append(attempt(f"d{n:04d}", 1, at, outcome="retry", status=503, **common))
        if fate < 0.8:
            out.append(attempt(f"d{n:04d}", 2, at + 3, status=200, **common))
        elif fate < 0.9:
            out.append(attempt(f"d{n:04d}", 2, at + 3, outcome="give_up", status=404, **common))
        else:
            out.append(
                attempt(
                    f"d{n:04d}", 2, at + 3, outcome="retry", status=None, error="timeout", **common
                )
            )
    return out


def oracle(attempts: list[Attempt], q: DeliveryQuery) -> list[str]:
    """The delivery ids ``q`` must return, newest first, computed the slow obvious way."""
    by_id: dict[str, list[Attempt]] = {}
    for a in attempts:
        by_id.setdefault(a.delivery_id, []).append(a)
    rows = []
    for did, history in by_id.items():
        first, last = history[0], max(history, key=lambda a: (a.at, a.attempt))
        if q.tenant_id is not None and first.tenant_id != q.tenant_id:
            continue
        if q.subscription_id is not None and first.subscription_id != q.subscription_id:
            continue
        if q.event_type is not None and first.event_type != q.event_type:
            continue
        if q.outcome is not None and last.outcome != q.outcome:
            continue
        if q.http_status is not None and last.status != q.http_status:
            continue
        if q.since is not None and first.at < q.since:
            continue
        if q.until is not None and first.at >= q.until:
            continue
        rows.append((first.at, delivery_key(did), did))
    return [did for _, _, did in sorted(rows, reverse=True)]


def read_all(reader: LogReader, q: DeliveryQuery) -> list[str]:
    out: list[str] = []
    cursor = None
    for _ in range(1000):
        page = reader.page(q, cursor)
        out.extend(r["delivery_id"] for r in page.data)
        if page.next_cursor is None:
            return out
        cursor = Cursor.decode(page.next_cursor)
    raise AssertionError("more than 1000 pages")


QUERIES: list[dict[str, Any]] = [
    {},
    {"tenant_id": "t1"},
    {"tenant_id": "t2", "status": "failed"},
    {"tenant_id": "t1", "status": "retrying"},
    {"tenant_id": "t1", "status": "delivered"},
    {"tenant_id": "t1", "status": "503"},
    {"tenant_id": "t1", "status": "204"},
    {"tenant_id": "t1", "event_type": "order.paid"},
    {"tenant_id": "t1", "event_type": "order.paid", "status": "failed"},
    {"tenant_id": "t1", "subscription_id": "s2"},
    {"tenant_id": "t1", "subscription_id": "s3"},  # another tenant's subscription
    {"subscription_id": "s1", "status": "404"},
    {"subscription_id": "s1", "status": "retrying", "event_type": "order.created"},
    {"status": "failed"},
    {"status": "200"},
    {"event_type": "order.created"},
    {"event_type": "no.such.type"},
    {"tenant_id": "nobody"},
    {"since": T0 + 700, "until": T0 + 1400},
    {"tenant_id": "t2", "since": T0 + 700, "status": "delivered"},
]


@pytest.mark.parametrize("kwargs", QUERIES)
def test_every_filter_returns_what_the_obvious_computation_does(
    writer: LogWriter, reader: LogReader, kwargs: dict[str, Any]
) -> None:
    attempts = fixture_attempts(300)
    store(writer, *attempts)
    q = DeliveryQuery(**kwargs, limit=7)
    assert read_all(reader, q) == oracle(attempts, q)


def test_pages_neither_skip_nor_repeat_while_attempts_arrive(
    writer: LogWriter, reader: LogReader
) -> None:
    attempts = fixture_attempts(250)
    store(writer, *attempts)
    q = DeliveryQuery(tenant_id="t1", limit=20)
    expected = oracle(attempts, DeliveryQuery(tenant_id="t1", limit=20))
    seen: list[str] = []
    cursor = None
    late = 0
    for _ in range(100):
        page = reader.page(q, cursor)
        seen.extend(r["delivery_id"] for r in page.data)
        # Between pages: new deliveries, and new attempts of deliveries on either side
        # of the cursor (a retry of one already shown, and of one not shown yet).
        shown, coming = seen[-1], expected[min(len(seen) + 5, len(expected) - 1)]
        store(
            writer,
            attempt(f"new{late}", 1, T0 + 10_000 + late, tenant="t1", sub="s1"),
            attempt(shown, 9, T0 + 20_000 + late, tenant="t1", sub="s1"),
            attempt(
                coming, 9, T0 + 20_000 + late, tenant="t1", sub="s1", outcome="give_up", status=410
            ),
        )
        late += 1
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor)
    assert seen == expected
    # A fresh read from the top sees the new deliveries first.
    top = reader.page(DeliveryQuery(tenant_id="t1", limit=3)).data
    assert [r["delivery_id"] for r in top] == [f"new{late - 1}", f"new{late - 2}", f"new{late - 3}"]


def test_a_tenant_sees_only_its_own_deliveries(writer: LogWriter, reader: LogReader) -> None:
    store(writer, *fixture_attempts(50))
    for tenant in TENANTS:
        rows = read_all(reader, DeliveryQuery(tenant_id=tenant, limit=10))
        assert rows
        for did in rows:
            found = reader.delivery(did)
            assert found is not None
            assert found[0]["tenant_id"] == tenant


def test_a_rebuilt_store_answers_the_same(tmp_path: Path) -> None:
    attempts = fixture_attempts(200)
    # Two deliveries with the same first attempt time: their order must survive a rebuild.
    attempts += [attempt("tie_a", 1, T0 + 3), attempt("tie_b", 1, T0 + 3)]
    topic = Topic()
    for a in attempts:
        topic.append(a)
    answers = []
    for name, order in (("one", 1), ("two", -1)):
        p = tmp_path / name / "attempts.sqlite3"
        w = LogWriter(p, TOPIC)
        # The second build reads the partitions in another interleaving, in small batches.
        records = topic.records()
        by_partition = sorted(records, key=lambda r: (order * r[0], r[1]))
        for i in range(0, len(by_partition), 13):
            w.write(by_partition[i : i + 13])
        w.close()
        r = LogReader(p)
        answers.append(
            (
                [read_all(r, DeliveryQuery(**kw, limit=9)) for kw in QUERIES],
                [r.delivery(a.delivery_id) for a in attempts[::17]],
                r.windows("tenant", "t1", T0 + 1500),
                r.figures("t2"),
            )
        )
        r.close()
    assert answers[0] == answers[1]


# -- statistics -----------------------------------------------------------------------------


def test_windows_count_attempts_by_outcome_class_and_latency(
    writer: LogWriter, reader: LogReader
) -> None:
    now = T0 + 3 * 86_400  # 3 days after T0
    store(
        writer,
        attempt("a", 1, now - 60, duration_ms=10.0),  # in every window
        attempt("b", 1, now - 120, outcome="retry", status=503, duration_ms=100.0),
        attempt("b", 2, now - 30, outcome="give_up", status=410, error=None),
        attempt("c", 1, now - 1800, status=204),  # 1h and longer
        attempt("d", 1, now - 7200, outcome="retry", status=None, error="timeout"),  # 24h, 7d
        attempt("e", 1, now - 2 * 86_400),  # 7d only
        attempt("f", 1, now - 9 * 86_400),  # none
        attempt("g", 1, now - 60, tenant="t2", sub="sub_z"),  # another tenant
    )
    w = reader.windows("tenant", "t1", now)
    assert {k: v["attempts"] for k, v in w.items()} == {"5m": 3, "1h": 4, "24h": 5, "7d": 6}
    five = w["5m"]
    assert (five["delivered"], five["retried"], five["failed"]) == (1, 1, 1)
    assert five["success_rate"] == round(1 / 3, 6)
    assert five["status_classes"] == {"2xx": 1, "4xx": 1, "5xx": 1}
    assert five["last_error"] == {"at": now - 30, "status": 410, "error": "HTTP 410"}
    assert five["latency_ms"] == {
        "p50": bin_value(latency_bin(10.0)),
        "p99": bin_value(latency_bin(100.0)),
    }
    assert w["24h"]["last_error"] == five["last_error"]
    assert w["24h"]["status_classes"] == {"2xx": 2, "4xx": 1, "5xx": 1, "error": 1}
    assert reader.windows("all", "", now)["5m"]["attempts"] == 4
    assert reader.windows("sub", "sub_z", now)["5m"]["attempts"] == 1
    empty = reader.windows("sub", "nothing", now)["1h"]
    assert empty["attempts"] == 0
    assert empty["success_rate"] is None
    assert empty["latency_ms"] == {"p50": None, "p99": None}


def test_buckets_add_up_across_batches_restarts_and_rollbacks_reading_disk_only_when_needed(
    path: Path,
) -> None:
    """A bucket missing from the writer's cache is read from disk only where the disk may
    hold it: after a restart or a rollback, not for a new subscription in a minute this
    writer has written all along."""
    minute = T0 + 3 * 86_400  # a whole minute
    writer = LogWriter(path, TOPIC)
    reads: list[str] = []
    writer._conn.set_trace_callback(
        lambda sql: (
            reads.append(sql) if sql.startswith("SELECT") and "FROM buckets" in sql else None
        )
    )
    store(writer, attempt("a1", 1, minute + 1, sub="s1"))
    store(writer, attempt("a2", 1, minute + 2, sub="s1"), attempt("b1", 1, minute + 3, sub="s2"))
    assert reads == []  # s2's bucket of this minute is new: this writer wrote every one
    store(writer, attempt("c1", 1, minute + 61, sub="s3"))  # the next minute
    store(writer, attempt("c2", 1, minute + 4, sub="s4"))  # late, in the minute before
    assert reads == []  # both minutes are still cached whole
    topic = _TOPICS[writer]
    writer.close()
    writer = LogWriter(path, TOPIC)  # a restart mid-minute: the cache is empty
    _TOPICS[writer] = topic
    reads.clear()
    writer._conn.set_trace_callback(
        lambda sql: (
            reads.append(sql) if sql.startswith("SELECT") and "FROM buckets" in sql else None
        )
    )
    store(writer, attempt("a3", 1, minute + 5, sub="s1"))
    assert reads  # s1 has buckets on disk in these minutes: they are read, then added to
    # A batch that fails forgets the cache; the next one reads the disk again.
    writer._conn.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON attempts BEGIN SELECT RAISE(FAIL, 'no'); END"
    )
    with pytest.raises(StoreFault):
        store(writer, attempt("a4", 1, minute + 6, sub="s1"))
    writer._conn.execute("DROP TRIGGER fail")
    reads.clear()
    writer.write(topic.records(writer.positions()))
    assert reads
    reader = LogReader(path)
    s1 = reader.windows("sub", "s1", minute + 120)["5m"]
    assert s1["attempts"] == 4  # a1, a2, a3, a4: none lost or counted twice
    hour = reader.windows("all", "", minute + 120)["7d"]
    assert hour["attempts"] == 7
    assert reader.windows("sub", "s4", minute + 120)["5m"]["attempts"] == 1
    reader.close()
    writer.close()


def _expected(rows: list[Any], scope: tuple[str, str]) -> list[Any]:
    kind, key = scope
    index = {"all": None, "tenant": 3, "sub": 4}[kind]
    return [r for r in rows if index is None or r[index] == key]


def test_hour_buckets_are_written_when_their_hour_closes_and_read_the_same_before(
    path: Path,
) -> None:
    """Hours not closed are read from their minutes; an hour's bucket is written once, from
    its minutes, when a later hour's attempt arrives or the pruner finds it past. Across
    batches, a late attempt, a restart and a failed batch, every reader of hours (the 7-day
    window, the hourly chart, the newest error) answers what the attempts say."""
    rng = random.Random(19)
    start = T0 + 2 * 86_400
    attempts = []
    for n in range(400):
        outcome = rng.choice(["delivered", "delivered", "retry", "give_up"])
        failed = outcome != "delivered"
        attempts.append(
            attempt(
                f"d{n}",
                1,
                start + n * 4 * HOUR / 400 + rng.uniform(0, 30),
                outcome=outcome,
                status=rng.choice([500, 503, None]) if failed else 200,
                error="boom" if failed else None,
                tenant=f"t{n % 2}",
                sub=f"s{n % 5}",
                duration_ms=rng.uniform(1, 900),
            )
        )
    late = attempts.pop(30)  # in the first hour, stored in the third
    batches = [attempts[i : i + 37] for i in range(0, len(attempts), 37)]
    batches.insert(7, [late])
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    scopes = [("all", ""), ("tenant", "t1"), ("sub", "s3")]
    stored: list[Any] = []
    checked_open = 0

    def hour_rows() -> set[int]:
        return {
            r[0]
            for r in writer._conn.execute(
                "SELECT DISTINCT start FROM buckets WHERE span = ?", (HOUR,)
            )
        }

    def check(now: float) -> None:
        for scope in scopes:
            rows = _expected(stored, scope)
            expected = Bucket("")
            for r in rows:
                expected.add(r)
            assert reader.windows(*scope, now)["7d"] == window_view([expected]), scope
            chart = reader.series(*scope, now, HOUR, 24)
            by_hour: dict[int, list[int]] = {}
            for r in rows:
                if r[R_AT] < chart[0]["start"]:
                    continue
                c = by_hour.setdefault(int(r[R_AT] // HOUR) * HOUR, [0, 0])
                c[0] += 1
                c[1] += r[R_OUTCOME] == "delivered"
            assert {
                c["start"]: [c["attempts"], c["delivered"]] for c in chart if c["attempts"]
            } == by_hour
        errors = [r for r in _expected(stored, ("sub", "s3")) if r[R_OUTCOME] != "delivered"]
        newest = max(errors, key=lambda r: r[R_AT]) if errors else None
        assert reader.health(["s3"], now)["s3"]["last_error"] == (
            error_view((newest[R_AT], newest[R_STATUS], newest[R_ERROR])) if newest else None
        )

    for i, batch in enumerate(batches):
        if i == 5:  # a restart: the new writer reads where hours close from disk
            topic = _TOPICS[writer]
            writer.close()
            writer = LogWriter(path, TOPIC)
            _TOPICS[writer] = topic
        if i == 9:  # a batch that closes an hour, then fails: nothing of it stays
            before = writer._hours_from
            topic = _TOPICS.setdefault(writer, Topic())
            for a in batch:
                topic.append(a)
            for event in ("INSERT", "UPDATE"):
                writer._conn.execute(
                    f"CREATE TRIGGER fail_{event} BEFORE {event} ON positions "
                    "BEGIN SELECT RAISE(FAIL, 'no'); END"
                )
            with pytest.raises(StoreFault):
                writer.write(topic.records(writer.positions()))
            assert writer._hours_from == before  # as on disk again
            for event in ("INSERT", "UPDATE"):
                writer._conn.execute(f"DROP TRIGGER fail_{event}")
            writer.write(topic.records(writer.positions()))
        else:
            store(writer, *batch)
        stored += [attempt_row(a.to_bytes())[0] for a in batch]
        now = max(r[R_AT] for r in stored) + 1
        split = writer._hours_from
        assert split == int(now // HOUR) * HOUR  # the hour of the newest attempt is open
        assert max(hour_rows(), default=0) < split  # no bucket of an open hour yet
        checked_open += any(r[R_AT] >= split for r in stored)
        check(now)
    assert checked_open == len(batches)
    assert hour_rows() == {start + h * HOUR for h in range(3)}  # the late one's hour too
    # The pruner closes the hours past by the clock, with no later attempt.
    now = max(r[R_AT] for r in stored) + 2 * HOUR
    writer.prune(now, 30 * 86_400)
    assert hour_rows() == {start + h * HOUR for h in range(4)}
    check(now)
    # A day later the minutes are gone; the hours still hold every attempt.
    now += 86_400 + 2 * HOUR
    for _ in range(100):
        if not writer.prune(now, 30 * 86_400).more:
            break
    assert writer._conn.execute(
        "SELECT count(*) FROM buckets WHERE span = ?", (MINUTE,)
    ).fetchone() == (0,)
    check(now)
    assert reader.windows("all", "", now)["7d"]["attempts"] == 400
    reader.close()
    writer.close()


def test_a_new_stores_first_open_hour_is_kept_across_a_restart(path: Path) -> None:
    """The mark where open hours start is stored with the first batch: a writer restarted
    before any hour closed, whose next attempt is an hour later, still closes the first
    hour from its minutes instead of taking it for closed."""
    writer = LogWriter(path, TOPIC)
    store(writer, attempt("a", 1, T0 + 10), attempt("b", 1, T0 + 20))
    topic = _TOPICS[writer]
    writer.close()
    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic
    assert writer._hours_from == T0
    store(writer, attempt("c", 1, T0 + HOUR + 10))
    reader = LogReader(path)
    now = T0 + HOUR + 60
    assert reader.windows("all", "", now)["7d"]["attempts"] == 3
    assert [c["attempts"] for c in reader.series("all", "", now, HOUR, 2)] == [2, 1]
    reader.close()
    writer.close()


def test_failing_ranks_subscriptions_by_failures_in_the_last_hour(
    writer: LogWriter, reader: LogReader
) -> None:
    now = T0 + 86_400
    store(
        writer,
        attempt("a1", 1, now - 60, sub="s1", outcome="retry", status=500),
        attempt("a2", 1, now - 50, sub="s1", outcome="retry", status=502),
        attempt("a3", 1, now - 40, sub="s1"),
        attempt("b1", 1, now - 60, sub="s2", outcome="give_up", status=404),
        attempt("b2", 1, now - 30, sub="s2", outcome="give_up", status=410),
        attempt("c1", 1, now - 30, sub="s3", tenant="t2", outcome="retry", status=500),
        attempt("c2", 1, now - 20, sub="s3", tenant="t2", outcome="retry", status=500),
        attempt("c3", 1, now - 10, sub="s3", tenant="t2", outcome="retry", status=500),
        attempt("old", 1, now - 7300, sub="s4", outcome="retry", status=500),
        attempt("ok", 1, now - 10, sub="s5"),
    )
    ranked = reader.failing(None, now, limit=10)
    assert [(r["subscription_id"], r["failures"], r["attempts"]) for r in ranked] == [
        ("s3", 3, 3),
        ("s2", 2, 2),  # two failures of two beat two of three
        ("s1", 2, 3),
    ]
    assert ranked[2]["success_rate"] == round(1 / 3, 6)
    assert ranked[2]["last_error"] == {"at": now - 50, "status": 502, "error": "HTTP 502"}
    assert [r["subscription_id"] for r in reader.failing("t1", now, limit=1)] == ["s2"]


def test_health_charts_the_last_24_hours_of_each_subscription(
    writer: LogWriter, reader: LogReader
) -> None:
    now = T0 + 86_400 + 1800  # half past the hour
    store(
        writer,
        attempt("a", 1, now - 10, sub="s1"),
        attempt("b", 1, now - 3 * HOUR, sub="s1", outcome="retry", status=500, error="boom"),
        attempt("c", 1, now - 30 * HOUR, sub="s1"),  # before the chart
    )
    h = reader.health(["s1", "s2"], now)
    chart = h["s1"]["chart"]
    assert len(chart) == 24
    assert chart[-1] == {"start": T0 + 86_400, "attempts": 1, "delivered": 1}
    assert chart[-4] == {"start": T0 + 86_400 - 3 * HOUR, "attempts": 1, "delivered": 0}
    assert (h["s1"]["attempts"], h["s1"]["success_rate"]) == (2, 0.5)
    assert h["s1"]["last_error"] == {"at": now - 3 * HOUR, "status": 500, "error": "boom"}
    assert h["s2"] == {
        "attempts": 0,
        "success_rate": None,
        "chart": h["s2"]["chart"],
        "last_error": None,
    }
    # The endpoint lists' form: the same charts, no search for the newest error.
    lists = reader.health(["s1", "s2"], now, newest_error=False)
    assert lists == {s: {k: v for k, v in h[s].items() if k != "last_error"} for s in h}


def test_a_tenant_gets_only_its_own_figures(writer: LogWriter, reader: LogReader) -> None:
    store(
        writer,
        attempt("a", 1, T0 + 10, tenant="t1"),
        attempt("a", 2, T0 + 20, tenant="t1"),
        attempt("b", 1, T0 + 5, tenant="t2", sub="s9"),
    )
    assert reader.figures("t1") == {"attempts": 2, "deliveries": 1, "oldest_at": T0 + 10}
    assert reader.figures("t2") == {"attempts": 1, "deliveries": 1, "oldest_at": T0 + 5}
    assert reader.figures(None) == {"attempts": 3, "deliveries": 2, "oldest_at": T0 + 5}
    assert reader.figures("t3") == {"attempts": 0, "deliveries": 0, "oldest_at": None}


# -- retention ------------------------------------------------------------------------------


def test_pruning_removes_old_deliveries_in_bounded_batches_and_keeps_redelivered_ones(
    writer: LogWriter, reader: LogReader
) -> None:
    day = 86_400
    old = [attempt(f"old{n}", 1, T0 + n, tenant="t1" if n % 2 else "t2") for n in range(5)]
    store(
        writer,
        *old,
        attempt("kept", 1, T0 + 0.5, outcome="give_up", status=500),
        attempt("kept", 2, T0 + 29 * day, replay_id="rdl_1"),  # redelivered recently
        attempt("new", 1, T0 + 29 * day),
    )
    now = T0 + 31 * day
    batches = []
    for _ in range(50):
        result = writer.prune(now, 30 * day, limit=2)
        batches.append((result.deliveries, result.buckets))
        if not result.more:
            break
    # Two deliveries a batch (the first met "kept" and left it), then old buckets.
    assert [d for d, _ in batches[:4]] == [1, 2, 2, 0]
    assert all(d == 0 and 0 < b <= 4 for d, b in batches[3:-1])
    assert sum(b for _, b in batches) > 0
    assert sorted(read_all(reader, DeliveryQuery())) == ["kept", "new"]
    kept = reader.delivery("kept")
    assert kept is not None
    assert len(kept[1]) == 2  # a delivery is kept whole
    assert reader.delivery("old0") is None
    assert reader.figures(None) == {"attempts": 3, "deliveries": 2, "oldest_at": T0 + 0.5}
    assert reader.figures("t2") == {"attempts": 0, "deliveries": 0, "oldest_at": None}
    # Hour buckets go with the retention, minute buckets after a day.
    then = reader.windows("all", "", T0 + 29 * day + 60)
    assert (then["7d"]["attempts"], then["5m"]["attempts"]) == (2, 0)
    assert writer._conn.execute(
        "SELECT count(*) FROM buckets WHERE start < ?", (now - 30 * day - HOUR,)
    ).fetchone() == (0,)
    assert writer.prune(now, 30 * day).deliveries == 0


# -- the delivery id index ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("large", "after"),
    [
        (0, 50_000),
        (100_000, 50_000),
        (1_000_000, 141_421),
        (10_000_000, 447_213),
        (100_000_000, 1_414_213),
        (-5, 50_000),
    ],
)
def test_the_delta_level_is_merged_at_the_square_root_of_the_large_ones_size(
    large: int, after: int
) -> None:
    assert merge_after(large) == after


def key_levels(writer: LogWriter) -> tuple[int, int, int]:
    """Rows of the large level, live and pruned keys of the delta level."""
    conn = writer._conn
    large = conn.execute("SELECT count(*) FROM dkeys").fetchone()[0]
    live, gone = conn.execute(
        "SELECT coalesce(sum(live), 0), coalesce(sum(1 - live), 0) FROM dkeys_delta"
    ).fetchone()
    return large, live, gone


def tune_merges(monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    """Small thresholds for the id index (DIRECT_ROWS, MERGE_MIN_ROWS, ...), so a test's
    few deliveries go through the delta and merge; DIRECT_ROWS is 0 unless given."""
    for name, value in {"DIRECT_ROWS": 0, **values}.items():
        monkeypatch.setattr(store_module, name, value)


def test_deliveries_are_found_by_id_in_either_level_across_merges_and_pruning(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune_merges(monkeypatch, MERGE_MIN_ROWS=4, MERGE_FACTOR=1)
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    day = 86_400
    # Six old deliveries: over the threshold, so the batch merges them all.
    store(writer, *(attempt(f"old{n}", 1, T0 + n, outcome="retry", status=503) for n in range(6)))
    assert key_levels(writer) == (6, 0, 0)
    # Two new ones stay in the delta level (2 < 4).
    store(writer, *(attempt(f"new{n}", 1, T0 + 29 * day + n) for n in range(2)))
    assert key_levels(writer) == (6, 2, 0)
    # A retry of a merged delivery and of a delta one update their rows, no new ones.
    store(writer, attempt("old1", 2, T0 + 29 * day), attempt("new0", 2, T0 + 29 * day + 9))
    assert key_levels(writer) == (6, 2, 0)
    assert reader.figures(None)["deliveries"] == 8
    old1 = reader.delivery("old1")
    assert old1 is not None
    assert (old1[0]["outcome"], len(old1[1])) == ("delivered", 2)
    # Pruning leaves tombstones in the delta level until the next merge.
    while writer.prune(T0 + 31 * day, 30 * day).more:
        pass
    assert key_levels(writer) == (6, 2, 5)  # old0 and old2-5 pruned; old1 was retried
    assert [reader.delivery(f"old{n}") is None for n in range(6)] == [True, False] + [True] * 4
    # The next write goes over the threshold: the pruned keys leave the large level.
    result = writer.write([])  # nothing to write: no merge without a batch
    assert result.merged == 0
    store(writer, attempt("new2", 1, T0 + 30 * day))
    assert key_levels(writer) == (4, 0, 0)  # old1, new0, new1, new2
    for name in ("old1", "new0", "new1", "new2"):
        found = reader.delivery(name)
        assert found is not None, name
        assert found[0]["delivery_id"] == name
    assert writer._conn.execute("SELECT value FROM meta WHERE key = 'dkeys_rows'").fetchone() == (
        "4",
    )
    # A restarted writer reads the levels' sizes back and goes on merging at the same point.
    writer.close()
    writer = LogWriter(path, TOPIC)
    assert (writer._large_rows, writer._delta_rows) == (4, 0)
    writer.close()
    reader.close()


def lookups(writer: LogWriter) -> list[str]:
    """The id index lookups the writer makes from now on (statements traced)."""
    seen: list[str] = []
    writer._conn.set_trace_callback(
        lambda sql: seen.append(sql) if "FROM dkeys WHERE dkey IN" in sql else None
    )
    return seen


def test_the_key_filter_spares_new_deliveries_a_lookup_and_never_loses_a_stored_one(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of new deliveries makes no lookup; a delivery stored before (either level,
    before a restart) is still found, so its new attempt joins it instead of a second row."""
    tune_merges(monkeypatch, MERGE_MIN_ROWS=4, MERGE_FACTOR=1)
    writer = LogWriter(path, TOPIC)
    store(writer, *(attempt(f"a{n}", 1, T0 + n, outcome="retry", status=503) for n in range(6)))
    store(writer, attempt("b0", 1, T0 + 10, outcome="retry", status=503))  # in the delta
    assert key_levels(writer) == (6, 1, 0)
    topic = _TOPICS[writer]
    writer.close()
    writer = LogWriter(path, TOPIC)  # the filter is built from both levels on opening
    _TOPICS[writer] = topic
    assert writer._filter is not None
    assert writer._filter.added == 7
    seen = lookups(writer)
    store(writer, *(attempt(f"c{n}", 1, T0 + 20 + n) for n in range(3)))
    assert seen == []  # three new deliveries: ruled out by the filter alone
    store(writer, attempt("a3", 2, T0 + 30), attempt("b0", 2, T0 + 31), attempt("c1", 2, T0 + 32))
    assert len(seen) == 1  # one lookup for the batch's three stored deliveries
    reader = LogReader(path)
    assert reader.figures(None) == {"attempts": 13, "deliveries": 10, "oldest_at": T0}
    for name in ("a3", "b0", "c1"):
        found = reader.delivery(name)
        assert found is not None
        assert (found[0]["outcome"], len(found[1])) == ("delivered", 2), name
    reader.close()
    writer.close()


def test_a_closed_writer_saves_its_key_filter_for_the_next_one_alone(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing saves the filter; the next writer takes it (no build) and takes it out of
    the store, so a writer killed after that leaves none, and the one after builds its
    own from the id index, with the keys stored since."""
    writer = LogWriter(path, TOPIC)
    assert not writer.filter_loaded  # a new store: nothing saved
    store(writer, *(attempt(f"a{n}", 1, T0 + n, outcome="retry", status=503) for n in range(5)))
    topic = _TOPICS[writer]
    writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT added FROM saved_filter").fetchall() == [(5,)]
    conn.close()

    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic
    assert writer.filter_loaded
    assert writer._conn.execute("SELECT count(*) FROM saved_filter").fetchone() == (0,)
    store(
        writer, *(attempt(f"b{n}", 1, T0 + 10 + n, outcome="retry", status=503) for n in range(3))
    )
    writer._conn.close()  # killed: not closed, nothing saved

    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic
    assert not writer.filter_loaded  # built again, from both levels
    assert writer._filter is not None
    assert writer._filter.added == 8
    store(writer, attempt("b1", 2, T0 + 20), attempt("a4", 2, T0 + 21))
    reader = LogReader(path)
    assert reader.figures(None) == {"attempts": 10, "deliveries": 8, "oldest_at": T0}
    # A store that takes no more writes: closing says so and closes all the same.
    writer._conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON saved_filter BEGIN SELECT RAISE(FAIL, 'full'); END"
    )
    writer.close()
    assert "key filter not saved (full)" in caplog.text
    writer = LogWriter(path, TOPIC)
    assert not writer.filter_loaded
    writer.close()
    reader.close()


def test_a_full_key_filter_is_built_again_a_few_keys_a_batch_and_misses_none_meanwhile(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once it holds more keys than it was sized for, a new filter is built from both levels
    a bounded number of keys per batch, while merges move keys between the levels; the old
    one serves until then, and every stored delivery is found throughout."""
    tune_merges(monkeypatch, MERGE_MIN_ROWS=3, MERGE_FACTOR=1)
    monkeypatch.setattr(store_module, "FILTER_BUILD_ROWS", 2)
    # 64 bits a key: a false "maybe" is rare enough that a key missing shows.
    monkeypatch.setattr(keyfilter_module, "FULL_BITS_PER_KEY", 64)  # full at twice the keys
    monkeypatch.setattr(store_module, "filter_bits", lambda keys: 64 * 2 * max(2, keys))
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    filters = [writer._filter]
    building_batches = 0
    for n in range(30):
        batch = [attempt(f"d{n}", 1, T0 + n, outcome="retry", status=503)]
        if n >= 2:  # and a second attempt of a delivery stored two batches before
            batch.append(attempt(f"d{n - 2}", 2, T0 + n + 0.5))
        store(writer, *batch)
        if writer._filter is not filters[-1]:
            filters.append(writer._filter)
        building_batches += writer._building is not None
        assert reader.figures(None)["deliveries"] == n + 1  # no second row, ever
    assert len(filters) >= 3  # built twice again
    assert building_batches >= 4  # each over several batches
    for n in range(30):
        found = reader.delivery(f"d{n}")
        assert found is not None
        assert len(found[1]) == (2 if n < 28 else 1), n
    # The filter in use holds every key stored.
    keys = [k for (k,) in writer._conn.execute("SELECT dkey FROM dkeys")]
    keys += [k for (k,) in writer._conn.execute("SELECT dkey FROM dkeys_delta WHERE live")]
    assert len(keys) == 30
    assert writer._filter is not None
    assert all(writer._filter.may_hold(k) for k in keys)
    reader.close()
    writer.close()


@pytest.mark.parametrize(
    ("large", "ranges"), [(0, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (10_000_000, 10)]
)
def test_the_large_level_is_merged_in_ranges_of_about_a_million_keys(
    large: int, ranges: int
) -> None:
    assert merge_ranges(large) == ranges


def test_merges_take_one_key_range_per_batch_and_lose_no_key(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune_merges(monkeypatch, MERGE_MIN_ROWS=10, MERGE_FACTOR=1, MERGE_RANGE_ROWS=10)
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    names = [f"d{n}" for n in range(200)]
    store(writer, *(attempt(name, 1, T0 + n) for n, name in enumerate(names[:40])))
    assert key_levels(writer) == (40, 0, 0)  # one range while the large level was empty
    taken = set()
    for start in range(40, 200, 20):
        ranges = merge_ranges(writer._large_rows)
        index = writer._merge_next % ranges
        lo, hi = index * KEY_SPACE // ranges, (index + 1) * KEY_SPACE // ranges
        store(writer, *(attempt(n, 1, T0 + i) for i, n in enumerate(names[start : start + 20])))
        delta = [k for (k,) in writer._conn.execute("SELECT dkey FROM dkeys_delta")]
        assert not [k for k in delta if lo <= k < hi]  # this batch's range went over whole
        assert [k for k in delta if not lo <= k < hi]  # the others wait for their turn
        taken.add(index)
        large, live, _ = key_levels(writer)
        assert large + live == start + 20  # every key in one level or the other
        assert writer._delta_rows == live
        assert writer._large_rows == large
    assert len(taken) > 3  # the ranges are taken in turn
    for name in names:
        found = reader.delivery(name)
        assert found is not None, name
    reader.close()
    writer.close()


def test_the_delta_count_stays_exact_when_a_delivery_is_stored_and_pruned_between_merges(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune_merges(
        monkeypatch,
    )
    writer = LogWriter(path, TOPIC)
    day = 86_400
    store(writer, *(attempt(f"d{n}", 1, T0 + n) for n in range(4)))
    while writer.prune(T0 + 31 * day, 30 * day).more:
        pass
    assert key_levels(writer) == (0, 0, 4)  # tombstones in place of the live entries
    assert writer._delta_rows == 4
    writer.close()


def test_a_pruned_deliverys_stale_entry_never_finds_the_delivery_given_its_seq(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After everything is pruned, a restarted writer numbers from 1 again: the new
    delivery takes a pruned one's seq while the pruned one's entry is still in the large
    level (its tombstone waits for a merge), and the old id finds nothing, not the new
    row."""
    tune_merges(monkeypatch, MERGE_MIN_ROWS=3, MERGE_FACTOR=100)
    writer = LogWriter(path, TOPIC)
    store(writer, *(attempt(f"old{n}", 1, T0 + n) for n in range(3)))
    assert key_levels(writer) == (3, 0, 0)
    topic = _TOPICS[writer]
    while writer.prune(T0 + 31 * 86_400, 30 * 86_400).more:
        pass
    writer.close()
    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic
    store(writer, attempt("new", 1, T0 + 31 * 86_400))
    assert key_levels(writer) == (3, 1, 3)
    assert writer._conn.execute("SELECT seq, delivery_id FROM deliveries").fetchall() == [
        (1, "new")  # the seq old0 had
    ]
    for name in ("old0", "old1", "old2"):
        rows = writer._conn.execute(store_module.by_key_sql(1), (delivery_key(name),)).fetchall()
        assert rows == [], name
    writer.close()


def test_a_small_store_keeps_its_keys_in_the_large_level_directly(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below DIRECT_ROWS the delta would only add a second write per key: keys go to the
    large level and pruned ones leave it at once; past it, they go through the delta."""
    tune_merges(monkeypatch, DIRECT_ROWS=5)
    writer = LogWriter(path, TOPIC)
    day = 86_400
    store(writer, *(attempt(f"old{n}", 1, T0 + n) for n in range(4)))
    assert key_levels(writer) == (4, 0, 0)
    while writer.prune(T0 + 31 * day, 30 * day).more:
        pass
    assert key_levels(writer) == (0, 0, 0)  # gone from the large level, no tombstones
    store(writer, *(attempt(f"new{n}", 1, T0 + 31 * day + n) for n in range(6)))
    assert key_levels(writer) == (6, 0, 0)  # one batch: decided before it, at 0 keys
    store(writer, attempt("more", 1, T0 + 31 * day + 9))
    assert key_levels(writer) == (6, 1, 0)  # past DIRECT_ROWS: through the delta
    assert writer._conn.execute("SELECT value FROM meta WHERE key = 'dkeys_rows'").fetchone() == (
        "6",
    )
    reader = LogReader(path)
    for name in ("new0", "new5", "more"):
        assert reader.delivery(name) is not None, name
    assert reader.delivery("old0") is None
    reader.close()
    writer.close()


def test_a_version_2_store_is_upgraded_in_place_and_keeps_its_deliveries(path: Path) -> None:
    writer = LogWriter(path, TOPIC)
    store(writer, *(attempt(f"d{n}", 1, T0 + n) for n in range(30)), attempt("d3", 2, T0 + 40))
    writer.prune(T0 + 2 * HOUR, 30 * 86_400)  # every hour's bucket written, as version 2 did
    positions = writer.positions()
    topic = _TOPICS[writer]
    writer.close()
    # Version 2 as it was: the id index on ``deliveries``, no key tables.
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'hours_from'")
        conn.execute("CREATE INDEX d_key ON deliveries (dkey)")
        conn.execute("DROP TABLE dkeys")
        conn.execute("DROP TABLE dkeys_delta")
        conn.execute("DELETE FROM meta WHERE key = 'dkeys_rows'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreFault, match="follows the topic"):
        LogWriter(path, "other.attempts")  # another topic: refused, not upgraded
    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic  # the same topic, read on from the stored positions
    reader = LogReader(path)
    assert writer.positions() == positions
    assert key_levels(writer) == (30, 0, 0)
    d3 = reader.delivery("d3")
    assert d3 is not None
    assert len(d3[1]) == 2
    store(writer, attempt("d7", 2, T0 + 50, outcome="give_up", status=500))
    d7 = reader.delivery("d7")
    assert d7 is not None
    assert d7[0]["outcome"] == "give_up"
    assert reader.figures(None)["deliveries"] == 30
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert "d_key" not in names
    assert version == (str(SCHEMA_VERSION),)
    assert reader.windows("all", "", T0 + HOUR)["7d"]["attempts"] == 32  # and on to 4
    writer.close()
    reader.close()


def test_a_version_3_store_is_upgraded_in_place_with_every_hour_it_holds_closed(
    path: Path,
) -> None:
    """Version 3 wrote every hour's bucket with every batch: after the upgrade its hours
    count as closed (a late attempt adds to the hour's bucket), the next hour is open."""
    writer = LogWriter(path, TOPIC)
    store(writer, attempt("a", 1, T0 + 10), attempt("b", 1, T0 + HOUR + 10))
    writer.prune(T0 + 2 * HOUR + 5, 30 * 86_400)  # both hours' buckets written
    topic = _TOPICS[writer]
    writer.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'hours_from'")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.close()
    writer = LogWriter(path, TOPIC)
    _TOPICS[writer] = topic
    assert writer._hours_from == T0 + 2 * HOUR  # the hour after the newest bucket
    store(writer, attempt("c", 1, T0 + HOUR + 20), attempt("d", 1, T0 + 2 * HOUR + 5))
    assert writer._hours_from == T0 + 2 * HOUR
    reader = LogReader(path)
    now = T0 + 2 * HOUR + 60
    assert reader.windows("all", "", now)["7d"]["attempts"] == 4
    chart = reader.series("all", "", now, HOUR, 3)
    assert [c["attempts"] for c in chart] == [1, 2, 1]
    hour_b = writer._conn.execute(
        "SELECT attempts FROM buckets WHERE span = ? AND start = ? AND kind = 'all'",
        (HOUR, T0 + HOUR),
    ).fetchone()
    assert hour_b == (2,)  # the late attempt went into the closed hour's bucket
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == (str(SCHEMA_VERSION),)
    writer.close()
    reader.close()


# -- concurrency -----------------------------------------------------------------------------


def test_readers_in_threads_see_whole_batches_while_the_writer_writes(
    path: Path, writer: LogWriter
) -> None:
    reader = LogReader(path)
    topic = Topic()
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            figures = reader.figures(None)
            # Each batch adds 10 attempts of 10 deliveries: never a part of one.
            if figures["attempts"] % 10 or figures["attempts"] != figures["deliveries"]:
                problems.append(str(figures))

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for batch in range(30):
            start = writer.positions()
            for n in range(10):
                topic.append(attempt(f"d{batch}_{n}", 1, T0 + batch))
            writer.write(topic.records(start))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    reader.close()
    assert problems == []
