"""`streams kafka start|status|stop` manage a real broker of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_start_status_and_stop_manage_one_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    # A broker of its own on another port and state directory, beside the session's.
    env = {
        "STREAMS_STATE_DIR": str(tmp_path / "state"),
        "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:19392",
    }
    try:
        started = streams(["kafka", "start"], env)
        assert started.returncode == 0, started.stderr
        assert "started: Kafka 4." in started.stdout
        assert "log:" in started.stdout

        again = streams(["kafka", "start"], env)
        assert again.returncode == 0
        assert again.stdout.startswith("already running")

        status = streams(["kafka", "status"], env)
        assert status.returncode == 0
        assert "127.0.0.1:19392" in status.stdout

        topics = streams(["topics", "create", "--json"], env)
        assert topics.returncode == 0, topics.stderr
    finally:
        stopped = streams(["kafka", "stop"], env)
    assert stopped.stdout.strip() == "stopped"
    after = streams(["kafka", "status"], env)
    assert after.returncode == 3
    assert "not running" in after.stdout
