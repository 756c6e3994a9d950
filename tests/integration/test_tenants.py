"""Tenants against a real worker and broker: secret headers at rest, reserved tenant ids.

- A secret custom header reaches the endpoint in clear, while the record in the
  ``subscriptions`` topic and every API answer hold it only encrypted or masked.
- The platform's tenant id is refused by the API and the publisher, and an event
  produced raw under it to ``events`` is parked on ``events.invalid`` with the
  reason, while the worker keeps delivering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.errors import InvalidEventError
from streams.publish import EventPublisher
from streams.records import ParkedRecord
from tests.integration.harness import ALERT, Api, read_topic

pytestmark = pytest.mark.integration

SECRET = "k-5d1e-integration-header-value"


class Endpoint:
    """An HTTP endpoint on 127.0.0.1 that records the headers of every POST."""

    def __init__(self) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, count: int, timeout_s: float = 60.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.seen)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    ep.thread.start()
    try:
        yield ep
    finally:
        ep.server.shutdown()
        ep.server.server_close()


def test_a_secret_header_is_sent_in_clear_but_stored_and_listed_only_sealed(
    admin: Api, worker_settings: Settings, endpoint: Endpoint
) -> None:
    sub = admin.create(
        tenant_id="hdr",
        url=endpoint.url,
        event_types=["alert.fired"],
        headers=[
            {"name": "X-Api-Key", "value": SECRET},
            {"name": "X-Team", "value": "growth", "secret": False},
        ],
    )
    answers = [orjson.dumps(sub)]
    answers.append(admin.call("GET", "/v1/subscriptions", tenant_id="hdr").content)
    answers.append(admin.call("GET", f"/v1/subscriptions/{sub['id']}").content)
    for raw in answers:
        assert SECRET.encode() not in raw
    assert sub["headers"] == {"X-Team": "growth", "X-Api-Key": "********"}
    assert sub["secret_headers"] == ["X-Api-Key"]

    with EventPublisher(worker_settings) as pub:
        pub.publish("alert.fired", "hdr", ALERT, event_id="evt-hdr-1")
    (request,) = endpoint.wait(1)
    assert request["x-api-key"] == SECRET
    assert request["x-team"] == "growth"

    stored = read_topic(
        worker_settings,
        worker_settings.topic_prefix + "subscriptions",
        expected=1,
        settle_s=0.5,
        where=lambda m: m.key() == sub["id"].encode(),
    )
    assert stored
    for message in stored:
        assert SECRET.encode() not in (message.value() or b"")
        assert b'"X-Team":"growth"' in message.value()


def test_the_platform_tenant_id_is_refused_and_a_raw_event_under_it_is_parked(
    admin: Api, worker_settings: Settings
) -> None:
    for path, body in [
        ("/v1/tokens", {"tenant_id": "_platform"}),
        (
            "/v1/subscriptions",
            {"tenant_id": "_platform", "url": "http://127.0.0.1:9/in", "event_types": ["*"]},
        ),
    ]:
        resp = admin.call("POST", path, body)
        assert resp.status_code == 422, resp.text
        assert "reserved for the platform" in resp.json()["error"]["message"]
    with EventPublisher(worker_settings) as pub, pytest.raises(InvalidEventError):
        pub.publish("alert.fired", "_platform", ALERT)

    raw = orjson.dumps(
        {
            "id": "evt-platform-raw",
            "type": "alert.fired",
            "tenant_id": "_platform",
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": ALERT,
        }
    )
    producer = Producer({"bootstrap.servers": worker_settings.kafka_bootstrap})
    producer.produce(worker_settings.topic_prefix + "events", key=b"_platform", value=raw)
    assert producer.flush(10) == 0
    parked = read_topic(
        worker_settings,
        worker_settings.topic_prefix + "events.invalid",
        expected=1,
        timeout_s=60,
        where=lambda m: b"evt-platform-raw" in (m.value() or b""),
    )
    (invalid,) = [ParkedRecord(m.key(), m.value(), tuple(m.headers() or ())) for m in parked]
    assert "reserved for the platform" in invalid.reason
    assert invalid.field == "tenant_id"
    assert (invalid.key, invalid.value) == (b"_platform", raw)  # parked as it was read


def test_the_neighbours_benchmark_runs_both_sides_and_loses_nothing(
    kafka_bootstrap: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.tools.bench.cli import run

    monkeypatch.setenv("STREAMS_KAFKA_BOOTSTRAP", kafka_bootstrap)
    results = run(
        "neighbours",
        smoke=True,
        out_dir=tmp_path / "results",
        doc=tmp_path / "benchmarks.md",
        base_dir=tmp_path / "runs",
        say=lambda _m: None,
    )
    assert results["ok"], results["checks"]
    (latency, work) = results["tables"]
    assert [row[0] for row in latency["rows"]] == ["without (round 1)", "with (round 1)"]
    p = results["params"]
    bursts = int((p["duration_s"] - p["burst_s"] / 2) // p["burst_s"]) + 1
    for row in latency["rows"]:
        assert row[1] == int(p["rates"][0] * p["duration_s"])  # every quiet delivery timed
        assert row[5] == bursts * p["events"] * p["subscriptions"]  # and every flood one
        assert row[-1] == 0  # lost
    assert work["rows"][0][4] == 0  # no tenant deferral without per-tenant scheduling
    assert results["metrics"]["quiet_p99_ms_with (median of rounds)"] is not None
