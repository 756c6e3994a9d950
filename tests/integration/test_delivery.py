"""Deliveries reach receivers signed, every attempt is logged, failures retry on time."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.kafka.topics import check_reachable, create_topics
from streams.publish import EventPublisher
from streams.records import Attempt, DeadLetter
from tests.integration.harness import (
    ALERT,
    Api,
    ReceiverProcess,
    WorkerProcess,
    free_port,
    read_topic,
)

pytestmark = pytest.mark.integration


def subscribe(admin: Api, receiver: ReceiverProcess, name: str, **extra: Any) -> dict[str, Any]:
    behaviour = extra.pop("behaviour", {})
    sub = admin.create(tenant_id=name, url=receiver.url(name), event_types=["*"], **extra)
    receiver.configure(name, secret=sub["signing_secret"], profile=sub["signing"], **behaviour)
    return sub


def publish(settings: Settings, tenant: str, n: int, prefix: str) -> list[str]:
    with EventPublisher(settings) as pub:
        events = [
            pub.build("alert.fired", tenant, ALERT, event_id=f"{prefix}-{i}") for i in range(n)
        ]
        pub.publish_many(events)
    return [e.id for e in events]


def deliver_three(settings: Settings, tmp_path: Path, name: str) -> str:
    """Topics, a receiver and a worker on ``settings``: three events end to end, each
    verified. Returns the worker's log (for checks that no secret shows)."""
    check_reachable(settings)
    create_topics(settings)
    log = tmp_path / "worker.log"
    receiver = ReceiverProcess(tmp_path / "receiver.log").start()
    worker = WorkerProcess(settings, log)
    try:
        worker.start()  # inside: a worker that fails to start must not leave the receiver
        token = (settings.state_dir / "dev-admin-token").read_text().strip()
        admin = Api(worker.base_url, token)
        subscribe(admin, receiver, name)
        ids = publish(settings, name, 3, name)
        entries = receiver.wait_for(name, 3, timeout_s=60)
        assert sorted(e["event_id"] for e in entries) == sorted(ids)
        assert all(e["valid"] is True for e in entries)
    finally:
        worker.stop()
        receiver.stop()
    return log.read_text(errors="replace")


def attempts(settings: Settings, sub_id: str, expected: int) -> list[Attempt]:
    records = read_topic(
        settings,
        settings.topic_prefix + "attempts",
        expected=expected,
        settle_s=0.5,
        where=lambda m: sub_id.encode() in m.value(),
    )
    found = [Attempt.from_bytes(m.value()) for m in records]
    return [a for a in found if a.subscription_id == sub_id]


def test_every_event_is_delivered_once_with_a_valid_signature_and_logged(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "happy")
    ids = publish(worker_settings, "happy", 50, "ok")
    entries = receiver.wait_for("happy", 50)
    assert sorted(e["event_id"] for e in entries) == sorted(ids)
    assert all(e["valid"] is True for e in entries)
    assert all(e["attempt"] == 1 for e in entries)
    logged = attempts(worker_settings, sub["id"], 50)
    assert len([a for a in logged if a.outcome == "delivered" and a.status == 200]) >= 50


@pytest.mark.parametrize("profile", ["prowlo", "prospektr", "stripe", "github"])
def test_every_signing_profile_verifies_at_the_receiver(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings, profile: str
) -> None:
    name = f"profile-{profile}"
    subscribe(admin, receiver, name, signing=profile)
    publish(worker_settings, name, 3, name)
    entries = receiver.wait_for(name, 3)
    assert len(entries) == 3
    assert all(e["valid"] is True for e in entries)


