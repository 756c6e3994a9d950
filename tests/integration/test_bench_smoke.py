"""`streams bench` at smoke size on the real broker: a throughput run and a fault run.

Each run starts its own workers and receiver, checks every (event,
subscription) pair against the receiver's ledger and the DLQ, writes its JSON
and Markdown, and leaves no process and no topic behind.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from streams.tools.bench.cli import run
from streams.tools.bench.procs import alive

pytestmark = pytest.mark.integration


def _smoke(name: str, tmp_path: Path, kafka_bootstrap: str, mp: pytest.MonkeyPatch) -> Any:
    mp.setenv("STREAMS_KAFKA_BOOTSTRAP", kafka_bootstrap)
    said: list[str] = []
    results = run(
        name,
        smoke=True,
        out_dir=tmp_path / "results",
        doc=tmp_path / "benchmarks.md",
        base_dir=tmp_path / "runs",
        say=said.append,
    )
    return results, said


def _assert_clean(results: dict[str, Any], kafka_bootstrap: str) -> None:
    run_id = Path(results["run_dir"]).name.rsplit("-", 1)[-1]
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if run_id in t], "the run's topics were not deleted"
    assert not Path(results["run_dir"]).exists(), "the run directory of a passing run is removed"


def test_throughput_smoke_delivers_every_pair_and_publishes_its_results(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, said = _smoke("throughput", tmp_path, kafka_bootstrap, monkeypatch)
    assert results["ok"], results
    checks = results["checks"]
    assert checks["expected_pairs"] == results["params"]["events"] * results["params"]["fanout"]
    assert checks["delivered_pairs"] == checks["expected_pairs"]
    assert checks["lost_pairs"] == 0
    assert checks["invalid_signatures"] == checks["webhook_id_mismatches"] == 0
    assert results["metrics"]["deliveries_per_s_steady"] > 0
    # The workers' own counters, read from their /metrics before they stopped.
    (work,) = [t for t in results["tables"] if t["title"].startswith("What the workers did")]
    row = dict(zip(work["columns"], work["rows"][0], strict=True))
    assert row["attempts"] >= checks["expected_pairs"]  # + the warm-up's
    assert row["HTTP requests"] == row["attempts"]
    assert row["skipped by the breaker"] == row["dead letters"] == 0
    assert results["ceiling"]["rps"] > 0
    assert results["machine"]["cores"] >= 1
    saved = orjson.loads((tmp_path / "results" / "throughput.json").read_bytes())
    assert saved["checks"] == checks
    assert "<!-- bench:throughput:start -->" in (tmp_path / "benchmarks.md").read_text()
    assert any("worker(s) healthy" in line for line in said)
    _assert_clean(results, kafka_bootstrap)


def test_close_mid_response_smoke_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, _ = _smoke("close-mid-response", tmp_path, kafka_bootstrap, monkeypatch)
    checks = results["checks"]
    assert results["ok"], checks
    assert checks["lost_pairs"] == 0
    assert checks["delivered_pairs"] + checks["parked_pairs"] == checks["expected_pairs"]
    # The faults really happened: cut bodies and connections closed before any answer.
    answers = checks["responses"]
    assert any(k.endswith("/close") for k in answers), answers
    assert any(k.endswith("/reset") for k in answers), answers
    _assert_clean(results, kafka_bootstrap)


def test_the_processes_of_a_failed_run_are_stopped(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario that raises midway still stops every child by its PID."""
    from streams.tools.bench import scenarios
    from streams.tools.bench.load import Bench

    started: list[int] = []

    def explode(bench: Bench) -> Any:
        scenarios.setup(bench)
        stack = bench.stack("main", workers=1)
        stack.start()
        started.extend(stack.pids)
        assert bench.receivers is not None
        started.extend(bench.receivers.pids)
        raise RuntimeError("boom")

    monkeypatch.setitem(scenarios.RUNNERS, "throughput", explode)
    monkeypatch.setenv("STREAMS_KAFKA_BOOTSTRAP", kafka_bootstrap)
    with pytest.raises(RuntimeError, match="boom"):
        run("throughput", smoke=True, base_dir=tmp_path, say=lambda _m: None)
    assert len(started) == 2
    assert not [pid for pid in started if alive(pid)]


