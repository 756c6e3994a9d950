"""Certificates for TLS tests: a CA made for one test, and what it signs."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _san(name: str) -> x509.GeneralName:
    """An IP address or DNS name for a certificate's subject alternative names."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


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

    def issue(
        self, common: str, *, server: bool, names: tuple[str, ...] | None = None
    ) -> tuple[bytes, bytes]:
        """(certificate chain PEM, unencrypted PKCS#8 key PEM) for a server or a client.

        A server certificate is for 127.0.0.1 and ``localhost``, or for the
        ``names`` given (DNS names or IP addresses) and nothing else.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(common, key)
        if server:
            sans: list[x509.GeneralName] = (
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                if names is None
                else [_san(n) for n in names]
            )
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
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

    def client_files(self, password: str | None) -> tuple[Path, Path]:
        """A client certificate and its key, encrypted with ``password`` when given."""
        chain, pem = self.issue("pipeline", server=False)
        if password:
            key = serialization.load_pem_private_key(pem, None)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            )
        cert_file, key_file = self.directory / "client.pem", self.directory / "client-key.pem"
        cert_file.write_bytes(chain)
        key_file.write_bytes(pem)
        key_file.chmod(0o600)
        return cert_file, key_file
