"""The delivery-id index in two levels (``keys`` and ``recent_keys``): lookups find a
delivery whichever level holds its key, merges move keys without losing or doubling
one, a restart mid-merge carries on, pruned keys go, and a schema-2 store migrates."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

import streams.log.store as store_module
from streams.log.store import (
    KEYS_MERGE_MAX,
    KEYS_MERGE_MIN,
    SCHEMA_VERSION,
    LogReader,
    LogWriter,
    StoreFault,
    delivery_key,
    keys_merge_threshold,
)
from tests.unit.test_log_store import T0, TOPIC, Topic, attempt


@pytest.fixture(autouse=True)
def small_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges of a few keys, in ranges of three: every path runs within a few batches."""
    monkeypatch.setattr(store_module, "KEYS_MERGE_MIN", 8)
    monkeypatch.setattr(store_module, "KEYS_MERGE_MAX", 8)
    monkeypatch.setattr(store_module, "KEYS_MERGE_CHUNK", 3)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "attempts.sqlite3"


def levels(path: Path) -> tuple[set[tuple[int, int]], ...]:
    """The key index's three tables, and the (dkey, seq) of every stored delivery."""
    conn = sqlite3.connect(path)
    try:
        out = tuple(
            set(conn.execute(f"SELECT dkey, seq FROM {table}").fetchall())  # noqa: S608
            for table in ("keys", "recent_keys", "dead_keys", "deliveries")
        )
    finally:
        conn.close()
    return out


def check_index(path: Path) -> tuple[int, int, int]:
    """Every stored delivery has its key in exactly one level, and no other key counts;
    returns the sizes of the three tables."""
    merged, recent, dead, live = levels(path)
    assert (merged - dead) | recent == live
    assert recent.isdisjoint(merged - dead)
    assert dead <= merged  # a tombstone stands only for a merged key
    return len(merged), len(recent), len(dead)


def test_the_merge_threshold_grows_with_the_square_root_of_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "KEYS_MERGE_MIN", KEYS_MERGE_MIN)
    monkeypatch.setattr(store_module, "KEYS_MERGE_MAX", KEYS_MERGE_MAX)
    assert keys_merge_threshold(0) == KEYS_MERGE_MIN == 20_000
    assert keys_merge_threshold(8_850_000) == 420_713  # sqrt(2 * 8.85e6 * 10,000)
    assert keys_merge_threshold(10**12) == KEYS_MERGE_MAX


def test_lookups_and_retries_find_deliveries_in_either_level_through_merges(
    path: Path,
) -> None:
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    topic = Topic()
    rnd = random.Random(7)
    expected: dict[str, int] = {}  # delivery -> attempts written
    seen_running = seen_recent_lookup = seen_merged_lookup = 0
    for batch in range(30):
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        for n in range(rnd.randrange(1, 6)):  # new deliveries
            d = f"d{batch}_{n}"
            topic.append(attempt(d, 1, T0 + batch, outcome="retry", status=503))
            expected[d] = 1
        for d in rnd.sample(sorted(expected), min(3, len(expected))):  # retries, any level
            expected[d] += 1
            topic.append(attempt(d, expected[d], T0 + batch + 1))
        writer.write(topic.records(start))
        check_index(path)
        if writer.merge_state()[1] is not None:
            seen_running += 1
        for d, count in expected.items():
            found = reader.delivery(d)
            assert found is not None, d
            summary, history = found
            assert summary["attempts"] == count == len(history), d
            assert summary["outcome"] == ("retry" if count == 1 else "delivered")
        keys_recent = {k for k, _ in levels(path)[1]}
        for d in expected:
            if delivery_key(d) in keys_recent:
                seen_recent_lookup += 1
            else:
                seen_merged_lookup += 1
        assert reader.delivery("absent") is None
    assert seen_running
    assert seen_recent_lookup
    assert seen_merged_lookup
    conn = sqlite3.connect(path)
    (deliveries,) = conn.execute("SELECT count(*) FROM deliveries").fetchone()
    (distinct,) = conn.execute("SELECT count(DISTINCT delivery_id) FROM deliveries").fetchone()
    conn.close()
    assert deliveries == distinct == len(expected)  # a retry never made a second summary
    writer.close()
    reader.close()


def test_a_merge_moves_every_waiting_key_one_range_per_batch(path: Path) -> None:
    writer = LogWriter(path, TOPIC)
    topic = Topic()
    for n in range(7):
        topic.append(attempt(f"a{n}", 1, T0 + n))
    writer.write(topic.records())
    assert check_index(path) == (0, 7, 0)  # below the threshold of 8: nothing moves
    assert writer.merge_state() == (7, None)
    start = {p: len(log) for p, log in enumerate(topic.logs)}
    topic.append(attempt("a7", 1, T0 + 7))
    writer.write(topic.records(start))
    assert check_index(path) == (3, 5, 0)  # the 8th starts a merge: the 3 lowest keys move
    waiting, after = writer.merge_state()
    assert waiting == 5
    assert after == sorted(k for k, _ in levels(path)[0])[-1]
    for number in range(2, 4):  # each batch moves the next range (retries: no new key)
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        topic.append(attempt("a0", number, T0 + 10 + number))
        writer.write(topic.records(start))
        assert check_index(path) == (min(8, 3 * number), max(0, 8 - 3 * number), 0)
    assert writer.merge_state() == (0, None)  # the last range reaches the largest key
    assert check_index(path) == (8, 0, 0)
    writer.close()