def test_a_receiver_failing_n_times_sees_n_plus_one_attempts_never_early(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    # The module's worker runs STREAMS_RETRY_SCHEDULE=1s,2s: attempts at 0, +1 s, +2 s.
    sub = subscribe(admin, receiver, "flaky", behaviour={"fail_first": 2, "fail_status": 503})
    (event_id,) = publish(worker_settings, "flaky", 1, "flaky")
    entries = receiver.wait_for("flaky", 3, timeout_s=40)
    assert [e["attempt"] for e in entries] == [1, 2, 3]
    assert [e["status"] for e in entries] == [503, 503, 200]
    assert len({e["webhook_id"] for e in entries}) == 1
    gaps = [b["received_at"] - a["received_at"] for a, b in itertools.pairwise(entries)]
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    time.sleep(1)
    assert len(receiver.ledger("flaky")) == 3  # nothing after the success
    logged = attempts(worker_settings, sub["id"], 3)
    assert [a.outcome for a in sorted(logged, key=lambda a: a.attempt)] == [
        "retry",
        "retry",
        "delivered",
    ]
    assert all(a.event_id == event_id for a in logged)


def test_exhausted_retries_land_in_the_dlq_with_the_last_status(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "dead", behaviour={"status": 500})
    publish(worker_settings, "dead", 1, "dead")
    entries = receiver.wait_for("dead", 3, timeout_s=40)
    assert len(entries) == 3
    mine = dead_letters(worker_settings, sub["id"], 1)
    assert len(mine) == 1
    assert (mine[0].reason, mine[0].attempts, mine[0].last_status) == ("exhausted", 3, 500)


def test_no_retry_schedule_means_one_attempt_then_the_dlq(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(
        admin,
        receiver,
        "once",
        retry_schedule="none",
        signing="prospektr",
        behaviour={"status": 502},
    )
    publish(worker_settings, "once", 1, "once")
    assert len(receiver.wait_for("once", 1)) == 1
    logged = attempts(worker_settings, sub["id"], 1)
    assert [(a.status, a.outcome, a.response_snippet) for a in logged] == [
        (502, "give_up", "failed")
    ]
    time.sleep(2)
    assert len(receiver.ledger("once")) == 1


def test_a_hanging_endpoint_does_not_stall_a_healthy_one(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    subscribe(admin, receiver, "stuck", timeout="3s", behaviour={"mode": "hang"})
    healthy = admin.create(tenant_id="stuck", url=receiver.url("healthy"), event_types=["*"])
    receiver.configure("healthy", secret=healthy["signing_secret"])
    started = time.time()
    publish(worker_settings, "stuck", 40, "iso")
    entries = receiver.wait_for("healthy", 40, timeout_s=20)
    assert len(entries) == 40
    # The healthy endpoint got everything well before the stuck one's first timeout.
    assert max(e["received_at"] for e in entries) - started < 3.0


def dead_letters(settings: Settings, sub_id: str, expected: int) -> list[DeadLetter]:
    records = read_topic(
        settings,
        settings.topic_prefix + "deliveries.dlq",
        expected=expected,
        timeout_s=30,
        settle_s=1,
        where=lambda m: m.key() == sub_id.encode(),
    )
    letters = [DeadLetter.from_bytes(m.value()) for m in records]
    return [d for d in letters if d.delivery["subscription_id"] == sub_id]


def test_an_unreachable_endpoint_opens_its_breaker_and_later_deliveries_skip_it(
    admin: Api, worker_settings: Settings
) -> None:
    # The module's worker opens a breaker after 3 tripping failures, for 30 s, and
    # disables a subscription after 5 consecutive failures.
    closed_port = free_port()  # nothing listens there: connections are refused
    sub = admin.create(
        tenant_id="refused",
        url=f"http://127.0.0.1:{closed_port}/hook",
        event_types=["*"],
        retry_schedule="none",
    )
    publish(worker_settings, "refused", 3, "refused-a")
    first = attempts(worker_settings, sub["id"], 3)
    assert [a.sent for a in first] == [True] * 3
    assert all((a.error or "").startswith("connection refused") for a in first)

    publish(worker_settings, "refused", 4, "refused-b")
    logged = attempts(worker_settings, sub["id"], 7)
    later = [a for a in logged if a.event_id.startswith("refused-b")]
    assert [(a.sent, a.outcome, a.duration_ms) for a in later] == [(False, "give_up", 0.0)] * 4
    assert {a.error for a in later} == {"circuit open: the endpoint keeps failing, no request sent"}
    # Every one is parked for replay, and the skips did not count towards auto-disable.
    letters = dead_letters(worker_settings, sub["id"], 7)
    assert sorted(d.reason for d in letters) == ["exhausted"] * 7
    time.sleep(1)
    assert admin.call("GET", f"/v1/subscriptions/{sub['id']}").json()["state"] == "enabled"


def wait_state(admin: Api, sub_id: str, state: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = admin.call("GET", f"/v1/subscriptions/{sub_id}").json()
        if view["state"] == state:
            return view
        time.sleep(0.2)
    return view


def test_410_gone_disables_the_subscription_and_later_deliveries_are_parked(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    sub = subscribe(admin, receiver, "gone", behaviour={"status": 410})
    watcher = admin.create(
        tenant_id="gone", url=receiver.url("gone-ops"), event_types=["endpoint.*"]
    )
    receiver.configure("gone-ops", secret=watcher["signing_secret"])
    publish(worker_settings, "gone", 1, "gone-a")
    view = wait_state(admin, sub["id"], "disabled")
    assert view["disabled_reason"] == "410 Gone: the endpoint asked to stop receiving webhooks"
    publish(worker_settings, "gone", 2, "gone-b")
    letters = dead_letters(worker_settings, sub["id"], 3)
    assert sorted(d.reason for d in letters) == [
        "gone",
        "subscription_disabled",
        "subscription_disabled",
    ]
    assert len(receiver.ledger("gone")) == 1  # parked, never sent
    ops = receiver.wait_for("gone-ops", 1)
    import orjson

    body = orjson.loads(receiver.http.get("/_ledger", params={"endpoint": "gone-ops"}).content)
    assert len(ops) >= 1
    assert body["entries"][0]["event_id"].startswith("ops_")


def test_a_failing_endpoint_is_auto_disabled_with_a_reason(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    # The module's worker runs STREAMS_DISABLE_AFTER_FAILURES=5.
    sub = subscribe(admin, receiver, "broken", retry_schedule="none", behaviour={"status": 503})
    publish(worker_settings, "broken", 5, "broken")
    view = wait_state(admin, sub["id"], "disabled")
    assert view["disabled_reason"] == "5 consecutive 5xx responses"
    assert admin.call("POST", f"/v1/subscriptions/{sub['id']}/enable").json()["state"] == "enabled"


def test_an_ordered_subscription_holds_its_queue_while_the_head_is_retried(
    admin: Api, receiver: ReceiverProcess, worker_settings: Settings
) -> None:
    subscribe(
        admin,
        receiver,
        "ordered",
        ordering="ordered",
        behaviour={"fail_first": 2, "fail_status": 503},
    )
    ids = publish(worker_settings, "ordered", 20, "ord")
    entries = receiver.wait_for("ordered", 22, timeout_s=60)
    assert len(entries) == 22
    # The head is retried twice and nothing else is sent before it succeeds.
    assert [e["event_id"] for e in entries[:3]] == [ids[0]] * 3
    assert [e["status"] for e in entries[:3]] == [503, 503, 200]
    # Every follower is then delivered once, in publish order, without an attempt of
    # its own while held.
    assert [e["event_id"] for e in entries[3:]] == ids[1:]
    assert all(e["status"] == 200 for e in entries[3:])
    assert all(e["attempt"] == 1 for e in entries[3:])
