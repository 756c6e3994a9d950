"""The delivery log, DLQ replay (CLI and API), redeliver, and re-enable with parked replay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from streams.config import Settings
from tests.integration.harness import Api, ReceiverProcess, settings_env
from tests.integration.test_delivery import publish, subscribe

pytestmark = pytest.mark.integration


def streams_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for_log(
    admin: Api, sub_id: str, outcome: str, timeout_s: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = admin.call("GET", "/v1/deliveries", subscription_id=sub_id).json()["data"]
        if rows and all(r["outcome"] == outcome for r in rows):
            return rows
        time.sleep(0.3)
    return rows


def test_an_exhausted_delivery_is_replayed_once_with_its_webhook_id_then_only_with_force(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "replayme", retry_schedule="none", behaviour={"status": 500})
    publish(worker_settings, "replayme", 1, "rp")
    first = receiver.wait_for("replayme", 1)
    assert len(first) == 1
    rows = wait_for_log(admin, sub["id"], "give_up")
    assert [(r["status"], r["attempts"]) for r in rows] == [(500, 1)]

    listed = streams_cli(worker_settings, "dlq", "list", "--subscription", sub["id"], "--json")
    assert listed.returncode == 0, listed.stderr
    letters = orjson.loads(listed.stdout)
    assert [(x["reason"], x["delivery_id"]) for x in letters] == [
        ("exhausted", rows[0]["delivery_id"])
    ]

    dry = streams_cli(
        worker_settings, "dlq", "replay", "--subscription", sub["id"], "--dry-run", "--json"
    )
    assert orjson.loads(dry.stdout)["matched"] == 1
    time.sleep(1)
    assert len(receiver.ledger("replayme")) == 1  # a dry run sends nothing

    receiver.configure("replayme", secret=sub["signing_secret"], status=200)
    done = streams_cli(worker_settings, "dlq", "replay", "--subscription", sub["id"], "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["replayed"] == 1
    entries = receiver.wait_for("replayme", 2)
    assert len(entries) == 2
    assert entries[1]["webhook_id"] == entries[0]["webhook_id"]
    assert entries[1]["replay"] is True
    assert entries[1]["valid"] is True

    again = streams_cli(worker_settings, "dlq", "replay", "--subscription", sub["id"])
    assert "skipped 1 already replayed" in again.stdout
    time.sleep(1.5)
    assert len(receiver.ledger("replayme")) == 2
    forced = streams_cli(
        worker_settings, "dlq", "replay", "--subscription", sub["id"], "--force", "--json"
    )
    assert orjson.loads(forced.stdout)["replayed"] == 1
    assert len(receiver.wait_for("replayme", 3)) == 3


def test_the_delivery_log_shows_every_attempt_and_redeliver_resends_the_same_body(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "logged", behaviour={"fail_first": 1, "fail_status": 503})
    publish(worker_settings, "logged", 1, "lg")
    assert len(receiver.wait_for("logged", 2)) == 2
    rows = wait_for_log(admin, sub["id"], "delivered")
    assert len(rows) == 1
    detail = admin.call("GET", f"/v1/deliveries/{rows[0]['delivery_id']}").json()
    assert [(a["attempt"], a["status"], a["outcome"]) for a in detail["attempts"]] == [
        (1, 503, "retry"),
        (2, 200, "delivered"),
    ]
    assert detail["attempts"][0]["response_snippet"] == "failed"
    filtered = admin.call(
        "GET", "/v1/deliveries", subscription_id=sub["id"], status="delivered"
    ).json()
    assert len(filtered["data"]) == 1
    assert admin.call("GET", "/v1/deliveries", status="nonsense").status_code == 422

    resp = admin.call("POST", f"/v1/deliveries/{rows[0]['delivery_id']}/redeliver")
    assert resp.status_code == 202, resp.text
    entries = receiver.wait_for("logged", 3)
    assert len(entries) == 3
    assert entries[2]["webhook_id"] == entries[0]["webhook_id"]
    assert entries[2]["replay"] is True
    assert entries[2]["event_id"] == entries[0]["event_id"]


def test_deliveries_parked_while_disabled_are_replayed_after_re_enabling(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "paused")
    assert (
        admin.call(
            "POST", f"/v1/subscriptions/{sub['id']}/disable", {"reason": "deploy"}
        ).status_code
        == 200
    )
    publish(worker_settings, "paused", 3, "pz")
    deadline = time.monotonic() + 20
    parked = 0
    while time.monotonic() < deadline and parked < 3:
        parked = len(admin.call("GET", "/v1/dlq", subscription_id=sub["id"]).json()["data"])
        time.sleep(0.3)
    assert parked == 3
    assert receiver.ledger("paused") == []
    view = admin.call("POST", f"/v1/subscriptions/{sub['id']}/enable").json()
    assert view["state"] == "enabled"
    assert view["parked"]["count"] == 3
    replay = admin.call(
        "POST", "/v1/dlq/replay", {"subscription_id": sub["id"], "reason": "subscription_disabled"}
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["matched"] == 3
    entries = receiver.wait_for("paused", 3)
    assert len(entries) == 3
    assert all(e["replay"] for e in entries)
    status = admin.call("GET", f"/v1/dlq/replays/{replay.json()['replay_id']}").json()
    assert status["replayed"] == 3


def test_a_tenant_token_sees_only_its_own_dead_letters_and_deliveries(
    admin: Api, worker_settings: Settings
) -> None:
    token = admin.call("POST", "/v1/tokens", {"tenant_id": "nobody"}).json()["token"]
    tenant = admin.as_token(token)
    assert tenant.call("GET", "/v1/dlq").json()["data"] == []
    assert tenant.call("GET", "/v1/deliveries").json()["data"] == []
    assert tenant.call("GET", "/v1/dlq", tenant_id="replayme").status_code == 422
    assert tenant.call("POST", "/v1/deliveries/msg_nope/redeliver").status_code == 404


def test_a_replay_started_through_the_api_is_cancelled_by_the_cli_and_resumed(
    admin: Api, worker_settings: Settings
) -> None:
    from tests.integration.test_replay_stop import park

    park(worker_settings, 6, sub_id="sub_cancelme")
    body = {"subscription_id": "sub_cancelme", "reason": "exhausted", "rate": 0.2}
    started = admin.call("POST", "/v1/dlq/replay", body)
    assert started.status_code == 202, started.text
    replay_id = started.json()["replay_id"]
    deadline = time.monotonic() + 30
    while admin.call("GET", f"/v1/dlq/replays/{replay_id}").json()["replayed"] < 1:
        assert time.monotonic() < deadline, "the replay's first letter"
        time.sleep(0.2)
    env = {
        "STREAMS_API_URL": str(admin.http.base_url).rstrip("/"),
        "STREAMS_API_TOKEN": admin.http.headers["Authorization"].removeprefix("Bearer "),
    }
    cancelled = subprocess.run(
        [sys.executable, "-m", "streams", "dlq", "replay", "--cancel", replay_id],
        env={**os.environ, **settings_env(worker_settings), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{replay_id}: cancelled at ")
    view = admin.call("GET", f"/v1/dlq/replays/{replay_id}").json()
    assert view["status"] == "cancelled"
    assert view["replayed"] < 6
    assert admin.call("DELETE", f"/v1/dlq/replays/{replay_id}").status_code == 409

    resumed = admin.call("POST", f"/v1/dlq/replays/{replay_id}/resume")
    assert resumed.status_code == 202, resumed.text
    cancel_again = admin.call("DELETE", f"/v1/dlq/replays/{replay_id}")  # it runs again
    assert cancel_again.status_code == 200, cancel_again.text
    assert cancel_again.json()["resumes"] == 1
