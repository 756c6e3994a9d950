"""The benchmark harness's pure parts: configuration errors, statistics, ledger checks, reports."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.records import DeadLetter, Delivery, delivery_id_for
from streams.tools.bench.ceiling import parse_wrk
from streams.tools.bench.config import (
    SCENARIOS,
    BenchConfigError,
    parse_rates,
    parse_rows,
    resolve,
)
from streams.tools.bench.ledger import (
    DlqState,
    DueTimes,
    LedgerState,
    LedgerTail,
    check_pairs,
    delivered,
)
from streams.tools.bench.procs import check_explicit_broker, free_port
from streams.tools.bench.report import render_section, update_doc
from streams.tools.bench.scenarios import paced_plan, summarize_collapsed
from streams.tools.bench.stats import (
    cpu_per_delivery,
    per_second,
    percentile,
    rate,
    steady_rate,
    summary,
)

# -- configuration: bad input fails at once, naming the option --------------------------


def test_unknown_scenario_names_the_choices() -> None:
    with pytest.raises(BenchConfigError, match=r"unknown scenario 'nope'.*throughput"):
        resolve("nope")


@pytest.mark.parametrize("text", ["0", "-5", "1000,0", "nan", "inf", "1e9"])
def test_impossible_rates_are_refused(text: str) -> None:
    with pytest.raises(BenchConfigError, match="impossible"):
        parse_rates(text)


def test_a_rate_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(BenchConfigError, match="not a number"):
        resolve("latency", overrides={"rate": "fast"})


def test_rates_parse_as_a_list() -> None:
    assert parse_rates("500, 1000") == (500.0, 1000.0)
    assert resolve("latency", overrides={"rate": "250,2000"}).rates == (250.0, 2000.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("workers", 0, "--workers 0"),
        ("workers", 99, "--workers 99"),
        ("events", -1, "--events -1"),
        ("receivers", 0, "--receivers 0"),
        ("duration", 0, "--duration 0"),
        ("kills", -1, "--kills -1"),
        ("retry_schedule", "soon", "--retry-schedule"),
        ("warm", -1, "--warm -1"),
        ("warm", 601, "--warm 601"),
    ],
)
def test_bad_sizes_are_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(BenchConfigError, match=message):
        resolve("throughput", overrides={key: value})


def test_a_rate_too_low_to_publish_one_event_is_refused() -> None:
    with pytest.raises(BenchConfigError, match="publishes no event"):
        resolve("latency", overrides={"rate": "1", "duration": 2, "fanout": 10})


def test_kill_worker_needs_a_survivor() -> None:
    with pytest.raises(BenchConfigError, match="--workers 2"):
        resolve("kill-worker", overrides={"workers": 1})


def test_every_scenario_resolves_at_both_sizes() -> None:
    for name in SCENARIOS:
        full = resolve(name)
        smoke = resolve(name, smoke=True)
        assert smoke.deliveries <= full.deliveries
        assert smoke.events >= 1


def test_overrides_win_over_the_scenario_size() -> None:
    params = resolve("throughput", smoke=True, overrides={"events": 7, "workers": 2})
    assert (params.events, params.workers) == (7, 2)


def test_paced_warms_the_broker_and_keeps_one_log_node() -> None:
    params = resolve("paced")
    assert (params.warm_s, params.log_nodes) == (20, 1)
    assert resolve("paced", overrides={"warm": 0}).warm_s == 0
    assert resolve("throughput").log_nodes == 0  # every worker a log node, as before


def test_a_configured_broker_that_does_not_answer_fails_at_once() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BenchConfigError, match=rf"STREAMS_KAFKA_BOOTSTRAP='127.0.0.1:{port}'"):
        check_explicit_broker({"STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, timeout_s=1)
    assert time.monotonic() - started < 10


def test_no_configured_broker_is_not_an_error_here() -> None:
    check_explicit_broker({}, timeout_s=1)  # the bench starts its own


def test_the_command_line_reports_configuration_errors_in_one_line() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "nope"])
    assert result.exit_code == 1
    assert "error: unknown scenario 'nope'" in result.output
    result = runner.invoke(cli, ["bench", "latency", "--rate", "0"])
    assert result.exit_code == 1
    assert "--rate '0': 0 is impossible" in result.output
    result = runner.invoke(cli, ["bench", "--list"])
    assert result.exit_code == 0
    assert "kill-broker" in result.output


def test_the_command_line_refuses_an_unreachable_configured_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMS_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(cli, ["bench", "throughput", "--smoke"])
    assert result.exit_code == 1
    assert "no Kafka broker answers there" in result.output


# -- statistics ---------------------------------------------------------------------------


def test_percentiles_interpolate() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99.0
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


def test_summary_scales_to_milliseconds() -> None:
    s = summary([0.001, 0.002, 0.003], scale=1000)
    assert s["count"] == 3
    assert (s["min"], s["p50"], s["max"]) == (1.0, 2.0, 3.0)
    assert summary([]) == {"count": 0}


def test_rates() -> None:
    assert rate(100, 10.0, 20.0) == 10.0
    assert rate(100, 10.0, 10.0) is None
    assert rate(0, 1.0, 2.0) is None
    times = [i / 100 for i in range(1000)]  # 100 per second for 10 s
    assert steady_rate(times) == pytest.approx(100, rel=0.01)
    assert steady_rate([1.0] * 5) is None
    assert per_second([0.1, 0.5, 1.2, 3.9], origin=0.0) == [2, 1, 0, 1]


# -- ledger ---------------------------------------------------------------------------------


def _entry(endpoint: str, event: str, sub: str, status: int | None = 200, **extra: object) -> dict:
    return {
        "endpoint": endpoint,
        "event_id": event,
        "webhook_id": delivery_id_for(event, sub),
        "attempt": 1,
        "replay": False,
        "received_at": 100.0,
        "valid": True,
        "status": status,
        "mode": "normal",
        **extra,
    }


def test_a_request_is_delivered_when_a_2xx_status_line_was_sent() -> None:
    assert delivered(_entry("a", "e", "s"))
    assert delivered(_entry("a", "e", "s", mode="close"))  # status line, then the body is cut
    assert delivered(_entry("a", "e", "s", mode="trickle"))
    assert not delivered(_entry("a", "e", "s", status=503))
    assert not delivered(_entry("a", "e", "s", status=None, mode="hang"))
    assert not delivered(_entry("a", "e", "s", mode="reset"))  # nothing was sent


def test_the_ledger_counts_pairs_duplicates_and_bad_signatures() -> None:
    state = LedgerState(endpoints={"a": "sub_a", "b": "sub_b"})
    state.add(_entry("a", "e1", "sub_a", status=503))
    state.add(_entry("a", "e1", "sub_a", received_at=101.0))
    state.add(_entry("a", "e1", "sub_a", received_at=102.0))  # a duplicate
    state.add(_entry("b", "e1", "sub_b", valid=False))
    state.add(_entry("b", "e2", "sub_a"))  # webhook-id of another subscription
    state.add(_entry("ceiling", "x", "sub_x"))  # not an endpoint of the run
    assert state.first_ok[("e1", "a")] == 101.0
    assert state.delivered_pairs == 3
    assert state.duplicate_count == 1
    assert state.invalid_signatures == 1
    assert state.webhook_id_mismatch == 1
    assert (state.requests, state.other_requests) == (5, 1)
    assert state.statuses["503/normal"] == 1


def test_the_ledger_can_be_limited_to_the_events_of_one_phase() -> None:
    state = LedgerState(endpoints={"a": "sub_a"}, events={"e1"})
    state.add(_entry("a", "e1", "sub_a"))
    state.add(_entry("a", "warm-1", "sub_a"))
    assert state.delivered_pairs == 1
    assert state.other_requests == 1


def test_every_pair_is_delivered_parked_or_lost() -> None:
    ledger = LedgerState(endpoints={"a": "sub_a", "b": "sub_b"})
    ledger.add(_entry("a", "e1", "sub_a"))
    dlq = DlqState(sub_endpoints={"sub_a": "a", "sub_b": "b"})
    parked = Delivery(
        delivery_id=delivery_id_for("e2", "sub_b"),
        event_id="e2",
        event_type="crawl.run.completed",
        tenant_id="t",
        subscription_id="sub_b",
        body="{}",
    )
    dlq.add(
        DeadLetter(
            delivery=parked.to_dict(), reason="exhausted", attempts=3, dead_lettered_at=1.0
        ).to_bytes()
    )
    dlq.add(b"not a dead letter")
    expected = [("e1", "a"), ("e2", "b"), ("e3", "a")]
    check = check_pairs(expected, ledger, dlq)
    assert (check.expected, check.delivered, check.parked, check.lost) == (3, 1, 1, 1)
    assert check.lost_sample == [("e3", "a")]
    assert check.parked_reasons == {"exhausted": 1}
    assert dlq.undecodable == 1


def test_lateness_is_measured_against_the_record_that_asked_for_the_attempt() -> None:
    due = DueTimes()
    for at in (10.0, 12.0):
        d = Delivery(
            delivery_id="msg_1",
            event_id="e",
            event_type="t",
            tenant_id="t",
            subscription_id="s",
            body="{}",
            attempt=2,
            due_at=at,
        )
        due.add(d.to_bytes())
    assert due.lateness("msg_1", 2, 12.5) == pytest.approx(0.5)  # the later record was served
    assert due.lateness("msg_1", 2, 11.0) == pytest.approx(1.0)
    assert due.lateness("msg_1", 2, 9.0) == pytest.approx(-1.0)  # early
    assert due.lateness("msg_1", 3, 20.0) is None


def test_the_ledger_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(orjson.dumps({"n": 1}) + b"\n" + b'{"n": 2')
    b.write_bytes(b"")
    tail = LedgerTail([a, b, tmp_path / "missing.jsonl"])
    got: list[dict] = []
    assert tail.poll(got.append) == 1
    with open(a, "ab") as fh:
        fh.write(b"}\nnot json\n")
    assert tail.poll(got.append) == 1
    assert [g["n"] for g in got] == [1, 2]
    assert tail.bad_lines == 1
    later = LedgerTail([a], from_end=True)
    assert later.poll(got.append) == 0


# -- reports --------------------------------------------------------------------------------


WRK = """Running 5s test @ http://127.0.0.1:1/hooks/_ceiling
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.12ms    1.01ms  20.00ms   90.00%
  Latency Distribution
     50%    6.90ms
     75%    7.50ms
     90%    8.10ms
     99%  950.00us
  45000 requests in 5.00s, 6.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   8999.50
