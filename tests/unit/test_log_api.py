"""The log routes over the store: pages and cursors, a delivery, redeliver's numbering,
statistics scoped to the caller, and 503 with the reason when there is no log.

The API runs in-process on fakes (no Kafka), with a log node's store written
directly; ``read_at`` (Kafka) is replaced by the original record for redeliver.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.config import Settings
from streams.deadletter.scan import Located
from streams.log.store import LogWriter
from streams.records import Attempt, Delivery, Subscription
from tests.fake_pipeline import ADMIN, FakePipeline, dev_settings, fake_pipeline

NOW = time.time()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's attempts are seconds old when its windows are read: a NOW taken at
    import is minutes old by the time a long suite reaches the test (5 m window)."""
    global NOW
    NOW = time.time()


def make_pipeline(tmp_path: Path, *, log: bool = True) -> FakePipeline:
    return fake_pipeline(dev_settings(tmp_path), log=log)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], FakePipeline]]:
    pipeline = make_pipeline(tmp_path)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tenant_token(client: TestClient[Any, Any], tenant: str) -> str:
    resp = await client.post("/v1/tokens", json={"tenant_id": tenant}, headers=auth())
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["token"]
    return token


def attempt(delivery: str, number: int, at: float, tenant: str = "acme", **kw: Any) -> Attempt:
    return Attempt(
        delivery_id=delivery,
        event_id=f"evt_{delivery}",
        event_type="alert.fired",
        tenant_id=tenant,
        subscription_id=f"sub_{tenant}",
        attempt=number,
        at=at,
        duration_ms=3.0,
        outcome=kw.pop("outcome", "delivered"),
        status=kw.pop("status", 200),
        source_topic="deliveries",
        source_partition=2,
        source_offset=40 + number,
        **kw,
    )


def write(pipeline: FakePipeline, *attempts: Attempt) -> None:
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    start = writer.positions().get(0, 0)
    writer.write([(0, start + n, a.to_bytes()) for n, a in enumerate(attempts)])
    writer.close()


async def test_pages_follow_the_cursor_and_a_tampered_cursor_is_a_422(api: Any) -> None:
    client, pipeline = api
    write(pipeline, *(attempt(f"msg_{n:02d}", 1, NOW - 100 + n) for n in range(25)))
    seen: list[str] = []
    url = "/v1/deliveries?limit=10"
    for _ in range(5):
        body = await (await client.get(url, headers=auth())).json()
        seen.extend(r["delivery_id"] for r in body["data"])
        if body["next_cursor"] is None:
            break
        url = f"/v1/deliveries?limit=10&cursor={body['next_cursor']}"
    assert seen == [f"msg_{n:02d}" for n in range(24, -1, -1)]
    resp = await client.get("/v1/deliveries?cursor=c1.nonsense", headers=auth())
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "cursor"
    resp = await client.get("/v1/deliveries?status=50", headers=auth())
    assert (await resp.json())["error"]["field"] == "status"


async def test_a_delivery_shows_every_attempt_with_where_its_request_is(api: Any) -> None:
    client, pipeline = api
    write(
        pipeline,
        attempt("msg_a", 1, NOW - 30, outcome="retry", status=503, error="HTTP 503"),
        attempt("msg_a", 2, NOW - 20, replay_id="rdl_1"),
    )
    body = await (await client.get("/v1/deliveries/msg_a", headers=auth())).json()
    assert (body["outcome"], body["status"], body["last_attempt"]) == ("delivered", 200, 2)
    assert [a["attempt"] for a in body["attempts"]] == [1, 2]
    assert body["attempts"][0]["error"] == "HTTP 503"
    assert body["attempts"][1]["source"] == {"topic": "deliveries", "partition": 2, "offset": 42}
    other = await tenant_token(client, "other")
    assert (await client.get("/v1/deliveries/msg_a", headers=auth(other))).status == 404


