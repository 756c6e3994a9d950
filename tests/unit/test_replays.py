"""Replays in the API: slots shared between tenants, cancel, resume, shutdown (no Kafka).

The slot rule is a pure function, tested on fixed vectors. The routes run on the
in-process API of ``test_api_inputs`` with :func:`streams.deadletter.replay.replay`
replaced by a fake that counts at once and "sends" one letter every few
milliseconds until its stop is set: what is tested here is who may start, see,
cancel and resume a replay, and that a stopping worker interrupts it at once.
The replay itself runs against a real broker in tests/integration/test_replay.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from streams.api import replays as replays_module
from streams.api.openapi import openapi_document
from streams.api.replays import Run, refusal
from streams.deadletter import replay as dlq
from streams.deadletter.scan import Stop, Stopped
from tests.unit.test_api_inputs import api, auth, delivery_routes, error_of, tenant_token

__all__ = ["api"]  # the fixture, imported for this module's tests

# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "owner", "refused"),
    [
        ([], "acme", None),
        ([], None, None),
        (["acme"], "acme", "STREAMS_REPLAYS_PER_TENANT"),  # one per tenant
        (["acme"], "beta", None),
        (["acme", "beta", "gamma"], "delta", "kept for the platform admin"),
        (["acme", "beta", "gamma"], None, None),  # the admin's slot
        (["acme", "beta", "gamma", None], None, "STREAMS_REPLAY_SLOTS"),
        ([None, None, None], "acme", None),  # the admin's replays leave tenants theirs
        ([None, None, None, None], "acme", "STREAMS_REPLAY_SLOTS"),
        (["acme", None, None], "beta", None),
    ],
)
def test_tenants_get_a_share_and_the_admin_keeps_a_slot(
    running: list[str | None], owner: str | None, refused: str | None
) -> None:
    why = refusal(running, owner, slots=4, per_tenant=1)
    if refused is None:
        assert why is None
    else:
        assert why is not None
        assert refused in why


def test_a_larger_tenant_share_is_still_bounded_by_the_admin_slot() -> None:
    assert refusal(["acme"], "acme", slots=4, per_tenant=2) is None
    assert refusal(["acme", "acme"], "acme", slots=4, per_tenant=2) is not None
    assert refusal(["acme", "acme", "beta"], "beta", slots=4, per_tenant=2) is not None


# -- the summary ------------------------------------------------------------------------------


def test_a_stopped_replay_says_where_and_how_many_of_how_many_were_sent() -> None:
    s = dlq.ReplaySummary(
        replay_id="rpl_1", replayed=40, to_send=89, status="interrupted", stopped_at="2:523"
    )
    assert s.message().startswith("interrupted at 2:523 (partition:offset), 40 of 89 sent")
    assert "/v1/dlq/replays/rpl_1/resume" in s.message()
    assert "--resume rpl_1" in s.message()
    early = dlq.ReplaySummary(replay_id="rpl_2", to_send=5, status="cancelled")
    assert early.message().startswith("cancelled before its first letter, 0 of 5 sent")
    done = dlq.ReplaySummary(replay_id="rpl_3", replayed=3, skipped=2, status="finished")
    assert done.message() == "finished: 3 sent, 2 skipped (replayed before)"
    assert dlq.ReplaySummary(replay_id="r", replayed=4, to_send=9).message() == (
        "running: 4 of 9 sent"
    )


def test_a_summary_round_trips_through_its_record_and_knows_its_filter() -> None:
    s = dlq.ReplaySummary(
        replay_id="rpl_1",
        tenant_id="acme",
        request={"filters": {"tenant_id": "acme", "reason": "exhausted"}, "force": True},
        updated_at=100.0,
    )
    back = dlq.ReplaySummary.from_bytes(s.to_bytes())
    assert back == s
    assert back.filter() == dlq.DlqFilter(tenant_id="acme", reason="exhausted")
    # A newer writer's extra field is ignored, not an error.
    assert dlq.ReplaySummary.from_bytes(b'{"replay_id": "r", "new": 1}').replay_id == "r"
    assert back.lost(100.0 + dlq.LOST_AFTER_S + 1)
    assert not back.lost(100.0 + 1)


# -- the routes, on a fake replay ---------------------------------------------------------------


class FakeReplays:
    """Stands in for dlq.replay: counts ``letters`` at once; sends one every 5 ms."""

    def __init__(self, letters: int = 1000) -> None:
        self.letters = letters
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Any, flt: dlq.DlqFilter, **kw: Any) -> dlq.ReplaySummary:
        self.calls.append({"filter": flt, **kw})
        if kw.get("dry_run"):
            return dlq.ReplaySummary(
                replay_id=kw.get("replay_id") or "rpl_count",
                matched=self.letters,
                total=self.letters,
                to_send=self.letters,
                status="finished",
            )
        summary: dlq.ReplaySummary = kw["summary"]
        stop: Stop = kw["stop"]
        summary.tenant_id = flt.tenant_id
        summary.request = {"filters": flt.as_dict(), "force": kw["force"], "rate": kw["rate"]}
        for n in range(self.letters):
            if stop.wait(0.005):
                summary.status, summary.stopped_at = stop.reason, f"0:{n - 1}"
                return summary
            summary.matched = summary.replayed = n + 1
            summary.position = f"0:{n}"
        summary.status = "finished"
        return summary


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeReplays:
    fake = FakeReplays()
    monkeypatch.setattr(replays_module.dlq, "replay", fake)
    monkeypatch.setattr(replays_module.dlq, "load_summary", lambda *a, **kw: None)
    return fake


def plant(client: Any, replay_id: str, owner: str | None, tenant: str | None) -> threading.Event:
    """A running replay of ``owner`` (None: the admin) on ``tenant``'s letters, held until
    the returned event is set."""
    release = threading.Event()
    summary = dlq.ReplaySummary(replay_id=replay_id, started_at=time.time(), tenant_id=tenant)
    thread = threading.Thread(target=release.wait, args=(30,), daemon=True)
    run = Run(summary=summary, owner=owner, stop=Stop(), thread=thread)
    delivery_routes(client).replays.runs[replay_id] = run
    thread.start()
    return release


async def test_a_tenant_runs_one_replay_and_cannot_take_the_admins_slot(
    api: Any, fake: FakeReplays
) -> None:
    client, _ = api
    acme = await tenant_token(client, "acme")
    releases = [plant(client, "rpl_acme", "acme", "acme")]
    try:
        err = await error_of(await client.post("/v1/dlq/replay", json={}, headers=auth(acme)), 409)
        assert "STREAMS_REPLAYS_PER_TENANT" in err["message"]
        assert fake.calls == []  # refused before any scan
        releases += [plant(client, f"rpl_{t}", t, t) for t in ("beta", "gamma")]
        delta = await tenant_token(client, "delta")
        err = await error_of(await client.post("/v1/dlq/replay", json={}, headers=auth(delta)), 409)
        assert "kept for the platform admin" in err["message"]
        resp = await client.post("/v1/dlq/replay", json={}, headers=auth())  # the admin
        assert resp.status == 202, await resp.text()
        started = await resp.json()
        assert (started["total"], started["status"]) == (1000, "running")
        err = await error_of(await client.post("/v1/dlq/replay", json={}, headers=auth()), 409)
        assert "STREAMS_REPLAY_SLOTS" in err["message"]
        # A dry run takes no slot.
        dry = await client.post("/v1/dlq/replay", json={"dry_run": True}, headers=auth(delta))
        assert dry.status == 200
    finally:
        for release in releases:
            release.set()
        await delivery_routes(client).replays.stop_all(timeout_s=5)


async def test_cancel_is_scoped_like_get_and_stops_the_replay_where_it_is(
    api: Any, fake: FakeReplays
) -> None:
    client, _ = api
    acme, other = await tenant_token(client, "acme"), await tenant_token(client, "other")
    resp = await client.post("/v1/dlq/replay", json={"rate": 1}, headers=auth(acme))
    assert resp.status == 202, await resp.text()
    replay_id = (await resp.json())["replay_id"]
    await asyncio.sleep(0.05)
    assert (await client.delete(f"/v1/dlq/replays/{replay_id}", headers=auth(other))).status == 404
    resp = await client.delete(f"/v1/dlq/replays/{replay_id}", headers=auth(acme))
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert view["status"] == "cancelled"
    assert view["stopped_at"] is not None
    assert "of 1000 sent" in view["message"]
    shown = await (await client.get(f"/v1/dlq/replays/{replay_id}", headers=auth(acme))).json()
    assert shown["status"] == "cancelled"
    again = await client.delete(f"/v1/dlq/replays/{replay_id}", headers=auth(acme))
    assert (await error_of(again, 409))["message"].endswith("is not running (cancelled)")
    # The slot is free again: acme may start another.
    resp = await client.post("/v1/dlq/replay", json={}, headers=auth(acme))
    assert resp.status == 202
    await delivery_routes(client).replays.stop_all(timeout_s=5)


async def test_a_cancelled_replay_resumes_under_its_id_with_its_own_request(
    api: Any, fake: FakeReplays
) -> None:
    client, _ = api
    body = {"reason": "exhausted", "force": True, "rate": 5}
    replay_id = (await (await client.post("/v1/dlq/replay", json=body, headers=auth())).json())[
        "replay_id"
    ]
    await asyncio.sleep(0.05)
    assert (await client.delete(f"/v1/dlq/replays/{replay_id}", headers=auth())).status == 200
    resp = await client.post(f"/v1/dlq/replays/{replay_id}/resume", headers=auth())
    assert resp.status == 202, await resp.text()
    view = await resp.json()
    assert (view["replay_id"], view["status"], view["resumes"]) == (replay_id, "running", 1)
    count, run = fake.calls[-2], fake.calls[-1]
    assert (count["dry_run"], count["resume"], count["replay_id"]) == (True, True, replay_id)
    assert (run["resume"], run["force"], run["rate"]) == (True, True, 5)
    assert run["filter"] == dlq.DlqFilter(reason="exhausted")
    running = await client.post(f"/v1/dlq/replays/{replay_id}/resume", headers=auth())
    assert "is running" in (await error_of(running, 409))["message"]
    await delivery_routes(client).replays.stop_all(timeout_s=5)


async def test_an_unknown_replay_is_a_404_for_get_cancel_and_resume(
    api: Any, fake: FakeReplays
) -> None:
    client, _ = api
    for method, path in (
        ("GET", "/v1/dlq/replays/rpl_0000000000000000"),
        ("DELETE", "/v1/dlq/replays/rpl_0000000000000000"),
        ("POST", "/v1/dlq/replays/rpl_0000000000000000/resume"),
        ("GET", "/v1/dlq/replays/not-a-replay-id"),
    ):
        await error_of(await client.request(method, path, headers=auth()), 404)


async def test_a_stopping_worker_interrupts_its_replays_at_once(
    api: Any, fake: FakeReplays
) -> None:
    client, pipeline = api
    resp = await client.post("/v1/dlq/replay", json={"rate": 0.01}, headers=auth())
    replay_id = (await resp.json())["replay_id"]
    routes = delivery_routes(client)
    started = time.monotonic()
    await routes.on_shutdown(client.app)
    assert time.monotonic() - started < 2.0
    summary = routes.replays.runs[replay_id].summary
    assert summary.status == "interrupted"
    assert pipeline.extras["stopping"].is_set()  # the worker's reads in threads end too
    with pytest.raises(Stopped):
        pipeline.extras["stopping"].check()


def test_every_route_of_the_replays_is_in_the_openapi_document() -> None:
    paths = openapi_document()["paths"]
    assert set(paths["/v1/dlq/replays/{id}"]) == {"get", "delete"}
    assert "409" in paths["/v1/dlq/replays/{id}"]["delete"]["responses"]
    assert set(paths["/v1/dlq/replays/{id}/resume"]) == {"post"}
    assert "post" in paths["/v1/dlq/replay"]


def test_a_dry_run_says_what_it_would_send() -> None:
    s = dlq.ReplaySummary(replay_id="r", dry_run=True, matched=9, skipped=2, to_send=7)
    assert s.message() == "dry run: 9 match, 7 would be sent, 2 were replayed before"


async def test_a_replay_whose_worker_died_shows_as_interrupted_and_can_be_resumed(
    api: Any, fake: FakeReplays, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = api
    acme, other = await tenant_token(client, "acme"), await tenant_token(client, "other")
    silent = dlq.ReplaySummary(
        replay_id="rpl_00000000000000aa",
        status="running",
        replayed=4,
        to_send=10,
        position="1:7",
        tenant_id="acme",
        request={"filters": {"tenant_id": "acme"}, "force": False, "rate": None},
        updated_at=time.time() - dlq.LOST_AFTER_S - 5,  # SIGKILLed: no last word
    )
    monkeypatch.setattr(replays_module.dlq, "load_summary", lambda *a, **kw: silent)
    path = f"/v1/dlq/replays/{silent.replay_id}"
    await error_of(await client.get(path, headers=auth(other)), 404)
    view = await (await client.get(path, headers=auth(acme))).json()
    assert (view["status"], view["stopped_at"]) == ("interrupted", "1:7")
    assert view["message"].startswith("interrupted at 1:7 (partition:offset), 4 of 10 sent")
    assert "its worker stopped without recording where" in view["message"]
    resumed = await client.post(f"{path}/resume", headers=auth(acme))
    assert resumed.status == 202, await resumed.text()
    assert fake.calls[-1]["resume"] is True
    assert fake.calls[-1]["filter"] == dlq.DlqFilter(tenant_id="acme")
    await delivery_routes(client).replays.stop_all(timeout_s=5)