Transfer/sec:      1.20MB
"""


def test_wrk_output_is_parsed() -> None:
    parsed = parse_wrk(WRK)
    assert parsed == {
        "rps": 9000,
        "p50_ms": 6.9,
        "p99_ms": 0.95,
        "requests": 45000,
        "non_2xx": 3,
    }


def test_profiles_are_summarised_by_function() -> None:
    raw = "\n".join(
        [
            "main (a.py:1);work (b.py:10);hash (c.py:5) 6",
            "main (a.py:1);work (b.py:12) 3",
            "main (a.py:1);idle (d.py:2) 1",
        ]
    )
    top = summarize_collapsed(raw, n=2)
    assert top["samples"] == 10
    assert top["self_pct"] == [["hash (c.py)", 60.0], ["work (b.py)", 30.0]]
    assert top["inclusive_pct"][0] == ["main (a.py)", 100.0]
    assert summarize_collapsed("") == {"samples": 0}


def _results(name: str = "throughput", ok: bool = True) -> dict:
    return {
        "scenario": name,
        "summary": "what it measures",
        "ok": ok,
        "smoke": False,
        "started_at": "2026-01-01T00:00:00Z",
        "took_s": 12.5,
        "command": "streams bench throughput",
        "targets": [{"target": ">= 3,000 deliveries/s", "measured": "2,000", "met": False}],
        "metrics": {"deliveries_per_s_steady": 2000.4, "latency_ms": {"p50": 5.0, "p99": None}},
        "tables": [{"title": "by rate", "columns": ["rate", "p99"], "rows": [[1000, 12.25]]}],
        "machine": {"cores": 2, "cpu": "x", "memory_gib": 4.0, "kafka": "4.4.0"},
        "ceiling": {"rps": 9000, "tool": "wrk", "receiver_processes": 1},
        "cpu": {"wall_s": 10.0, "workers_cores": 1.5},
        "checks": {
            "expected_pairs": 10,
            "delivered_pairs": 9,
            "parked_pairs": 1,
            "parked_reasons": {"exhausted": 1},
            "lost_pairs": 0,
            "duplicates": 2,
            "invalid_signatures": 0,
            "webhook_id_mismatches": 0,
        },
        "notes": ["a note | with a pipe"],
    }


def test_a_section_has_targets_metrics_tables_machine_and_checks() -> None:
    text = render_section(_results())
    assert text.startswith("<!-- bench:throughput:start -->")
    assert text.rstrip().endswith("<!-- bench:throughput:end -->")
    assert "| >= 3,000 deliveries/s | 2,000 | **missed** |" in text
    assert "| deliveries_per_s_steady | 2,000 |" in text
    assert "| 1,000 | 12.2 |" in text
    assert "Receiver ceiling (same run): 9,000" in text
    assert "**0 lost**" in text
    assert "- a note | with a pipe" in text


def test_updating_the_doc_replaces_only_the_scenarios_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    update_doc(doc, _results("throughput"))
    update_doc(doc, _results("latency"))
    text = doc.read_text()
    doc.write_text(text.replace("# Benchmarks", "# Benchmarks\n\nHand-written analysis."))
    update_doc(doc, _results("throughput", ok=False))
    text = doc.read_text()
    assert "Hand-written analysis." in text
    assert text.count("<!-- bench:throughput:start -->") == 1
    assert text.count("<!-- bench:latency:start -->") == 1
    assert "**checks FAILED**" in text
    assert text.index("bench:throughput:start") < text.index("bench:latency:start")


def test_worker_env_takes_valid_free_settings_only() -> None:
    from streams.tools.bench.config import parse_worker_env

    got = resolve("throughput", overrides={"worker_env": ("STREAMS_DELIVERY_LOG=off",)})
    assert got.worker_env == (("STREAMS_DELIVERY_LOG", "off"),)
    for bad, message in [
        ("DELIVERY_LOG=off", "expected STREAMS_<NAME>=<value>"),
        ("STREAMS_DELIVERY_LOG", "expected STREAMS_<NAME>=<value>"),
        ("STREAMS_APP_ID=x", "the harness sets it"),
        ("STREAMS_DELIVERY_LOG=maybe", "STREAMS_DELIVERY_LOG"),
        ("STREAMS_ATTEMPT_LOG_MEMORY=0", "STREAMS_DELIVERY_LOG=off"),  # retired: says instead
    ]:
        with pytest.raises(BenchConfigError, match=message):
            parse_worker_env([bad])


def test_cpu_per_delivery_by_role_and_in_receiver_units() -> None:
    got = cpu_per_delivery({"workers": 45.0, "receivers": 15.0, "broker": 12.5}, 60_000)
    assert got == {
        "cpu_us_per_delivery_workers": 750,
        "cpu_us_per_delivery_receivers": 250,
        "cpu_us_per_delivery_broker": 208,
        "cpu_us_per_delivery_pipeline": 958,
        "worker_cpu_per_receiver_cpu": 3.0,
    }
    # Without the broker's process the pipeline's figure is not made up from the workers'.
    assert "cpu_us_per_delivery_pipeline" not in cpu_per_delivery({"workers": 1.0}, 10)
    # No deliveries, or no receiver CPU to divide by: nothing made up.
    assert cpu_per_delivery({"workers": 1.0, "receivers": 1.0}, 0) == {}
    assert "worker_cpu_per_receiver_cpu" not in cpu_per_delivery({"workers": 1.0}, 10)
    assert "worker_cpu_per_receiver_cpu" not in cpu_per_delivery(
        {"workers": 1.0, "receivers": 0.0}, 10
    )


def test_paced_rows_parse_as_rate_and_fanout() -> None:
    assert parse_rows("1000x10, 500x1") == ((1000.0, 10), (500.0, 1))
    assert resolve("paced", overrides={"rows": "250x3"}).rows == ((250.0, 3),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1000", "is not RATExFANOUT"),
        ("1000x", "is not RATExFANOUT"),
        ("1000x-1", "is not RATExFANOUT"),
        ("1000x0", "fan-out 0 is not from 1"),
        ("0x10", "impossible"),
        ("fastx10", "not a number"),
    ],
)
def test_bad_paced_rows_are_refused(text: str, message: str) -> None:
    with pytest.raises(BenchConfigError, match=message):
        parse_rows(text)


def test_a_paced_row_too_short_to_publish_one_event_is_refused() -> None:
    with pytest.raises(BenchConfigError, match="publishes no event"):
        resolve("paced", overrides={"rows": "1x10", "duration": 5})


def test_the_new_scenarios_measure_the_broker_of_their_own() -> None:
    assert resolve("paced").private_broker
    assert resolve("fanout-1").private_broker
    assert not resolve("paced", overrides={"private_broker": False}).private_broker
    assert resolve("fanout-1").fanout == 1
    assert resolve("fanout-1").tenants == 1


def test_a_paced_fanout_1_row_is_one_tenant_with_one_endpoint() -> None:
    assert paced_plan(1, 12) == [("f1t000", "f1.t000.s000")]
    plan = paced_plan(10, 12)
    assert len(plan) == 120
    assert len({t for t, _e in plan}) == 12
    assert len({e for _t, e in plan}) == 120


def test_the_fanout_steps_microbenchmark_times_every_step_at_each_fanout() -> None:
    from streams.tools.bench.fanout_steps import measure

    got = measure(5, fanouts=(1, 3))
    assert set(got["by_fanout"]) == {1, 3}
    steps = got["by_fanout"][3]["us_per_event"]
    assert set(steps) == {"decode_validate", "match", "render", "encode_records"}
    assert all(v > 0 for v in steps.values())
    assert got["by_fanout"][3]["us_per_delivery"] == pytest.approx(
        got["by_fanout"][3]["us_per_event_total"] / 3, abs=0.1
    )
