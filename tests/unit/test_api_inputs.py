"""Hostile or malformed API input gets a 4xx naming what to fix, never a 500 or a hang.

The whole management API runs in-process on fakes (no Kafka): every case here is
refused before anything would read a topic. Each one answered 500, or was
misread, before its fix (a review of the API with these requests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.api.deliveries import DeliveryRoutes
from streams.log.store import LogWriter
from streams.records import Attempt
from tests.fake_pipeline import ADMIN, dev_settings, fake_pipeline


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    # A log node's delivery log whose indexer is not started: tests write the store.
    pipeline = fake_pipeline(dev_settings(tmp_path), log=True)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tenant_token(client: TestClient[Any, Any], tenant: str) -> str:
    resp = await client.post("/v1/tokens", json={"tenant_id": tenant}, headers=auth())
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["token"]
    return token


def delivery_routes(client: TestClient[Any, Any]) -> DeliveryRoutes:
    """The app's DeliveryRoutes, to plant replays without a broker."""
    routes: DeliveryRoutes = next(
        r.handler.__self__  # type: ignore[attr-defined]
        for r in client.app.router.routes()
        if isinstance(getattr(r.handler, "__self__", None), DeliveryRoutes)
    )
    return routes


async def error_of(resp: Any, status: int = 422) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    err: dict[str, Any] = (await resp.json())["error"]
    return err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e30", "-1", "9999-99-99"])
async def test_times_outside_1970_to_9999_are_a_422(api: Any, value: str) -> None:
    client, _ = api
    for path in (f"/v1/dlq?since={value}", f"/v1/dlq?until={value}"):
        err = await error_of(await client.get(path, headers=auth()))
        assert err["field"] in ("since", "until")
    err = await error_of(await client.get(f"/v1/deliveries?since={value}", headers=auth()))
    assert err["field"] == "since"  # was ignored: an unfiltered page came back


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate": 1e-9, "force": True}, "rate"),  # slept 1e9 s in a shared thread
        ({"rate": 0}, "rate"),
        ({"subscription_id": 5, "dry_run": True}, "subscription_id"),
        ({"tenant_id": {"a": 1}}, "tenant_id"),
        ({"event_type": ["x"]}, "event_type"),
        ({"force": "false"}, "force"),  # was truthy: replayed what force=false skips
        ({"dry_run": "false"}, "dry_run"),
        ({"since": [1]}, "since"),
        ({"since": "nan"}, "since"),
    ],
)
async def test_replay_fields_of_the_wrong_kind_are_a_422(
    api: Any, body: dict[str, Any], field: str
) -> None:
    client, _ = api
    err = await error_of(await client.post("/v1/dlq/replay", json=body, headers=auth()))
    assert err["field"] == field


@pytest.mark.parametrize("token", ["\xff\xfe", ADMIN + "\xff"])
async def test_a_token_with_bytes_outside_ascii_is_a_401(api: Any, token: str) -> None:
    client, _ = api
    # aiohttp's client encodes headers as UTF-8; the server decodes them with surrogates.
    resp = await client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_string_booleans_are_refused_on_enable(api: Any) -> None:
    client, _ = api
    resp = await client.post(
        "/v1/subscriptions",
        json={"tenant_id": "acme", "url": "https://example.com/in", "event_types": ["*"]},
        headers=auth(),
    )
    assert resp.status == 201, await resp.text()
    sub_id = (await resp.json())["id"]
    resp = await client.post(
        f"/v1/subscriptions/{sub_id}/enable", json={"replay_parked": "false"}, headers=auth()
    )
    assert (await error_of(resp))["field"] == "replay_parked"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("", {"description": "x\x1b]0;pwned\x07"}, "description"),
        ("/disable", {"reason": "moving\r\x1b[2Kall fine"}, "reason"),
        ("/rotate-secret", {"secret": 12345}, "secret"),
    ],
)
async def test_control_characters_and_non_strings_are_refused(
    api: Any, path: str, body: dict[str, Any], field: str
) -> None:
    client, _ = api
    resp = await client.post(
        "/v1/subscriptions",
        json={"tenant_id": "acme", "url": "https://example.com/in", "event_types": ["*"]},
        headers=auth(),
    )
    sub_id = (await resp.json())["id"]
    method = client.patch if path == "" else client.post
    resp = await method(f"/v1/subscriptions/{sub_id}{path}", json=body, headers=auth())
    assert (await error_of(resp))["field"] == field


async def test_the_delivery_log_answers_a_tenant_with_its_own_rows_only(api: Any) -> None:
    client, pipeline = api
    writer = LogWriter(pipeline.settings.log_path, pipeline.names.attempts)
    writer.write(
        [
            (
                0,
                n,
                Attempt(
                    delivery_id=f"msg_{n}",
                    event_id=f"evt_{n}",
                    event_type="alert.fired",
                    tenant_id=tenant,
                    subscription_id=f"sub_{tenant}",
                    attempt=1,
                    at=1_800_000_000.0 + n,
                    duration_ms=1.0,
                    outcome="delivered",
                    status=200,
                ).to_bytes(),
            )
            for n, tenant in enumerate(["acme", "other", "acme"])
        ]
    )
    writer.close()
    acme = await tenant_token(client, "acme")
    resp = await client.get("/v1/deliveries", headers=auth(acme))
    assert resp.status == 200
    body = await resp.json()
    assert [d["delivery_id"] for d in body["data"]] == ["msg_2", "msg_0"]
    resp = await client.get("/v1/deliveries?subscription_id=sub_other", headers=auth(acme))
    assert (await resp.json())["data"] == []  # another tenant's subscription: nothing
    resp = await client.get("/v1/deliveries/msg_1", headers=auth(acme))
    assert resp.status == 404
    resp = await client.get("/v1/deliveries?subscription_id=sub_other", headers=auth())
    body = await resp.json()
    assert [d["delivery_id"] for d in body["data"]] == ["msg_1"]
