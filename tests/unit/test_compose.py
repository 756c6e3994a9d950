"""docker-compose.yml describes the same system the code runs (it cannot run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streams.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KNOWN_VARS = {var for var, _default, _help in Settings.describe()}


def test_the_stack_has_a_kraft_kafka_from_the_official_image() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka


def test_the_worker_and_topic_init_use_the_streams_command_and_kafka_service() -> None:
    services = COMPOSE["services"]
    assert services["topics"]["command"] == ["streams", "topics", "create"]
    assert services["worker"]["command"] == ["streams", "worker"]
    assert services["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("topics", "worker"):
        env = services[name]["environment"]
        assert env["STREAMS_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_every_streams_variable_in_the_stack_is_one_the_code_reads() -> None:
    for name, service in COMPOSE["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("STREAMS_"):
                assert var in KNOWN_VARS, f"{name}: {var} is not a setting of streams.config"


def test_secrets_are_required_from_the_environment_not_written_in_the_file() -> None:
    env = COMPOSE["services"]["worker"]["environment"]
    for var in ("STREAMS_ADMIN_TOKEN", "STREAMS_SECRETS_KEY"):
        assert env[var].startswith("${" + var + ":?")


def test_the_api_port_is_published_on_loopback_and_matches_the_setting() -> None:
    worker = COMPOSE["services"]["worker"]
    port = worker["environment"]["STREAMS_API_PORT"]
    assert f"127.0.0.1:{port}:{port}" in worker["ports"]
