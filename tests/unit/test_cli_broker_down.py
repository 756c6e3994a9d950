"""Every command that talks to Kafka itself says in one line that no broker answers.

With the broker stopped, ``streams dlq list`` and ``streams dlq replay --dry-run``
printed about 200 lines of librdkafka's connection errors and then a traceback
(``KafkaException: Broker transport failure``). Each command here runs as a
process (librdkafka writes to the process's stderr, below Python) against a
bootstrap port that refuses connections: a port bound on 127.0.0.1 and never
listened on, held for the whole test so that nothing else can take it. No
broker is needed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Connection refused is known at once; the commands used to wait 10 s and more.
WITHIN_S = 20.0


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        yield sock.getsockname()[1]


def run(port: int, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "STREAMS_STATE_DIR": str(tmp_path / "state"),
        "STREAMS_TOPIC_PREFIX": "down.",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list"],
        ["dlq", "replay", "--dry-run"],
        ["dlq", "replay", "--subscription", "sub_1"],
        ["dlq", "replay", "--resume", "rpl_0123456789abcdef"],
        ["topics", "create"],
        ["publish", "--type", "prospect.added", "--tenant", "t1", "--data", "{}"],
        ["worker"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_stopped_broker_is_one_error_line(
    refusing_port: int, tmp_path: Path, args: list[str]
) -> None:
    done, took = run(refusing_port, tmp_path, *args)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: no Kafka broker answered at 127.0.0.1:{refusing_port}")
    assert "Connection refused" in lines[0]
    assert "STREAMS_KAFKA_BOOTSTRAP" in lines[0]
    assert took < WITHIN_S


def test_the_monitor_shows_a_stopped_broker_in_one_line_and_no_library_noise(
    refusing_port: int, tmp_path: Path
) -> None:
    done, took = run(refusing_port, tmp_path, "monitor", "--once", "--no-api", "--interval", "0.2")
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # aiokafka's "Unable connect to ..." lines are gone
    assert lines[0].startswith(f"error: Kafka at 127.0.0.1:{refusing_port}: could not read")
    assert "Traceback" not in done.stdout
    assert took < WITHIN_S
