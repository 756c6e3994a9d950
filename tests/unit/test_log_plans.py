"""Every query of the delivery-log store reads through an index (EXPLAIN QUERY PLAN).

Two checks. Every combination of the list's filters (scope, event type, status,
time range, cursor) reads through the index :func:`plan_index` names, bounds the
time range and cursor inside it, and needs no sort. And every statement the store
runs while writing, pruning and answering (caught with SQLite's trace callback) reads
no table of the store whole: the only full scans allowed are of the small fixed
tables (positions, meta, the last 1,000 skipped records) and the admin's unfiltered
list, which walks ``d_time`` newest first and stops after a page.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streams.log.store as store_module
from streams.log.store import (
    PAGE_INDEXES,
    Cursor,
    DeliveryQuery,
    LogReader,
    LogWriter,
    NameIds,
    by_key_sql,
    delivery_sql,
    plan_index,
)
from tests.unit.test_log_store import T0, Topic, attempt

#: Tables small by construction, which a statement may read whole.
SMALL_TABLES = {"positions", "meta", "skipped"}
#: The statements that read the delta level of the delivery id index whole: its count,
#: when the writer opens, and its keys, when a key filter is built (it holds about
#: ``merge_after`` keys).
DELTA_COUNT = "SELECT count(*) FROM dkeys_delta"
DELTA_KEYS = "SELECT dkey FROM dkeys_delta WHERE live"

FILTERS: list[dict[str, Any]] = [
    dict(
        zip(
            ("tenant_id", "subscription_id", "event_type", "status", "since", "until"),
            c,
            strict=True,
        )
    )
    for c in itertools.product(
        (None, "t1"),
        (None, "s1"),
        (None, "order.paid"),
        (None, "delivered", "failed", "retrying", "503", "204"),
        (None, T0),
        (None, T0 + 3600),
    )
]


def plan(conn: sqlite3.Connection, sql: str, args: Any = ()) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "attempts.sqlite3"
    LogWriter(path, "attempts").close()
    c = sqlite3.connect(path)
    yield c
    c.close()


@pytest.mark.parametrize("cursor", [None, Cursor(T0 + 60, 12345)])
def test_every_filter_combination_reads_its_index_in_order(
    conn: sqlite3.Connection, cursor: Cursor | None
) -> None:
    assert len(FILTERS) == 192
    for kwargs in FILTERS:
        q = DeliveryQuery(**{k: v for k, v in kwargs.items() if v is not None})
        ids = NameIds(
            tenant=1 if q.tenant_id else None,
            subscription=2 if q.subscription_id else None,
            event_type=3 if q.event_type else None,
        )
        sql, args = delivery_sql(q, ids, cursor)
        steps = plan(conn, sql, args)
        index = plan_index(q)
        where = f"{kwargs} cursor={cursor is not None}"
        assert len(steps) == 1, (where, steps)
        step = steps[0]
        assert re.match(rf"(SEARCH|SCAN) deliveries USING INDEX {index}\b", step), (where, step)
        assert "TEMP B-TREE" not in step, (where, step)
        if index != "d_time" or q.since is not None or q.until is not None or cursor:
            # Equality on every column before first_at, then the range on first_at.
            assert step.startswith("SEARCH"), (where, step)
        if q.since is not None or q.until is not None or cursor is not None:
            assert "first_at" in step, (where, step)


def test_every_index_the_list_names_exists_and_is_used(conn: sqlite3.Connection) -> None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert set(PAGE_INDEXES) <= names
    used = {plan_index(DeliveryQuery(**{k: v for k, v in f.items() if v})) for f in FILTERS}
    assert used == set(PAGE_INDEXES)


def test_no_statement_of_the_store_reads_a_table_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    connect = store_module._connect

    def traced(path: Path, *, create: bool, **kwargs: Any) -> sqlite3.Connection:
        c = connect(path, create=create, **kwargs)
        c.set_trace_callback(statements.append)
        return c

    monkeypatch.setattr(store_module, "_connect", traced)
    monkeypatch.setattr(store_module, "MERGE_MIN_ROWS", 10)  # merges happen here too
    monkeypatch.setattr(store_module, "MERGE_FACTOR", 1)
    monkeypatch.setattr(store_module, "MERGE_RANGE_ROWS", 8)  # merges by key range
    monkeypatch.setattr(store_module, "DIRECT_ROWS", 30)  # the first batch's keys directly
    path = tmp_path / "attempts.sqlite3"
    writer = LogWriter(path, "attempts")
    reader = LogReader(path)
    topic = Topic()
    for n in range(40):
        topic.append(attempt(f"d{n}", 1, T0 + n, outcome="retry", status=503, sub=f"s{n % 3}"))
        topic.append(attempt(f"d{n}", 2, T0 + n + 5))
    topic.append(b"not json", 0)
    writer.write(topic.records())
    writer.write(topic.records())  # read twice: nothing new
    for kwargs in FILTERS[::7]:
        q = DeliveryQuery(**{k: v for k, v in kwargs.items() if v is not None}, limit=5)
        page = reader.page(q)
        if page.next_cursor:
            reader.page(q, Cursor.decode(page.next_cursor))
    reader.delivery("d3")
    reader.delivery("absent")
    reader.windows("tenant", "t1", T0 + 100)
    reader.windows("all", "", T0 + 100)
    reader.failing(None, T0 + 100, 10)
    reader.failing("t1", T0 + 100, 10)
    reader.health(["s1", "s2"], T0 + 100)
    reader.figures(None)
    reader.figures("t1")
    reader.positions()
    reader.skipped()
    while writer.prune(T0 + 40 * 86_400, 30 * 86_400, limit=7).more:
        pass
    for n in range(40, 60):  # a merge that removes the pruned keys
        topic.append(attempt(f"d{n}", 1, T0 + 40 * 86_400 + n))
    assert writer.write(topic.records()).merged > 0
    writer.close()
    reader.close()

    checked = 0
    with sqlite3.connect(path) as conn:
        for sql in dict.fromkeys(statements):
            verb = sql.split(None, 1)[0].upper()
            if verb not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                continue  # PRAGMA, BEGIN, COMMIT, CREATE
            for step in plan(conn, sql):
                checked += 1
                scan = re.match(r"SCAN (\w+)(.*)", step)
                if scan and scan.group(1) not in SMALL_TABLES:
                    allowed = (scan.group(1) == "deliveries" and "USING INDEX d_time" in step) or (
                        scan.group(1) == "dkeys_delta" and sql in (DELTA_COUNT, DELTA_KEYS)
                    )
                    assert allowed, (sql, step)
                if "TEMP B-TREE" in step:
                    assert "skipped" in sql, (sql, step)
    conn.close()
    assert checked > 30


@pytest.mark.parametrize("keys", [1, 5, 500])
def test_a_lookup_by_id_searches_both_levels_of_the_id_index_by_key(
    tmp_path: Path, keys: int
) -> None:
    path = tmp_path / "attempts.sqlite3"
    LogWriter(path, "attempts").close()
    with sqlite3.connect(path) as conn:
        steps = plan(conn, by_key_sql(keys), tuple(range(keys)))
    conn.close()
    assert not [s for s in steps if s.startswith("SCAN")], steps
    for table in ("dkeys", "dkeys_delta"):
        assert any(re.match(rf"SEARCH {table} USING PRIMARY KEY \(dkey=\?", s) for s in steps), (
            steps
        )
