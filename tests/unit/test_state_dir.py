"""The worker creates its state directory, or says what to fix (issue 17, item 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.app import prepare_state_dir
from streams.config import Settings
from streams.errors import ConfigError


def test_a_missing_state_directory_is_created_with_fausts_directory(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    prepare_state_dir(Settings.from_env({"STREAMS_STATE_DIR": str(state)}))
    assert (state / "faust").is_dir()
    prepare_state_dir(Settings.from_env({"STREAMS_STATE_DIR": str(state)}))  # idempotent


def test_a_state_directory_that_cannot_be_created_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="STREAMS_STATE_DIR") as info:
        prepare_state_dir(Settings.from_env({"STREAMS_STATE_DIR": str(blocker / "state")}))
    assert str(blocker / "state") in str(info.value)
