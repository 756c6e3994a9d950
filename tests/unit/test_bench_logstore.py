"""The log-store benchmark's catch-up before an index run (a real store, no broker)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from streams.log.store import DeliveryQuery, LogReader, LogWriter
from streams.tools.bench import logstore
from streams.tools.bench.logstore import prune_backlog
from tests.unit.test_log_store import T0, TOPIC, attempt, store

RETENTION = 30 * 86_400.0


def test_what_expired_since_the_fill_is_pruned_before_the_run_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "attempts.sqlite3"
    writer = LogWriter(path, TOPIC)
    # Filled at T0: three deliveries that were inside the retention then, and are past
    # it three hours later; two that are still inside it.
    store(
        writer,
        *(attempt(f"old{i}", at=T0 - RETENTION + 600 * i) for i in range(3)),
        attempt("young1", at=T0 - 86_400),
        attempt("young2", at=T0 - 60),
    )
    writer.close()

    done = prune_backlog(path, TOPIC, RETENTION, T0 + 3 * 3600)

    assert done.deliveries == 3
    assert done.buckets > 0  # their minute and hour buckets, past their keeping
    reader = LogReader(path)
    try:
        left = {d["delivery_id"] for d in reader.page(DeliveryQuery(limit=10)).data}
        saved = reader.layout()["key_filter_saved"]
    finally:
        reader.close()
    assert left == {"young1", "young2"}
    # Its writer saved the key filter, for the run's writer to load.
    assert saved == 5


def test_a_store_with_nothing_expired_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "attempts.sqlite3"
    writer = LogWriter(path, TOPIC)
    store(writer, attempt("a", at=T0 - 60), attempt("b", at=T0 - 30))
    writer.close()

    done = prune_backlog(path, TOPIC, RETENTION, T0)

    assert (done.deliveries, done.buckets) == (0, 0)


def _deliveries(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT delivery_id, first_at, last_at, outcome, attempts FROM deliveries ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_the_fixed_workload_is_the_same_in_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logstore, "FIXED_BATCH", 500)
    runs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.sqlite3"
        LogWriter(path, TOPIC).close()
        logstore.fixed(path, 2, write=True)
        runs.append(_deliveries(path))
    assert runs[0] == runs[1]
    # Two batches of at least 500 attempts: most deliveries have one attempt.
    assert 800 < len(runs[0]) <= 1000
    assert sum(row[4] for row in runs[0]) >= 1000


def test_the_fixed_workload_made_only_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logstore, "FIXED_BATCH", 500)
    path = tmp_path / "s.sqlite3"
    LogWriter(path, TOPIC).close()
    logstore.fixed(path, 2, write=False)
    assert _deliveries(path) == []
