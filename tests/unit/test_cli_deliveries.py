"""`streams deliveries` against a fake API, and `streams log` against a store on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.cli.deliveries import iso_ms, outcome_text, when
from streams.log.indexer import store_lock
from streams.log.store import SCHEMA_VERSION, LogWriter
from streams.records import Attempt
from tests.unit.test_cli_api import TOKEN, FakeApi, api, run, server, state_dir

__all__ = ["api", "server", "state_dir"]  # fixtures, used by name

ROW: dict[str, Any] = {
    "delivery_id": "msg_aaaa",
    "event_id": "evt_1",
    "event_type": "alert.fired",
    "tenant_id": "acme",
    "subscription_id": "sub_1",
    "status": 503,
    "outcome": "give_up",
    "attempts": 3,
    "first_attempt_at": 1_800_000_000.25,
    "last_attempt_at": 1_800_000_400.0,
    "last_attempt": 3,
    "last_error": "HTTP 503",
}


def test_a_duration_means_that_long_ago_and_other_times_pass_as_given() -> None:
    assert when(None) is None
    assert when("1h", now=1_800_003_600.0) == "1800000000.000"
    assert when("90s", now=100.0) == "10.000"
    assert when("2026-04-29T19:12:33Z") == "2026-04-29T19:12:33Z"  # the API checks it
    assert when("1800000000") == "1800000000"


def test_times_print_in_utc_iso_8601_to_the_millisecond() -> None:
    assert iso_ms(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"
    assert iso_ms(None) == ""
    assert outcome_text(ROW) == "failed 503"
    assert outcome_text({"outcome": "retry", "status": None}) == "retrying"
    assert outcome_text({"outcome": "delivered", "status": 204}) == "delivered 204"


def test_list_sends_the_filters_and_prints_a_table_with_the_next_cursor(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer("GET", "/v1/deliveries", 200, {"data": [ROW], "next_cursor": "c1.abc"})
    result = run(
        api.url,
        "deliveries",
        "list",
        "--subscription",
        "sub_1",
        "--status",
        "failed",
        "--event-type",
        "alert.fired",
        "--since",
        "2026-01-01T00:00:00Z",
        "--limit",
        "20",
        state_dir=state_dir,
    )
    assert result.exit_code == 0, result.output
    (seen,) = api.seen
    assert seen.query == {
        "subscription_id": "sub_1",
        "status": "failed",
        "event_type": "alert.fired",
        "since": "2026-01-01T00:00:00Z",
        "limit": "20",
    }
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["FIRST", "ATTEMPT", "(UTC)"]
    cells = [c.strip() for c in lines[1].split("  ") if c.strip()]
    assert cells == [
        "2027-01-15T08:00:00.250Z",
        "msg_aaaa",
        "failed 503",
        "3",
        "sub_1",
        "alert.fired",
        "HTTP 503",
    ]
    assert lines[-1] == "more: --cursor c1.abc"


def test_show_prints_each_attempt_in_utc_and_json_prints_the_api(
    api: FakeApi, state_dir: Path
) -> None:
    attempts = [
        {
            "attempt": 1,
            "at": 1_800_000_000.0,
            "outcome": "retry",
            "status": 503,
            "duration_ms": 12.5,
            "error": "HTTP 503",
            "response_snippet": "busy",
            "replay_id": None,
            "sent": True,
        },
        {
            "attempt": 2,
            "at": 1_800_000_005.5,
            "outcome": "retry",
            "status": None,
            "duration_ms": 0.0,
            "error": "circuit open",
            "response_snippet": "",
            "replay_id": None,
            "sent": False,
        },
        {
            "attempt": 3,
            "at": 1_800_000_400.0,
            "outcome": "delivered",
            "status": 200,
            "duration_ms": 8.0,
            "error": None,
            "response_snippet": "ok",
            "replay_id": "rdl_1",
            "sent": True,
        },
    ]
    api.answer("GET", "/v1/deliveries/msg_aaaa", 200, {**ROW, "attempts": attempts})
    result = run(api.url, "deliveries", "show", "msg_aaaa", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "status       failed 503" in result.output
    rows = [line.split() for line in result.output.splitlines() if line[:1].isdigit()]
    assert [r[:3] for r in rows] == [
        ["1", "2027-01-15T08:00:00.000Z", "retry"],
        ["2", "2027-01-15T08:00:05.500Z", "retry"],
        ["3", "2027-01-15T08:06:40.000Z", "delivered"],
    ]
    assert "(not sent)" in result.output
    assert "1800000000" not in result.output  # no epoch floats
    as_json = run(api.url, "deliveries", "show", "msg_aaaa", "--json", state_dir=state_dir)
    assert '"attempt": 3' in as_json.output


def test_redeliver_posts_and_says_how_to_follow(api: FakeApi, state_dir: Path) -> None:
    api.answer(
        "POST",
        "/v1/deliveries/msg_aaaa/redeliver",
        202,
        {"delivery_id": "msg_aaaa", "replay_id": "rdl_9", "status": "queued"},
    )
    result = run(api.url, "deliveries", "redeliver", "msg_aaaa", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "queued msg_aaaa again (rdl_9)" in result.output
    assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_503_from_a_worker_without_a_log_is_one_clear_line(api: FakeApi, state_dir: Path) -> None:
    api.answer(
        "GET",
        "/v1/deliveries",
        503,
        {"error": {"code": "unavailable", "message": "this worker does not serve the log"}},
    )
    result = run(api.url, "deliveries", "list", state_dir=state_dir)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: the API answered 503: this worker does not serve the log"
    ]


# -- streams log --------------------------------------------------------------------------


def store_env(tmp_path: Path) -> dict[str, str]:
    return {"STREAMS_LOG_DIR": str(tmp_path / "log"), "STREAMS_STATE_DIR": str(tmp_path)}


def test_log_status_prints_what_the_store_holds(tmp_path: Path) -> None:
    path = tmp_path / "log" / "attempts.sqlite3"
    writer = LogWriter(path, "attempts")
    a = Attempt(
        delivery_id="msg_1",
        event_id="e",
        event_type="a.b",
        tenant_id="t",
        subscription_id="s",
        attempt=1,
        at=1_800_000_000.0,
        duration_ms=1.0,
        outcome="delivered",
    )
    writer.write([(0, 0, a.to_bytes()), (0, 1, b"junk")])
    writer.close()
    result = CliRunner().invoke(cli, ["log", "status"], env=store_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "attempts    1 of 1 deliveries" in result.output
    assert "oldest      2027-01-15T08:00:00Z" in result.output
    assert "positions   0:2" in result.output
    assert "skipped     0:1  not JSON" in result.output
    assert (
        f"schema      {SCHEMA_VERSION}; id index: 1 keys merged, 0 waiting "
        "(merged a range per batch from 50000)"
    ) in result.output
    as_json = CliRunner().invoke(cli, ["log", "status", "--json"], env=store_env(tmp_path))
    assert as_json.exit_code == 0, as_json.output  # partition numbers as JSON keys too
    view = json.loads(as_json.output)
    assert view["positions"] == {"0": 2}
    assert (view["schema_version"], view["id_index"]) == (
        SCHEMA_VERSION,
        {"merged": 1, "waiting": 0, "merge_at": 50_000},
    )
    # The attempt's hour is open; the writer closed cleanly, so its key filter is saved.
    assert (view["hours_open_from"], view["key_filter_saved"]) == (1_800_000_000, 1)
    assert (
        "statistics  hours before 2027-01-15T08:00:00Z written; later ones read from their minutes"
    ) in result.output
    assert "key filter  saved by the last log node to stop cleanly (1 keys)" in result.output
    # A log node that starts takes it: none saved while it runs (or after it is killed).
    LogWriter(tmp_path / "log" / "attempts.sqlite3", "attempts")._conn.close()
    again = CliRunner().invoke(cli, ["log", "status"], env=store_env(tmp_path))
    assert "key filter  none saved: a log node builds it" in again.output


def test_log_status_without_a_store_says_how_one_is_made(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["log", "status"], env=store_env(tmp_path))
    assert result.exit_code == 1
    assert "a log node creates it when it starts" in result.output


def test_log_rebuild_refuses_while_a_log_node_holds_the_store(tmp_path: Path) -> None:
    with store_lock(tmp_path / "log" / "attempts.sqlite3"):
        result = CliRunner().invoke(cli, ["log", "rebuild", "--yes"], env=store_env(tmp_path))
    assert result.exit_code == 1
    assert "in use by process" in result.output
    assert "indexing" not in result.output  # said before anything started


@pytest.mark.parametrize("answer", ["n\n", "\n"])
def test_log_rebuild_asks_before_deleting_a_store(tmp_path: Path, answer: str) -> None:
    LogWriter(tmp_path / "log" / "attempts.sqlite3", "attempts").close()
    result = CliRunner().invoke(cli, ["log", "rebuild"], env=store_env(tmp_path), input=answer)
    assert result.exit_code == 1
    assert "delete" in result.output
    assert (tmp_path / "log" / "attempts.sqlite3").exists()
