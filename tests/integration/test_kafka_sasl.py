"""Every client of the pipeline authenticates with SASL when told to.

A second local broker listens with SASL_PLAINTEXT/PLAIN besides its plaintext
listener. The worker (Faust, aiokafka and librdkafka clients), the publisher
and the topic admin are pointed at the SASL listener only; one event must be
delivered end to end, and wrong or missing credentials must fail clearly.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.kafka.local import LocalKafka
from streams.kafka.topics import check_reachable
from tests.integration.harness import free_port, start_private_broker
from tests.integration.test_delivery import deliver_three

pytestmark = pytest.mark.integration

PASSWORD = "sasl-pa55-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    if os.environ.get("CI") != "true" and not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("Java/Maven are missing to start a SASL broker")

    def make(base: int) -> LocalKafka:
        own = Settings.from_env(
            {
                "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{base}",
                "STREAMS_STATE_DIR": str(tmp_path_factory.mktemp("sasl-broker")),
            }
        )
        return LocalKafka(own, sasl_users={"pipeline": PASSWORD})

    broker = start_private_broker(make, 3)
    try:
        yield broker
    finally:
        broker.stop()


def sasl_settings(broker: LocalKafka, state: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.sasl_port}",
            "STREAMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "STREAMS_KAFKA_SASL_MECHANISM": "PLAIN",
            "STREAMS_KAFKA_SASL_USERNAME": "pipeline",
            "STREAMS_KAFKA_SASL_PASSWORD": PASSWORD,
            "STREAMS_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}.",
            "STREAMS_PARTITIONS": "2",
            "STREAMS_STATE_DIR": str(state),
            "STREAMS_ENV": "development",
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32",
            "STREAMS_API_PORT": str(free_port()),
            "STREAMS_APP_ID": f"sasl-{uuid.uuid4().hex[:8]}",
            "STREAMS_RETRY_SCHEDULE": "1s",
            **extra,
        }
    )


def test_wrong_or_missing_credentials_fail_with_a_clear_error_and_no_password(
    sasl_broker: LocalKafka, tmp_path: Path
) -> None:
    wrong = sasl_settings(sasl_broker, tmp_path, STREAMS_KAFKA_SASL_PASSWORD="not-it")
    with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_SASL") as info:
        check_reachable(wrong, timeout_s=5)
    assert "not-it" not in str(info.value)
    plain = sasl_settings(sasl_broker, tmp_path, STREAMS_KAFKA_SECURITY_PROTOCOL="PLAINTEXT")
    with pytest.raises(KafkaUnavailableError):
        check_reachable(plain, timeout_s=5)


def test_the_whole_pipeline_runs_over_sasl(sasl_broker: LocalKafka, tmp_path: Path) -> None:
    settings = sasl_settings(sasl_broker, tmp_path / "state")
    assert PASSWORD not in deliver_three(settings, tmp_path, "sasl")
