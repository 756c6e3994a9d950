"""Kafka TLS/SASL settings, translated for librdkafka, aiokafka and Faust (fixed vectors)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from streams.config import Settings
from streams.errors import ConfigError
from streams.kafka.security import aiokafka_kwargs, faust_credentials, librdkafka_config

SASL = {
    "STREAMS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "STREAMS_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "STREAMS_KAFKA_SASL_USERNAME": "pipeline",
    "STREAMS_KAFKA_SASL_PASSWORD": "pa55-very-secret",
}


def test_plaintext_adds_nothing() -> None:
    s = Settings.from_env({})
    assert librdkafka_config(s) == {}
    assert aiokafka_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


def test_sasl_ssl_for_every_client() -> None:
    s = Settings.from_env(SASL)
    assert librdkafka_config(s) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pipeline",
        "sasl.password": "pa55-very-secret",
    }
    kwargs = aiokafka_kwargs(s)
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pipeline",
        "sasl_plain_password": "pa55-very-secret",
    }
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (creds.username, creds.password) == ("pipeline", "pa55-very-secret")


def test_sasl_plaintext_has_no_tls() -> None:
    s = Settings.from_env({**SASL, "STREAMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert librdkafka_config(s)["security.protocol"] == "sasl_plaintext"
    assert "ssl_context" not in aiokafka_kwargs(s)
    assert faust_credentials(s).protocol.value == "SASL_PLAINTEXT"


def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    import certifi

    ca = tmp_path / "ca.pem"
    ca.write_text(Path(certifi.where()).read_text())
    s = Settings.from_env(
        {"STREAMS_KAFKA_SECURITY_PROTOCOL": "SSL", "STREAMS_KAFKA_SSL_CAFILE": str(ca)}
    )
    assert librdkafka_config(s) == {"security.protocol": "ssl", "ssl.ca.location": str(ca)}
    assert isinstance(aiokafka_kwargs(s)["ssl_context"], ssl.SSLContext)
    assert isinstance(faust_credentials(s), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"STREAMS_KAFKA_SECURITY_PROTOCOL": "tls"}, "STREAMS_KAFKA_SECURITY_PROTOCOL='tls'"),
        ({**SASL, "STREAMS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "STREAMS_KAFKA_SASL_MECHANISM"),
        ({**SASL, "STREAMS_KAFKA_SASL_PASSWORD": ""}, "needs STREAMS_KAFKA_SASL_USERNAME"),
        ({**SASL, "STREAMS_KAFKA_SASL_USERNAME": ""}, "needs STREAMS_KAFKA_SASL_USERNAME"),
        ({"STREAMS_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "STREAMS_KAFKA_SSL_CAFILE"),
        ({"STREAMS_KAFKA_SSL_CERTFILE": "/nonexistent/c.pem"}, "STREAMS_KAFKA_SSL_CERTFILE"),
    ],
)
def test_bad_security_settings_say_what_to_fix(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


def test_the_sasl_password_never_shows() -> None:
    s = Settings.from_env(SASL)
    for text in (repr(s), str(s), str(s.public_view())):
        assert "pa55-very-secret" not in text
    assert s.public_view()["STREAMS_KAFKA_SASL_PASSWORD"] == "(set)"


def _client_files(tmp_path: Path, password: str | None) -> tuple[Path, Path]:
    from tests.certs import Authority

    return Authority(tmp_path).client_files(password)


def test_a_client_certificate_reaches_every_client(tmp_path: Path) -> None:
    cert, key = _client_files(tmp_path, "k3y-pa55")
    s = Settings.from_env(
        {
            "STREAMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAMS_KAFKA_SSL_CERTFILE": str(cert),
            "STREAMS_KAFKA_SSL_KEYFILE": str(key),
            "STREAMS_KAFKA_SSL_KEY_PASSWORD": "k3y-pa55",
        }
    )
    assert librdkafka_config(s) == {
        "security.protocol": "ssl",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": "k3y-pa55",
    }
    assert isinstance(aiokafka_kwargs(s)["ssl_context"], ssl.SSLContext)
    for text in (repr(s), str(s.public_view())):
        assert "k3y-pa55" not in text


def test_a_wrong_key_password_says_what_to_check_without_showing_it(tmp_path: Path) -> None:
    cert, key = _client_files(tmp_path, "right-one")
    s = Settings.from_env(
        {
            "STREAMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAMS_KAFKA_SSL_CERTFILE": str(cert),
            "STREAMS_KAFKA_SSL_KEYFILE": str(key),
            "STREAMS_KAFKA_SSL_KEY_PASSWORD": "wrong-one",
        }
    )
    with pytest.raises(ConfigError, match="STREAMS_KAFKA_SSL_KEY_PASSWORD") as info:
        aiokafka_kwargs(s)
    assert "wrong-one" not in str(info.value)


@pytest.mark.parametrize(
    ("protocol", "files", "message"),
    [
        ("SSL", ("cert",), "both STREAMS_KAFKA_SSL_CERTFILE and STREAMS_KAFKA_SSL_KEYFILE"),
        ("SSL", ("key",), "both STREAMS_KAFKA_SSL_CERTFILE and STREAMS_KAFKA_SSL_KEYFILE"),
        ("PLAINTEXT", ("cert", "key"), "set it to SSL or SASL_SSL"),
    ],
)
def test_client_certificate_settings_must_be_complete(
    tmp_path: Path, protocol: str, files: tuple[str, ...], message: str
) -> None:
    cert, key = _client_files(tmp_path, None)
    environ = {"STREAMS_KAFKA_SECURITY_PROTOCOL": protocol}
    if "cert" in files:
        environ["STREAMS_KAFKA_SSL_CERTFILE"] = str(cert)
    if "key" in files:
        environ["STREAMS_KAFKA_SSL_KEYFILE"] = str(key)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)