def test_the_log_store_benchmark_runs_each_step(
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from streams.tools.bench import logstore

    monkeypatch.setenv("STREAMS_KAFKA_BOOTSTRAP", kafka_bootstrap)
    store = tmp_path / "attempts.sqlite3"
    logstore.main(["fill", "--store", str(store), "--attempts", "3000"])
    logstore.main(["query", "--store", str(store), "--samples", "20"])
    logstore.main(["disk", "--store", str(store)])
    logstore.main(["charts", "--store", str(store), "--subscriptions", "50"])
    # --default-gc: in this process, tuning the collector as a worker would outlive the test.
    write = ["write", "--store", str(store), "--batches", "2", "--batch", "500"]
    logstore.main([*write, "--warmup", "0", "--default-gc"])
    logstore.main(
        ["index", "--rate", "300", "--seconds", "6", "--store", str(store), "--default-gc"]
    )
    # The fixed workload on a copy: prepared once, then written.
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(store, copy)
    logstore.main(["fixed", "--store", str(copy), "--prepare"])
    logstore.main(["fixed", "--store", str(copy), "--batches", "1"])
    out = capsys.readouterr().out
    assert "filled" in out
    assert "delivery history" in out
    assert "MB per million attempts" in out
    assert "wrote 2 batches of 500" in out
    assert "24-hour charts of 50 subscriptions, as the endpoint lists read them:" in out
    # Both measuring steps say how fast the machine ran, and the figure at a quiet day's.
    machine = [line for line in out.splitlines() if "machine: reference loop median" in line]
    assert len(machine) == 2
    assert all("at the quiet-day speed about" in line for line in machine)
    assert all("CPython's defaults" in line for line in machine)
    indexed = next(line for line in out.splitlines() if line.startswith("indexed "))
    done, sent = (int(x.replace(",", "")) for x in indexed.split()[1:4:2])
    assert done == sent > 0
    # The store's catch-up ran apart and saved the key filter, which the indexer loaded.
    assert re.search(r"the indexer opened the store, its key filter loaded, in \d+\.\d s", out)
    assert f"prepared {copy}: PruneBacklog(" in out
    assert "wrote 1 batches of 20,000 attempts (SQLite 3." in out
    assert re.search(r"what expired since it was filled pruned \([\d,]+ deliveries", out)


def test_console_live_smoke_measures_both_workers_in_every_window(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, said = _smoke("console-live", tmp_path, kafka_bootstrap, monkeypatch)
    assert results["checks"]["lost_pairs"] == 0
    metrics = results["metrics"]
    assert metrics["poll_errors"] == 0
    assert metrics["polls"] >= results["params"]["viewers"]  # every viewer polled
    assert metrics["attempts_in_the_log"] >= results["params"]["log_fill"]
    (table,) = results["tables"]
    assert [row[:2] for row in table["rows"]] == [["A", 0], ["B", 2], ["C", 0]]
    assert all(row[2] > 0 and row[3] > 0 for row in table["rows"])  # both workers measured
    assert "viewer_cost_percent_of_a_core" in metrics
    assert any("window B" in line for line in said)
    _assert_clean(results, kafka_bootstrap)


def test_console_log_smoke_times_every_kind_of_page_on_a_filled_store(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, _ = _smoke("console-log", tmp_path, kafka_bootstrap, monkeypatch)
    assert results["ok"], results
    assert results["metrics"]["attempts_in_the_store"] >= results["params"]["log_fill"]
    (table,) = results["tables"]
    assert len(table["rows"]) == 9
    for page, requests, rows, p50, p99, _max in table["rows"]:
        assert requests == results["params"]["requests"], page
        assert rows > 0, page  # every kind of page found deliveries to show
        assert 0 < p50 <= p99, page
    _assert_clean(results, kafka_bootstrap)
