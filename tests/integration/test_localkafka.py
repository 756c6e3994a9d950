"""`streams kafka start|status|stop` manage a real broker of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import free_port_run

pytestmark = pytest.mark.integration


def streams(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def start_on_free_ports(state: Path, tries: int = 3) -> tuple[dict[str, str], str]:
    """`streams kafka start` on two free ports (client, controller) and its stdout; other
    ports if one was taken between the check and the broker's bind (bounded: ``tries``)."""
    for attempt in range(1, tries + 1):
        env = {
            "STREAMS_STATE_DIR": str(state),
            "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port_run(2)}",
        }
        started = streams(["kafka", "start"], env)
        if started.returncode == 0:
            return env, started.stdout
        streams(["kafka", "stop"], env)
        if "in use" not in started.stderr or attempt == tries:
            raise AssertionError(f"streams kafka start failed: {started.stderr}")
    raise AssertionError("unreachable")


def test_start_status_and_stop_manage_one_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    # A broker of its own on free ports and its own state directory, beside the session's.
    # (A fixed port failed whenever anything else held it.)
    state = tmp_path / "state"
    env = {"STREAMS_STATE_DIR": str(state)}
    try:
        env, started = start_on_free_ports(state)
        assert "started: Kafka 4." in started
        assert "log:" in started

        again = streams(["kafka", "start"], env)
        assert again.returncode == 0
        assert again.stdout.startswith("already running")

        status = streams(["kafka", "status"], env)
        assert status.returncode == 0
        assert env["STREAMS_KAFKA_BOOTSTRAP"] in status.stdout

        topics = streams(["topics", "create", "--json"], env)
        assert topics.returncode == 0, topics.stderr
    finally:
        stopped = streams(["kafka", "stop"], env)
    assert stopped.stdout.strip() == "stopped"
    after = streams(["kafka", "status"], env)
    assert after.returncode == 3
    assert "not running" in after.stdout