async def test_a_redelivery_is_numbered_after_the_history(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, pipeline = api
    sub = Subscription(id="sub_acme", tenant_id="acme", url="https://x.example", event_types=["*"])
    pipeline.subscriptions.apply("sub_acme", sub.to_bytes())
    original = Delivery(
        delivery_id="msg_a",
        event_id="evt_msg_a",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_acme",
        body="{}",
        attempt=3,
    )
    write(
        pipeline,
        *(attempt("msg_a", n, NOW - 50 + n, outcome="retry", status=500) for n in (1, 2, 3)),
    )
    import streams.api.deliveries as routes

    monkeypatch.setattr(
        routes, "read_at", lambda *_, **__: Located(2, 43, 0, b"sub_acme", original.to_bytes())
    )
    resp = await client.post("/v1/deliveries/msg_a/redeliver", headers=auth())
    assert resp.status == 202, await resp.text()
    topic, _, value = pipeline.sent[-1]
    assert topic == pipeline.names.deliveries
    again = Delivery.from_bytes(value)
    assert (again.attempt, again.prior_attempts, again.attempt_number) == (1, 3, 4)
    assert again.replay_id is not None
    assert again.replay_id.startswith("rdl_")


async def test_statistics_give_a_tenant_its_own_figures_and_the_admin_the_node(api: Any) -> None:
    client, pipeline = api
    write(
        pipeline,
        attempt("msg_a", 1, NOW - 10),
        attempt("msg_b", 1, NOW - 10, tenant="other", outcome="retry", status=500),
        attempt("msg_c", 1, NOW - 5, tenant="other"),
    )
    acme = await tenant_token(client, "acme")
    mine = await (await client.get("/v1/stats", headers=auth(acme))).json()
    assert mine["attempt_log"] == {"attempts": 1, "deliveries": 1, "oldest_at": NOW - 10}
    assert "log_node" not in mine
    assert set(mine["windows"]) == {"5m", "1h", "24h", "7d"}
    assert mine["windows"]["5m"]["attempts"] == 1
    assert mine["failing"] == []
    # Naming another tenant does not widen a tenant token's view (issue 17 item 7).
    resp = await client.get("/v1/stats?tenant_id=other", headers=auth(acme))
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "tenant_id"
    everyone = await (await client.get("/v1/stats", headers=auth())).json()
    assert everyone["attempt_log"]["attempts"] == 3
    assert everyone["log_node"]["store"] == str(pipeline.settings.log_path)
    assert [r["subscription_id"] for r in everyone["failing"]] == ["sub_other"]
    assert everyone["failing"][0]["state"] == "deleted"  # not in this worker's index


async def test_subscription_statistics_chart_its_last_day(api: Any) -> None:
    client, pipeline = api
    sub = Subscription(id="sub_acme", tenant_id="acme", url="https://x.example", event_types=["*"])
    pipeline.subscriptions.apply("sub_acme", sub.to_bytes())
    write(pipeline, attempt("msg_a", 1, NOW - 10), attempt("msg_b", 1, NOW - 7200))
    write(pipeline, attempt("msg_z", 1, NOW - 10, tenant="other"))
    acme = await tenant_token(client, "acme")
    body = await (await client.get("/v1/subscriptions/sub_acme/stats", headers=auth(acme))).json()
    assert len(body["hourly"]) == 24
    assert sum(h["attempts"] for h in body["hourly"]) == 2
    assert body["windows"]["24h"]["attempts"] == 2
    assert body["attempt_log"]["attempts"] == 2  # acme's, not everyone's 3


@pytest.mark.parametrize(
    "path",
    ["/v1/deliveries", "/v1/deliveries/msg_a", "/v1/stats", "/v1/subscriptions/sub_x/stats"],
)
async def test_a_worker_without_a_log_answers_503_saying_where_to_ask(
    tmp_path: Path, path: str
) -> None:
    pipeline = make_pipeline(tmp_path, log=False)
    sub = Subscription(id="sub_x", tenant_id="acme", url="https://x.example", event_types=["*"])
    pipeline.subscriptions.apply("sub_x", sub.to_bytes())
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        resp = await client.get(path, headers=auth())
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "unavailable"
        assert "STREAMS_DELIVERY_LOG=off" in error["message"]
        assert "--role log" in error["message"]


async def test_a_store_fault_is_a_503_with_the_reason_never_an_empty_list(api: Any) -> None:
    client, pipeline = api
    write(pipeline, attempt("msg_a", 1, NOW - 10))
    indexer = pipeline.extras["delivery_log"].indexer
    indexer.fault = f"the delivery-log store {pipeline.settings.log_path}: the disk is full"
    for path in ("/v1/deliveries", "/v1/deliveries/msg_a", "/v1/stats"):
        resp = await client.get(path, headers=auth())
        assert resp.status == 503
        assert "the disk is full" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("role", "setting", "expected"),
    [
        ("all", "on", True),
        ("all", "off", False),
        ("delivery", "on", False),  # the role wins: a delivery worker never reads attempts
        ("delivery", "off", False),
        ("log", "on", True),
        ("log", "off", True),
    ],
)
def test_which_workers_keep_the_log(role: str, setting: str, expected: bool) -> None:
    from streams.app import ROLES, keeps_log

    assert role in ROLES
    assert keeps_log(role, Settings.from_env({"STREAMS_DELIVERY_LOG": setting})) is expected
