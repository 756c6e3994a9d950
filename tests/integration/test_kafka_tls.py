"""Every client of the pipeline talks TLS to the broker when told to.

A third local broker listens with SSL beside its plaintext listener, with a
certificate for 127.0.0.1 signed by a CA made for this test. The worker
(Faust, aiokafka and librdkafka clients), the publisher, the topic admin and
the offsets reader use the SSL listener only and trust that CA through
``STREAMS_KAFKA_SSL_CAFILE``; events must be delivered end to end. Without
the CA file the broker's certificate is not trusted and the error says which
settings to check. A fourth broker requires client certificates (mutual TLS):
the same pipeline runs with ``STREAMS_KAFKA_SSL_CERTFILE``/``KEYFILE`` and an
encrypted key, and is refused without them.
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
from streams.kafka.offsets import OffsetReader, consumer_groups
from streams.kafka.topics import TopicNames, check_reachable
from tests.certs import Authority
from tests.integration.harness import free_port, start_private_broker
from tests.integration.test_delivery import deliver_three

pytestmark = pytest.mark.integration


def _start_broker(
    factory: pytest.TempPathFactory, name: str, *, mutual: bool
) -> Iterator[tuple[LocalKafka, Authority]]:
    if os.environ.get("CI") != "true" and not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("Java/Maven are missing to start a TLS broker")
    state = factory.mktemp(name)
    ca = Authority(state)

    def make(base: int) -> LocalKafka:
        own = Settings.from_env(
            {
                "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{base}",
                "STREAMS_STATE_DIR": str(factory.mktemp(f"{name}-state")),
            }
        )
        return LocalKafka(
            own, tls_keystore=ca.broker_keystore(), tls_client_ca=ca.file if mutual else None
        )

    broker = start_private_broker(make, 4)
    try:
        yield broker, ca
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Authority]]:
    yield from _start_broker(tmp_path_factory, "tls-broker", mutual=False)


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Authority]]:
    yield from _start_broker(tmp_path_factory, "mtls-broker", mutual=True)


def tls_settings(broker: LocalKafka, state: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.tls_port}",
            "STREAMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAMS_TOPIC_PREFIX": f"tls{uuid.uuid4().hex[:8]}.",
            "STREAMS_PARTITIONS": "2",
            "STREAMS_STATE_DIR": str(state),
            "STREAMS_ENV": "development",
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32",
            "STREAMS_API_PORT": str(free_port()),
            "STREAMS_APP_ID": f"tls-{uuid.uuid4().hex[:8]}",
            "STREAMS_RETRY_SCHEDULE": "1s",
            **extra,
        }
    )


def test_an_untrusted_broker_certificate_fails_with_a_clear_error(
    tls_broker: tuple[LocalKafka, Authority], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    untrusted = tls_settings(broker, tmp_path)  # no CA file: the system store lacks our CA
    with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_SECURITY_PROTOCOL"):
        check_reachable(untrusted, timeout_s=5)
    reader = OffsetReader(untrusted, timeout_s=3)
    try:
        with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_SECURITY_PROTOCOL"):
            reader.read([TopicNames(untrusted.topic_prefix).events])
    finally:
        reader.close()


def test_the_whole_pipeline_runs_over_tls(
    tls_broker: tuple[LocalKafka, Authority], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    settings = tls_settings(broker, tmp_path / "state", STREAMS_KAFKA_SSL_CAFILE=str(ca.file))
    run_pipeline(settings, tmp_path)


def run_pipeline(settings: Settings, tmp_path: Path) -> str:
    """Three events through a worker on ``settings``, then its offsets; the worker's log."""
    log = deliver_three(settings, tmp_path, "tls")
    reader = OffsetReader(settings, timeout_s=10)
    try:
        events = TopicNames(settings.topic_prefix).events
        offsets = reader.read([events], consumer_groups(settings))
    finally:
        reader.close()
    assert sum(p.high for p in offsets) == 3
    return log


KEY_PASSWORD = "key-pa55-" + uuid.uuid4().hex[:8]


def test_mutual_tls_needs_the_client_certificate(
    mtls_broker: tuple[LocalKafka, Authority], tmp_path: Path
) -> None:
    broker, ca = mtls_broker
    anonymous = tls_settings(broker, tmp_path, STREAMS_KAFKA_SSL_CAFILE=str(ca.file))
    with pytest.raises(KafkaUnavailableError, match="STREAMS_KAFKA_SECURITY_PROTOCOL"):
        check_reachable(anonymous, timeout_s=5)


def test_the_whole_pipeline_runs_over_mutual_tls(
    mtls_broker: tuple[LocalKafka, Authority], tmp_path: Path
) -> None:
    broker, ca = mtls_broker
    cert_file, key_file = ca.client_files(KEY_PASSWORD)
    settings = tls_settings(
        broker,
        tmp_path / "state",
        STREAMS_KAFKA_SSL_CAFILE=str(ca.file),
        STREAMS_KAFKA_SSL_CERTFILE=str(cert_file),
        STREAMS_KAFKA_SSL_KEYFILE=str(key_file),
        STREAMS_KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD,
    )
    log = run_pipeline(settings, tmp_path)
    assert KEY_PASSWORD not in log
