"""A delivery-only worker (``STREAMS_ATTEMPT_LOG_MEMORY=0``) delivers, and says where the log is.

Every worker that keeps a delivery log reads every attempt of the cluster, so
operators can run delivery workers without one. Such a worker must still
deliver and record attempts in Kafka; its log and stats routes answer 503 with
what to do, instead of an empty list that would read as "nothing happened".
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
        settings, tmp_path / "worker.log", extra_env={"STREAMS_ATTEMPT_LOG_MEMORY": "0"}
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
            assert "STREAMS_ATTEMPT_LOG_MEMORY" in error["message"]
        resp = admin.call("POST", f"/v1/deliveries/{one}/redeliver", {})
        assert resp.status_code == 503
    finally:
        worker.stop()
        receiver.stop()
