"""A delivery-only worker (``STREAMS_DELIVERY_LOG=off``) delivers, and says where the log is.

Every log node reads every attempt of the cluster into a store of its own, so
operators run delivery workers without one. Such a worker must still deliver
and record attempts in Kafka, never read the attempts topic nor create a store;
its log and stats routes answer 503 with what to do, instead of an empty list
that would read as "nothing happened".
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from streams.config import Settings
from streams.kafka.topics import create_topics
from streams.records import delivery_id_for
from tests.integration.harness import Api, ReceiverProcess, WorkerProcess, free_port
from tests.integration.test_delivery import attempts, publish, subscribe

pytestmark = pytest.mark.integration


def test_a_worker_without_a_log_delivers_and_answers_503_on_the_log_routes(
    settings: Settings, tmp_path: Path
) -> None:
    import dataclasses

    settings = dataclasses.replace(
        settings, api_port=free_port(), app_id=f"nolog-{uuid.uuid4().hex[:8]}"
    )
    create_topics(settings)
    receiver = ReceiverProcess(tmp_path / "receiver.log").start()
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"STREAMS_DELIVERY_LOG": "off"}
    )
    try:
        worker.start()
        token = (settings.state_dir / "dev-admin-token").read_text().strip()
        admin = Api(worker.base_url, token)
        sub = subscribe(admin, receiver, "nolog")
        ids = publish(settings, "nolog", 3, "nolog")
        entries = receiver.wait_for("nolog", 3, timeout_s=60)
        assert sorted(e["event_id"] for e in entries) == sorted(ids)
        assert len(attempts(settings, sub["id"], 3)) == 3  # attempts still go to Kafka

        one = delivery_id_for(ids[0], sub["id"])
        for path in (
            "/v1/deliveries",
            f"/v1/deliveries/{one}",
            "/v1/stats",
            f"/v1/subscriptions/{sub['id']}/stats",
        ):
            resp = admin.call("GET", path)
            assert resp.status_code == 503, (path, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "unavailable"
            assert "STREAMS_DELIVERY_LOG=off" in error["message"]
            assert "--role log" in error["message"]
        resp = admin.call("POST", f"/v1/deliveries/{one}/redeliver", {})
        assert resp.status_code == 503
        assert not settings.log_path.parent.exists()  # no store: the topic was never read
    finally:
        worker.stop()
        receiver.stop()
