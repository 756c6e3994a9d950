"""Monitoring agrees with what the receiver saw: /metrics, /v1/stats, `streams monitor`.

One module worker (retry schedule 1s,2s; auto-disable after 5 failures), one
receiver. The first test makes successes, retries and a dead letter and checks
every view against the receiver's ledger; the second stops the worker, lets
lag build up, and watches it drain after the restart. They run in this order
(the second restarts the worker, which resets its in-memory counters).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.config import Settings
from streams.publish import EventPublisher
from tests.integration.harness import (
    ALERT,
    Api,
    ReceiverProcess,
    WorkerProcess,
    read_topic,
    settings_env,
)

pytestmark = pytest.mark.integration


def subscribe(admin: Api, receiver: ReceiverProcess, name: str, **behaviour: Any) -> dict[str, Any]:
    sub = admin.create(tenant_id=name, url=receiver.url(name), event_types=["*"])
    receiver.configure(name, secret=sub["signing_secret"], profile=sub["signing"], **behaviour)
    return sub


def publish(settings: Settings, tenant: str, n: int) -> None:
    with EventPublisher(settings) as pub:
        pub.publish_many([pub.build("alert.fired", tenant, ALERT) for _ in range(n)])


def samples(admin: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = admin.http.get("/metrics")
    assert resp.status_code == 200, resp.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def total(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (n, lbls), value in got.items()
        if n == name and all(dict(lbls).get(k) == v for k, v in labels.items())
    )


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s}s (last: {last!r})")


def monitor_once(settings: Settings, worker: WorkerProcess, *extra: str) -> dict[str, Any]:
    env = {**os.environ, **settings_env(settings), "STREAMS_API_URL": worker.base_url}
    env.pop("STREAMS_API_TOKEN", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "monitor",
            "--once",
            "--json",
            "--interval",
            "0.5",
            *extra,
        ],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    doc: dict[str, Any] = orjson.loads(proc.stdout)
    return doc


def stage_lag(snapshot: dict[str, Any], name: str) -> int | None:
    for row in snapshot["stages"]:
        if row["name"] == name:
            lag: int | None = row["lag"]
            return lag
    raise AssertionError(f"no stage {name}")


def test_metrics_stats_and_monitor_agree_with_the_receiver(
    admin: Api, receiver: ReceiverProcess, worker: WorkerProcess, worker_settings: Settings
) -> None:
    ok = subscribe(admin, receiver, "mon-ok")
    flaky = subscribe(admin, receiver, "mon-flaky", fail_first=2, fail_status=503)
    dead = subscribe(admin, receiver, "mon-dead", status=500)
    publish(worker_settings, "mon-ok", 10)
    publish(worker_settings, "mon-flaky", 1)
    publish(worker_settings, "mon-dead", 1)

    # What the receiver saw: 10 + 1 successes; 2 + 3 failures (retries 1s, 2s).
    assert len(receiver.wait_for("mon-ok", 10)) == 10
    assert len(receiver.wait_for("mon-flaky", 3, timeout_s=40)) == 3
    assert len(receiver.wait_for("mon-dead", 3, timeout_s=40)) == 3
    seen = receiver.ledger("mon-ok") + receiver.ledger("mon-flaky") + receiver.ledger("mon-dead")
    ok_count = sum(1 for e in seen if e["status"] == 200)
    failed_count = sum(1 for e in seen if e["status"] >= 500)
    assert (ok_count, failed_count) == (11, 5)

    # /metrics: the engine records an attempt after the response, so wait for the last one.
    got = wait_until(
        lambda: (
            (g := samples(admin))
            and total(g, "streams_deliveries_total") == ok_count + failed_count
            and total(g, "streams_dead_letters_total", reason="exhausted") == 1
            and g
        ),
        30,
        "all attempts in /metrics",
    )
    assert total(got, "streams_deliveries_total", outcome="delivered", status_class="2xx") == 11
    assert total(got, "streams_deliveries_total", outcome="retry", status_class="5xx") == 4
    assert total(got, "streams_deliveries_total", outcome="give_up", status_class="5xx") == 1
    assert total(got, "streams_attempts_total", attempt="1", tier="deliveries") == 12
    assert total(got, "streams_attempts_total", attempt="2", tier="1s") == 2
    # Attempt 3 is scheduled into the 2s tier; its jitter may hop it into the 1s tier.
    assert total(got, "streams_attempts_total", attempt="3") == 2
    assert total(got, "streams_attempts_total", tier="deliveries") == 12
    assert total(got, "streams_http_request_duration_seconds_count") == 16
    assert total(got, "streams_publish_to_delivery_seconds_count") == 11
    assert total(got, "streams_fanout_deliveries_total") == 12
    # Every record the two agents took, with its wait since it was written to Kafka.
    assert total(got, "streams_stage_wait_seconds_count", stage="deliver") == 12
    assert total(got, "streams_stage_wait_seconds_count", stage="fanout") >= 12
    assert 0 < total(got, "streams_stage_wait_seconds_sum", stage="deliver") < 12 * 30
    assert total(got, "streams_fanout_events_total") >= 12  # + the delivery.exhausted ops event
    assert total(got, "streams_subscriptions", state="enabled") == 3
    assert total(got, "streams_requests_in_flight") == 0
    # The collector ran while the worker delivered; each collection is timed.
    assert total(got, "streams_gc_pause_seconds_count", generation="0") > 0
    assert not any(
        set(dict(labels))
        - {"outcome", "status_class", "tier", "attempt", "reason", "state", "stage", "generation"}
        - {"reader"}  # one of the worker's four state readers
        - {"topic", "partition", "le"}
        for _, labels in got
    )
    # Sampled every 5 s: the DLQ holds the one dead letter, and nothing is left to read.
    got = wait_until(
        lambda: (
            (g := samples(admin))
            and total(g, "streams_dlq_depth") == 1
            and total(g, "streams_consumer_lag") == 0
            and g
        ),
        30,
        "DLQ depth 1 and no lag in /metrics",
    )
    assert total(got, "streams_retry_tier_depth") == 0

    # Prometheus needs no token; the routes are documented.
    assert httpx.get(worker.base_url + "/metrics", timeout=10).status_code == 200
    paths = admin.call("GET", "/openapi.json").json()["paths"]
    assert {"/metrics", "/v1/stats", "/v1/subscriptions/{id}/stats"} <= set(paths)

    # /v1/stats over the last 5 minutes says the same.
    stats = admin.call("GET", "/v1/stats").json()
    recent = stats["windows"]["5m"]
    assert (recent["attempts"], recent["delivered"], recent["retried"], recent["failed"]) == (
        16,
        11,
        4,
        1,
    )
    assert recent["success_rate"] == pytest.approx(11 / 16, abs=1e-6)
    assert recent["status_classes"] == {"2xx": 11, "5xx": 5}
    assert recent["latency_ms"]["p50"] is not None
    by_sub = {row["subscription_id"]: row for row in stats["failing"]}
    assert set(by_sub) == {flaky["id"], dead["id"]}
    assert by_sub[dead["id"]]["failures"] == 3
    assert by_sub[dead["id"]]["last_error"]["error"] == "HTTP 500"
    assert by_sub[dead["id"]]["consecutive_failures"] == 3
    assert by_sub[flaky["id"]]["failures"] == 2
    assert by_sub[flaky["id"]]["consecutive_failures"] == 0
    assert stats["failing"][0]["subscription_id"] == dead["id"]

    one = admin.call("GET", f"/v1/subscriptions/{dead['id']}/stats").json()
    assert one["consecutive_failures"] == 3
    assert one["last_error"] == "HTTP 500"
    assert one["windows"]["1h"]["attempts"] == 3
    assert one["windows"]["1h"]["success_rate"] == 0.0

    # A tenant token sees its own tenant only.
    token = admin.call("POST", "/v1/tokens", {"tenant_id": "mon-ok"}).json()["token"]
    tenant = admin.as_token(token)
    wait_until(lambda: tenant.call("GET", "/v1/stats").status_code == 200, 10, "token usable")
    mine = tenant.call("GET", "/v1/stats").json()
    assert mine["tenant_id"] == "mon-ok"
    assert mine["windows"]["5m"]["attempts"] == 10
    assert mine["failing"] == []
    assert tenant.call("GET", f"/v1/subscriptions/{dead['id']}/stats").status_code == 404
    assert tenant.call("GET", f"/v1/subscriptions/{ok['id']}/stats").status_code == 200
    assert tenant.call("GET", "/v1/stats", tenant_id="mon-dead").status_code == 422

    # streams monitor --once --json, from Kafka and the API.
    snap = monitor_once(worker_settings, worker)
    assert snap["kafka_error"] is None
    assert snap["dlq_depth"] == 1
    assert snap["api"]["reachable"] is True
    assert snap["api"]["success_rate_5m"] == pytest.approx(11 / 16, abs=1e-6)
    assert snap["api"]["attempts_5m"] == 16
    failing = {row["subscription_id"]: row for row in snap["api"]["failing"]}
    assert failing[dead["id"]]["last_error"] == "HTTP 500"
    assert failing[dead["id"]]["failures"] == 3
    assert stage_lag(snap, "events") == 0
    assert stage_lag(snap, "deliveries") == 0
    assert stage_lag(snap, "retry 1s") == 0
    ends = {row["name"]: row["end_offset"] for row in snap["stages"]}
    assert ends["events"] == 12
    assert ends["deliveries"] == 12
    assert ends["retry 1s"] + ends["retry 2s"] >= 4  # 4 retries, plus any hops

    # The dead letter also became a delivery.exhausted ops event under its tenant.
    records = read_topic(
        worker_settings,
        worker_settings.topic_prefix + "ops",
        expected=1,
        where=lambda m: b"delivery.exhausted" in m.value(),
    )
    (record,) = records
    assert record.key() == b"mon-dead"
    event = orjson.loads(record.value())
    assert event["data"]["subscription_id"] == dead["id"]
    assert (event["data"]["attempts"], event["data"]["last_status"]) == (3, 500)

    # The worker's log is JSON lines; the dead letter's line carries the ids; no secret leaks.
    lines = [
        orjson.loads(line)
        for line in worker.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert lines
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    dead_lines = [
        line
        for line in lines
        if line.get("subscription_id") == dead["id"] and "dead-lettered" in line["message"]
    ]
    assert dead_lines
    assert dead_lines[0]["delivery_id"].startswith("msg_")
    assert dead_lines[0]["event_id"]
    text = worker.log_path.read_text()
    for sub in (ok, flaky, dead):
        assert sub["signing_secret"] not in text
    assert token not in text


def _capture(socket_name: str) -> list[str]:
    proc = subprocess.run(
        ["tmux", "-L", socket_name, "capture-pane", "-p", "-t", "mon"],
        capture_output=True,
        timeout=10,
        check=True,
    )
    return proc.stdout.decode().rstrip("\n").split("\n")


def _events_in(lines: list[str]) -> float:
    for line in lines:
        if line.startswith("events in/s"):
            value = line.split()[2]
            return 0.0 if value == "-" else float(value.rstrip("k")) * (1000 if "k" in value else 1)
    raise AssertionError(f"no events in/s line in {lines}")


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux for a real terminal")
def test_the_live_view_fits_a_real_80x24_terminal_while_traffic_moves(
    admin: Api,
    receiver: ReceiverProcess,
    worker: WorkerProcess,
    worker_settings: Settings,
    tmp_path: Path,
) -> None:
    subscribe(admin, receiver, "mon-live")
    env = {**settings_env(worker_settings), "STREAMS_API_URL": worker.base_url}
    script = tmp_path / "monitor.sh"
    script.write_text(
        "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
        + f"\nexec {shlex.quote(sys.executable)} -m streams monitor --interval 1 --count 60\n"
    )
    socket_name = f"streams-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket_name]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "mon", "-x", "80", "-y", "24", f"sh {script}"],
        check=True,
        timeout=10,
    )
    stop = threading.Event()

    def traffic() -> None:
        with EventPublisher(worker_settings) as pub:
            for _ in range(60):  # at most ~12 s
                if stop.is_set():
                    return
                pub.publish_many([pub.build("alert.fired", "mon-live", ALERT) for _ in range(10)])
                time.sleep(0.2)

    publisher = threading.Thread(target=traffic, daemon=True)
    publisher.start()
    try:
        time.sleep(4)
        first = _capture(socket_name)
        time.sleep(3)
        second = _capture(socket_name)
    finally:
        stop.set()
        publisher.join(20)
        subprocess.run([*tmux, "kill-server"], check=False, timeout=10)
    for screen in (first, second):
        assert len(screen) <= 24
        assert all(len(line) <= 80 for line in screen), screen
        # Nothing scrolled off: the title is still the first line, the stages are there.
        assert screen[0].startswith("streams monitor"), screen
        assert any(line.startswith("stage") for line in screen), screen
        assert any("API ok" in line for line in screen), screen
    assert first != second  # the view refreshes
    assert max(_events_in(first), _events_in(second)) > 0, (first, second)
    print("\n".join(second))


def test_lag_shows_while_the_worker_is_stopped_and_drains_after_restart(
    admin: Api, receiver: ReceiverProcess, worker: WorkerProcess, worker_settings: Settings
) -> None:
    before = len(receiver.ledger("mon-ok"))
    worker.stop()
    try:
        publish(worker_settings, "mon-ok", 30)
        # The API is down with the worker: the monitor says so and still reads Kafka.
        snap = monitor_once(worker_settings, worker)
        assert snap["api"]["reachable"] is False
        assert "no API answered" in snap["api"]["error"]
        assert stage_lag(snap, "events") == 30
        assert snap["events_in_per_s"] is not None
    finally:
        worker.start()

    # The view watches the backlog drain; if it does not, it says which stage is stuck.
    lags: dict[str, int | None] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        snap = monitor_once(worker_settings, worker, "--no-api")
        lags = {row["name"]: row["lag"] for row in snap["stages"]}
        if lags["events"] == 0 and lags["deliveries"] == 0:
            break
        time.sleep(1)
    delivered = len(receiver.ledger("mon-ok")) - before
    stuck = {name: lag for name, lag in lags.items() if lag}
    assert not stuck, (
        f"the backlog did not drain within 60 s of the restart: lag {stuck}, "
        f"{delivered}/30 delivered; worker log:\n{worker.tail(15)}"
    )
    assert len(receiver.wait_for("mon-ok", before + 30, timeout_s=30)) == before + 30
    wait_until(
        lambda: (
            total(samples(admin), "streams_consumer_lag") == 0
            and total(samples(admin), "streams_offsets_sample_age_seconds") > 0
        ),
        30,
        "/metrics shows no lag after the restart",
    )
