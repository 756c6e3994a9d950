"""SIGTERM while a slow replay runs: the worker stops promptly and the replay can go on.

Before, the worker waited for its replay threads: a replay at ``rate 0.01``
kept it alive for minutes after SIGTERM (measured here with 40 letters at
0.5/s: still running after 60 s, killed). Now the replay is interrupted between
two letters, records where it stopped in ``deliveries.dlq.replays``, and the
process exits within :data:`SHUTDOWN_BOUND_S`. The CLI then resumes it: every
letter is sent exactly once in all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config import Settings
from streams.deadletter.replay import load_summary
from streams.kafka.topics import create_topics
from tests.integration.harness import Api, WorkerProcess, free_port, settings_env
from tests.integration.test_replay_stop import park, replayed_records

pytestmark = pytest.mark.integration

#: From SIGTERM to the process's exit, with a replay running (Faust's own stop is ~1-2 s).
SHUTDOWN_BOUND_S = 15.0
LETTERS = 40


@pytest.fixture
def own_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "STREAMS_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:10]}.",
            "STREAMS_PARTITIONS": "3",
            "STREAMS_STATE_DIR": str(tmp_path / "state"),
            "STREAMS_ENV": "development",
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32",
            "STREAMS_API_PORT": str(free_port()),
            "STREAMS_APP_ID": f"streams-{uuid.uuid4().hex[:8]}",
            "STREAMS_RETRY_SCHEDULE": "1s",
        }
    )


@pytest.fixture
def worker(own_settings: Settings) -> Iterator[WorkerProcess]:
    create_topics(own_settings)
    park(own_settings, LETTERS, sub_id="sub_gone")
    proc = WorkerProcess(own_settings, own_settings.state_dir.parent / "worker.log").start()
    try:
        yield proc
    finally:
        proc.kill()


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:g}s")


def test_sigterm_interrupts_a_slow_replay_promptly_and_it_resumes_where_it_stopped(
    worker: WorkerProcess, own_settings: Settings
) -> None:
    token = (own_settings.state_dir / "dev-admin-token").read_text().strip()
    admin = Api(worker.base_url, token)
    # `exhausted` only: the worker parks each replayed letter again (no such subscription) as
    # `subscription_deleted`, and those new letters are not this replay's.
    body = {"subscription_id": "sub_gone", "reason": "exhausted", "rate": 0.5}
    started = admin.call("POST", "/v1/dlq/replay", body)
    assert started.status_code == 202, started.text
    replay_id = started.json()["replay_id"]
    assert started.json()["total"] == LETTERS

    def sent_some() -> bool:
        view = admin.call("GET", f"/v1/dlq/replays/{replay_id}").json()
        return int(view["replayed"]) >= 2

    wait_for(sent_some, 30, "the replay's first letters")
    assert worker.proc is not None
    signalled = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(SHUTDOWN_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker was still running {SHUTDOWN_BOUND_S:g}s after SIGTERM")
    took = time.monotonic() - signalled
    assert code == 0, worker.tail()
    assert took < SHUTDOWN_BOUND_S

    stored = load_summary(own_settings, replay_id)
    assert stored is not None
    assert stored.status == "interrupted"
    assert stored.stopped_at is not None
    assert 2 <= stored.replayed < LETTERS
    assert stored.message().startswith(
        f"interrupted at {stored.stopped_at} (partition:offset), {stored.replayed} of "
        f"{LETTERS} sent"
    )

    command = ["dlq", "replay", "--resume", replay_id, "--rate", "1000", "--json"]
    resumed = subprocess.run(
        [sys.executable, "-m", "streams", *command],
        env={**os.environ, **settings_env(own_settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    done = orjson.loads(resumed.stdout)
    assert (done["replay_id"], done["status"], done["replayed"]) == (replay_id, "finished", LETTERS)
    assert done["resumes"] == 1
    sent = replayed_records(own_settings, replay_id, expected=LETTERS)
    assert len(sent) == LETTERS
    assert set(sent.values()) == {1}  # none twice across the interruption


def test_sigterm_under_delivery_load_exits_cleanly_and_promptly(
    own_settings: Settings, tmp_path: Path
) -> None:
    """Requests in flight, retries due in the tiers, a DLQ listing and a replay at SIGTERM.

    The worker's Kafka output used to be closed by a service Faust stops before the
    agents and the retry tiers: what they still wrote was refused, the tier consumer
    crashed, and the worker exited with status 1 after logging CRITICAL: 3 runs of 3
    of this test before the fix.
    """
    from tests.integration.harness import ALERT, ReceiverProcess

    create_topics(own_settings)
    park(own_settings, LETTERS, sub_id="sub_gone")
    receiver = ReceiverProcess(tmp_path / "receiver.log").start()
    worker = WorkerProcess(own_settings, tmp_path / "worker.log")
    try:
        worker.start()
        token = (own_settings.state_dir / "dev-admin-token").read_text().strip()
        admin = Api(worker.base_url, token)
        behaviours: list[dict[str, Any]] = [{"latency_ms": 300}, {"status": 500}, {}]
        for n in range(6):
            admin.create(tenant_id="load", url=receiver.url(f"e{n}"), event_types=["*"])
            receiver.configure(f"e{n}", **behaviours[n % len(behaviours)])
        from streams.publish import EventPublisher

        with EventPublisher(own_settings) as publisher:
            publisher.publish_many(
                [publisher.build("alert.fired", "load", ALERT) for _ in range(300)]
            )
        wait_for(lambda: receiver.http.get("/_stats").json()["total"] >= 100, 60, "deliveries")
        body = {"subscription_id": "sub_gone", "reason": "exhausted", "rate": 0.5}
        assert admin.call("POST", "/v1/dlq/replay", body).status_code == 202
        assert worker.proc is not None
        signalled = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(SHUTDOWN_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running {SHUTDOWN_BOUND_S:g}s after SIGTERM")
        assert time.monotonic() - signalled < SHUTDOWN_BOUND_S
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert code == 0, worker.tail()
        assert '"level":"CRITICAL"' not in log
        assert "Crashed reason" not in log
    finally:
        worker.kill()
        receiver.stop()
