"""Every bad input to `streams publish` gets one clear line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.config import Settings
from streams.kafka.topics import create_topics

pytestmark = pytest.mark.integration

PROSPECT = {"id": "p1", "name": "Acme", "status": "qualified", "created_at": "2026-01-01T00:00:00Z"}


def publish(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STREAMS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAMS_TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "streams", "publish", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_valid_event_is_published_and_located(settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    data = tmp_path / "p.json"
    data.write_bytes(orjson.dumps(PROSPECT))
    done = publish(settings, "--type", "prospect.added", "--tenant", "t1", "--data", f"@{data}")
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["type"] == "prospect.added"
    assert out["offset"] >= 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--type", "prospect.added", "--data", '{"id": "p1"}'], "field `data.name`"),
        (["--type", "invoice.paid", "--data", "{}"], "unknown event type `invoice.paid`"),
        (["--type", "prospect.added", "--data", "@FILE_NOT_JSON"], "is not valid JSON"),
        (["--type", "prospect.added", "--data", "@/nonexistent.json"], "cannot read"),
        (["--type", "prospect.added", "--data", "[1]"], "must be a JSON object"),
        (["--type", "prospect.added", "--data", "@FILE_TOO_BIG"], "over the limit"),
    ],
)
def test_bad_input_is_one_error_line_with_what_to_fix(
    settings: Settings, tmp_path: Path, args: list[str], expected: str
) -> None:
    not_json = tmp_path / "bad.txt"
    not_json.write_text("name,status\nAcme,qualified\n")
    too_big = tmp_path / "big.json"
    too_big.write_bytes(orjson.dumps(PROSPECT | {"lead_reasoning": "x" * 300_000}))
    args = [
        a.replace("FILE_NOT_JSON", str(not_json)).replace("FILE_TOO_BIG", str(too_big))
        for a in args
    ]
    done = publish(settings, "--tenant", "t1", *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_an_unreachable_bootstrap_server_is_one_error_line(tmp_path: Path) -> None:
    bad = Settings.from_env({"STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    done = publish(
        bad, "--type", "prospect.added", "--tenant", "t1", "--data", orjson.dumps(PROSPECT).decode()
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no Kafka broker answered at 127.0.0.1:1" in lines[0]
