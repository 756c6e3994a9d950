"""A worker starts with a state directory that does not exist yet (issue 17, item 12).

Before the fix, a production worker (admin token and secrets key set, so
nothing else had written into ``STREAMS_STATE_DIR``) printed Faust's
``FileNotFoundError`` traceback for ``state/faust`` and never served its API.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from streams.config import Secret, Settings
from streams.kafka.topics import create_topics
from tests.integration.harness import WorkerProcess, free_port, settings_env

pytestmark = pytest.mark.integration


def production(settings: Settings, state: Path) -> tuple[Settings, dict[str, str]]:
    """Production settings with their own API port and state directory ``state``."""
    chosen = dataclasses.replace(
        settings,
        env="production",
        state_dir=state,
        api_port=free_port(),
        admin_token=Secret("adm_" + "s" * 32),
    )
    extra = {
        "STREAMS_ADMIN_TOKEN": chosen.admin_token.reveal(),
        "STREAMS_SECRETS_KEY": Fernet.generate_key().decode(),
    }
    return chosen, extra


def test_a_missing_state_directory_is_created_and_the_worker_serves(
    settings: Settings, tmp_path: Path
) -> None:
    create_topics(settings)
    state = tmp_path / "not" / "yet" / "state"
    chosen, extra = production(settings, state)
    worker = WorkerProcess(chosen, tmp_path / "worker.log", extra_env=extra)
    try:
        worker.start(timeout_s=60)  # raises with the log's tail unless /healthz answers 200
    finally:
        worker.stop()
    assert (state / "faust").is_dir()
    assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")


def test_a_state_directory_that_cannot_be_made_is_one_clear_error(
    settings: Settings, tmp_path: Path
) -> None:
    create_topics(settings)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    chosen, extra = production(settings, blocker / "state")
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        env={**os.environ, **settings_env(chosen), **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "STREAMS_STATE_DIR" in done.stderr
    assert str(blocker / "state") in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
