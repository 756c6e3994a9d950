"""Every client of the pipeline talks TLS to the broker when told to.

A third local broker listens with SSL beside its plaintext listener, with a
certificate for 127.0.0.1 signed by a CA made for this test. The worker
(Faust, aiokafka and librdkafka clients), the publisher, the topic admin and
the offsets reader use the SSL listener only and trust that CA through
``STREAMS_KAFKA_SSL_CAFILE``; events must be delivered end to end. Without
the CA file the broker's certificate is not trusted and the error says which
settings to check.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.localkafka import LocalKafka
from streams.offsets import OffsetReader, consumer_groups
from streams.topics import TopicNames, check_reachable, create_topics
from tests.integration.harness import Api, ReceiverProcess, WorkerProcess, free_port, free_port_run
from tests.integration.test_delivery import publish, subscribe

pytestmark = pytest.mark.integration


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_keystore(directory: Path) -> tuple[Path, Path]:
    """A CA certificate (PEM) and the broker's keystore: its PKCS#8 key and certificate chain."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("streams test CA"))
        .issuer_name(_name("streams test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore = directory / "broker-keystore.pem"
    keystore.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    keystore.chmod(0o600)
    return ca_file, keystore


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Path]]:
    if os.environ.get("CI") != "true" and not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("Java/Maven are missing to start a TLS broker")
    base = free_port_run(4)
    state = tmp_path_factory.mktemp("tls-broker")
    ca_file, keystore = make_ca_and_keystore(state)
    own = Settings.from_env(
        {"STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{base}", "STREAMS_STATE_DIR": str(state)}
    )
    broker = LocalKafka(own, tls_keystore=keystore)
    broker.start()
    try:
        yield broker, ca_file
    finally:
        broker.stop()


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
    tls_broker: tuple[LocalKafka, Path], tmp_path: Path
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
    tls_broker: tuple[LocalKafka, Path], tmp_path: Path
) -> None:
    broker, ca_file = tls_broker
    settings = tls_settings(broker, tmp_path / "state", STREAMS_KAFKA_SSL_CAFILE=str(ca_file))
    check_reachable(settings)
    create_topics(settings)
    log = tmp_path / "worker.log"
    receiver = ReceiverProcess(tmp_path / "receiver.log").start()
    worker = WorkerProcess(settings, log).start()
    try:
        token = (settings.state_dir / "dev-admin-token").read_text().strip()
        admin = Api(worker.base_url, token)
        subscribe(admin, receiver, "tls")
        ids = publish(settings, "tls", 3, "tls")
        entries = receiver.wait_for("tls", 3, timeout_s=60)
        assert sorted(e["event_id"] for e in entries) == sorted(ids)
        assert all(e["valid"] is True for e in entries)
    finally:
        worker.stop()
        receiver.stop()
    reader = OffsetReader(settings, timeout_s=10)
    try:
        events = TopicNames(settings.topic_prefix).events
        offsets = reader.read([events], consumer_groups(settings))
    finally:
        reader.close()
    assert sum(p.high for p in offsets) == 3
