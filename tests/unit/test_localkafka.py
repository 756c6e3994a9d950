"""The local broker's pure parts."""

from __future__ import annotations

import uuid
from pathlib import Path

from streams.config import Settings
from streams.kafka.local import LocalKafka, new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    drawn = iter(
        [
            uuid.UUID(bytes=b"\xf8" + b"\x00" * 15),  # base64url "-AAAAAAAAAAAAAAAAAAAAA"
            uuid.UUID(bytes=b"\x00" * 16),
        ]
    )
    assert new_cluster_id(lambda: next(drawn)) == "AAAAAAAAAAAAAAAAAAAAAA"


def test_a_cluster_id_is_22_base64url_characters() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert set(cluster_id) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_extra_broker_config_is_written_after_the_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "STREAMS_STATE_DIR": str(tmp_path),
            "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
            "STREAMS_KAFKA_BROKER_CONFIG": "num.io.threads=4, log.retention.check.interval.ms=5000",
            "STREAMS_KAFKA_JAVA_OPTS": "-XX:+UseSerialGC  -Xss512k",
        }
    )
    assert settings.kafka_java_opts == ("-XX:+UseSerialGC", "-Xss512k")
    assert settings.public_view()["STREAMS_KAFKA_JAVA_OPTS"] == "-XX:+UseSerialGC -Xss512k"
    lines = LocalKafka(settings)._write_config().read_text().splitlines()
    # java.util.Properties keeps the last value of a key: the setting wins.
    assert "num.io.threads=4" in lines
    checks = [line for line in lines if line.startswith("log.retention.check.interval.ms=")]
    assert checks == [
        "log.retention.check.interval.ms=60000",
        "log.retention.check.interval.ms=5000",
    ]
