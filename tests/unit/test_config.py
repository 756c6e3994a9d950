"""Settings are read once from the environment, validated, and never print secrets."""

from __future__ import annotations

import ipaddress

import pytest

from streams.config import Secret, Settings
from streams.errors import ConfigError


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.env == "production"
    assert s.partitions == 6
    assert s.request_timeout_s == 10.0
    assert s.retention_s == 7 * 86400


def test_values_are_parsed_from_their_variables() -> None:
    s = Settings.from_env(
        {
            "STREAMS_ENV": "development",
            "STREAMS_PARTITIONS": "3",
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8, ::1/128",
            "STREAMS_REQUEST_TIMEOUT": "30s",
            "STREAMS_RETRY_SCHEDULE": "none",
        }
    )
    assert s.development
    assert s.partitions == 3
    assert s.destination_allowlist == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert s.request_timeout_s == 30.0


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("STREAMS_PARTITIONS", "zero"),
        ("STREAMS_PARTITIONS", "0"),
        ("STREAMS_API_PORT", "70000"),
        ("STREAMS_ENV", "staging"),
        ("STREAMS_REQUEST_TIMEOUT", "31s"),
        ("STREAMS_RETENTION", "forever"),
        ("STREAMS_DESTINATION_ALLOWLIST", "10.0.0.0/33"),
        ("STREAMS_RETRY_SCHEDULE", "5s,-1m"),
        ("STREAMS_TOPIC_PREFIX", "bad prefix!"),
        ("STREAMS_KAFKA_HEAP", "lots"),
        ("STREAMS_KAFKA_JAVA_OPTS", "-Xss1m UseSerialGC"),
        ("STREAMS_KAFKA_BROKER_CONFIG", "num.io.threads"),
        ("STREAMS_KAFKA_BROKER_CONFIG", "Num.IO=2"),
    ],
)
def test_a_bad_value_names_its_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: value})
    assert str(info.value).startswith(f"{var}=")


def test_secrets_never_appear_in_repr_or_the_public_view() -> None:
    s = Settings.from_env({"STREAMS_ADMIN_TOKEN": "tok-very-secret", "STREAMS_SECRETS_KEY": "k3y"})
    assert s.admin_token.reveal() == "tok-very-secret"
    for text in (repr(s), str(s), str(s.public_view())):
        assert "tok-very-secret" not in text
        assert "k3y" not in text
    assert s.public_view()["STREAMS_ADMIN_TOKEN"] == "(set)"
    assert repr(Secret("x")) == "Secret('********')"


def test_every_setting_is_documented() -> None:
    for var, _default, help_text in Settings.describe():
        assert var.startswith("STREAMS_")
        assert len(help_text) > 10
