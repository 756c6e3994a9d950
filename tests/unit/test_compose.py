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


# -- monitoring: Prometheus, Grafana, the sample receiver ---------------------------------

DEPLOY = ROOT / "deploy"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dashboard_exprs() -> list[str]:
    import json

    exprs: list[str] = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            exprs.extend(t["expr"] for t in panel.get("targets", []))
    return exprs


def test_the_stack_has_a_receiver_prometheus_and_grafana() -> None:
    services = COMPOSE["services"]
    assert services["receiver"]["command"][:2] == ["streams", "receiver"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name in ("receiver", "prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def _mounts(service: str) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts (relative to the repo)."""
    out = {}
    for volume in COMPOSE["services"][service]["volumes"]:
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            out[container] = host
    return out


def test_prometheus_scrapes_the_workers_metrics_port_and_path() -> None:
    mounts = _mounts("prometheus")
    config_path = COMPOSE["services"]["prometheus"]["command"][0].split("=", 1)[1]
    config = _load(ROOT / mounts[config_path])
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    api_port = int(COMPOSE["services"]["worker"]["environment"]["STREAMS_API_PORT"])
    targets = [
        (name, sd["port"]) for sd in job.get("dns_sd_configs", []) for name in sd["names"]
    ] + [tuple(t.rsplit(":", 1)) for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert ("worker", api_port) in [(n, int(p)) for n, p in targets]
    assert COMPOSE["services"]["worker"]["environment"]["STREAMS_METRICS"] == "on"
    # The worker serves /metrics on its API address, bound to every interface in the stack.
    assert COMPOSE["services"]["worker"]["environment"]["STREAMS_API_BIND"] == "0.0.0.0"


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard() -> None:
    mounts = _mounts("grafana")
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    (source,) = _load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    (provider,) = _load(provisioning / "dashboards" / "streams.yml")["providers"]
    assert provider["options"]["path"] in mounts
    dashboards = ROOT / mounts[provider["options"]["path"]]
    assert (dashboards / "streams.json").is_file()
    import json

    doc = json.loads((dashboards / "streams.json").read_text())
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for topic in ("throughput", "success rate", "latency", "lag", "dlq depth"):
        assert topic in titles


def test_every_metric_the_dashboard_queries_is_one_the_code_exports() -> None:
    import re

    from streams.ops.metrics import Metrics

    exported = Metrics(Settings.from_env({})).sample_names()
    exprs = _dashboard_exprs()
    assert exprs
    used = {name for expr in exprs for name in re.findall(r"\bstreams_[a-z0-9_]+", expr)}
    assert used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # The important ones are on the dashboard at all.
    for name in (
        "streams_deliveries_total",
        "streams_http_request_duration_seconds_bucket",
        "streams_publish_to_delivery_seconds_bucket",
        "streams_consumer_lag",
        "streams_dlq_depth",
        "streams_fanout_events_total",
    ):
        assert name in used
