"""A real Kafka broker for the whole test session.

The broker at ``STREAMS_KAFKA_BOOTSTRAP`` is used when one answers (``.ci/run``
starts one; so does ``streams kafka start``). Otherwise the session starts its
own local broker under ``.streams-test/`` on 127.0.0.1:19192 and stops it at the
end. Without Java or Maven the integration tests skip locally, and fail in CI
(``CI=true``), where a missing broker is a broken build, not a skipped test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.kafka.local import LocalKafka
from streams.kafka.topics import check_reachable

ROOT = Path(__file__).resolve().parents[2]


def _usable(settings: Settings) -> bool:
    try:
        check_reachable(settings, timeout_s=3)
    except KafkaUnavailableError:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = Settings.from_env()
    if _usable(configured):
        yield configured.kafka_bootstrap
        return
    if os.environ.get("CI") != "true" and not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("no Kafka broker answers and Java/Maven are missing to start one")
    own = Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:19192",
            "STREAMS_STATE_DIR": str(ROOT / ".streams-test"),
        }
    )
    local = LocalKafka(own)
    local.start()
    try:
        yield own.kafka_bootstrap
    finally:
        local.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings on the session broker, with this test's own topics and state."""
    return Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "STREAMS_TOPIC_PREFIX": topic_prefix,
            "STREAMS_PARTITIONS": "3",
            "STREAMS_STATE_DIR": str(tmp_path / "state"),
            "STREAMS_ENV": "development",
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8,::1/128",
        }
    )


@pytest.fixture(scope="module")
def worker_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of this module's worker: own topics, own API port, own state."""
    from tests.integration.harness import module_worker_settings

    return module_worker_settings(kafka_bootstrap, tmp_path_factory.mktemp("worker-state"))


@pytest.fixture(scope="module")
def worker(worker_settings: Settings) -> Iterator[Any]:
    """A running `streams worker` on this module's topics, stopped after the module."""
    from streams.kafka.topics import create_topics
    from tests.integration.harness import WorkerProcess

    create_topics(worker_settings)
    proc = WorkerProcess(worker_settings, worker_settings.state_dir / "worker.log").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin(worker: Any, worker_settings: Settings) -> Any:
    from tests.integration.harness import Api

    token = (worker_settings.state_dir / "dev-admin-token").read_text().strip()
    return Api(worker.base_url, token)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.integration.harness import ReceiverProcess

    proc = ReceiverProcess(tmp_path_factory.mktemp("receiver") / "receiver.log").start()
    try:
        yield proc
    finally:
        proc.stop()