def test_a_writer_restarted_mid_merge_carries_on_and_loses_no_key(path: Path) -> None:
    topic = Topic()
    writer = LogWriter(path, TOPIC)
    for n in range(12):
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        topic.append(attempt(f"r{n}", 1, T0 + n))
        writer.write(topic.records(start))
        if writer.merge_state()[1] is not None:
            break
    assert writer.merge_state()[1] is not None
    merged, recent, _ = check_index(path)
    assert merged
    assert recent
    writer.close()  # as a kill would: the transaction with the last range committed

    writer = LogWriter(path, TOPIC)
    assert writer.merge_state() == (recent, None)  # counted again; starts over
    reader = LogReader(path)
    first = n + 1
    for n in range(first, first + 20):
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        topic.append(attempt(f"r{n}", 1, T0 + n))
        topic.append(attempt(f"r{n - first}", 2, T0 + n))  # a retry of an older one
        writer.write(topic.records(start))
        check_index(path)
    for n in range(first + 20):
        found = reader.delivery(f"r{n}")
        assert found is not None
        assert found[0]["attempts"] == (2 if n < 20 else 1)
    writer.close()
    reader.close()


def test_a_failed_batch_rolls_the_merge_back_with_it(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = Topic()
    writer = LogWriter(path, TOPIC)
    for n in range(8):
        topic.append(attempt(f"f{n}", 1, T0 + n))
    writer.write(topic.records())
    before = levels(path)
    start = {p: len(log) for p, log in enumerate(topic.logs)}
    topic.append(attempt("f8", 1, T0 + 8))

    merge = LogWriter._merge_keys

    def broken(self: LogWriter) -> None:
        merge(self)  # a range moved, then the batch fails
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(LogWriter, "_merge_keys", broken)
    with pytest.raises(StoreFault, match="disk is full"):
        writer.write(topic.records(start))
    assert levels(path) == before
    assert writer.merge_state() == (len(before[1]) + len(before[2]), None)
    monkeypatch.setattr(LogWriter, "_merge_keys", merge)
    writer.write(topic.records(start))
    check_index(path)
    assert LogReader(path).delivery("f8") is not None
    writer.close()


def test_pruned_keys_leave_the_recent_level_at_once_and_the_merged_one_at_the_next_merge(
    path: Path,
) -> None:
    topic = Topic()
    writer = LogWriter(path, TOPIC)
    reader = LogReader(path)
    for n in range(20):  # old ones: merged (mostly) by the batches after them
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        topic.append(attempt(f"old{n}", 1, T0 + n))
        writer.write(topic.records(start))
    merged, recent, _ = check_index(path)
    assert merged
    assert recent
    now = T0 + 40 * 86_400
    while writer.prune(now, 30 * 86_400, limit=6).more:
        check_index(path)
    merged, recent, dead = check_index(path)
    assert recent == 0  # every old one was pruned
    assert dead == merged > 0  # every merged key has its tombstone
    for n in range(20):
        assert reader.delivery(f"old{n}") is None
    # The newest were pruned too, so a seq may be given again: the old key under the same
    # seq as a new delivery must not hide it, nor its tombstone delete it.
    for n in range(40):
        start = {p: len(log) for p, log in enumerate(topic.logs)}
        topic.append(attempt(f"old{n % 20}" if n < 20 else f"new{n}", 1, now + n))
        writer.write(topic.records(start))
        check_index(path)
    for n in range(20):
        found = reader.delivery(f"old{n}")
        assert found is not None
        assert found[0]["attempts"] == 1
    merged, recent, dead = check_index(path)
    assert dead == 0  # the merges after the pruning took the tombstones
    assert merged + recent == 40
    writer.close()
    reader.close()


def test_a_schema_2_store_is_migrated_and_an_older_one_refused(path: Path) -> None:
    topic = Topic()
    writer = LogWriter(path, TOPIC)
    for n in range(5):
        topic.append(attempt(f"m{n}", 1, T0 + n))
    writer.write(topic.records())
    writer.close()
    # Back to schema 2: the index on the delivery key, no key tables.
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE INDEX d_key ON deliveries (dkey)")
        for table in ("keys", "recent_keys", "dead_keys"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()

    writer = LogWriter(path, TOPIC)
    merged, recent, dead = check_index(path)
    assert (merged, recent, dead) == (5, 0, 0)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'd_key'").fetchall()
    conn.close()
    start = {p: len(log) for p, log in enumerate(topic.logs)}
    topic.append(attempt("m0", 2, T0 + 9))
    writer.write(topic.records(start))
    found = LogReader(path).delivery("m0")
    assert found is not None
    assert found[0]["attempts"] == 2
    writer.close()

    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreFault, match="schema version 1, this version uses 3: run `streams"):
        LogWriter(path, TOPIC)
