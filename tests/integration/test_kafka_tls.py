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


class Authority:
    """A certificate authority made for one test module, and certificates it signs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            self._builder("streams test CA", self.key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.file = directory / "ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, common: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
        issuer = self.cert.subject if hasattr(self, "cert") else subject
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=1))
        )

    def issue(self, common: str, *, server: bool) -> tuple[bytes, bytes]:
        """(certificate chain PEM, unencrypted PKCS#8 key PEM) for a server or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(common, key)
        if server:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
            self.key, hashes.SHA256()
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(
            serialization.Encoding.PEM
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return chain, pem

    def broker_keystore(self) -> Path:
        chain, key = self.issue("127.0.0.1", server=True)
        keystore = self.directory / "broker-keystore.pem"
        keystore.write_bytes(key + chain)
        keystore.chmod(0o600)
        return keystore

    def client_files(self, password: str) -> tuple[Path, Path]:
        """A client certificate and its key, encrypted with ``password``."""
        chain, pem = self.issue("pipeline", server=False)
        key = serialization.load_pem_private_key(pem, None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
        cert_file, key_file = self.directory / "client.pem", self.directory / "client-key.pem"
        cert_file.write_bytes(chain)
        key_file.write_bytes(encrypted)
        key_file.chmod(0o600)
        return cert_file, key_file


def _start_broker(
    factory: pytest.TempPathFactory, name: str, *, mutual: bool
) -> Iterator[tuple[LocalKafka, Authority]]:
    if os.environ.get("CI") != "true" and not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("Java/Maven are missing to start a TLS broker")
    base = free_port_run(4)
    state = factory.mktemp(name)
    ca = Authority(state)
    own = Settings.from_env(
        {"STREAMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{base}", "STREAMS_STATE_DIR": str(state)}
    )
    broker = LocalKafka(
        own, tls_keystore=ca.broker_keystore(), tls_client_ca=ca.file if mutual else None
    )
    broker.start()
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
    """Deliver three events through a worker on ``settings``; return the worker's log."""
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
    return log.read_text(errors="replace")


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
