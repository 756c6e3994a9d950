"""The platform's tenant names are reserved wherever a tenant id comes in (issue 17, item 6).

A tenant named ``_platform`` received the admin's platform-wide ``replay.*``
operational events (with every tenant's replay filters in them). Each test
here feeds a reserved id through one entry: the API (subscriptions, tokens),
token authentication, the publisher, the fan-out of raw and operational
events, and the subscription index.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams import tenants
from streams.api.auth import TokenIndex, authenticate, new_tenant_token
from streams.config import Settings
from streams.errors import AuthError, InvalidEventError, InvalidRequestError
from streams.fanout.agent import fan_out_one
from streams.kafka.topics import TopicNames
from streams.publish import EventPublisher
from streams.records import ParkedRecord, Subscription
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.model import check_tenant
from tests.fake_pipeline import ADMIN, dev_settings, fake_pipeline

REGISTRY = SchemaRegistry.load()
RESERVED = ["_platform", "_", "_Platform", "_platform.eu", "__x"]
ORDINARY = ["platform", "acme", "a_platform", "acme:eu-1", "t.1~x"]


# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", RESERVED)
def test_every_id_starting_with_an_underscore_is_reserved(tenant: str) -> None:
    assert tenants.is_reserved(tenant)
    assert tenants.problem(tenant) == tenants.RESERVED_REASON
    with pytest.raises(InvalidRequestError, match="reserved for the platform") as caught:
        check_tenant(tenant)
    assert caught.value.field == "tenant_id"


@pytest.mark.parametrize("tenant", ORDINARY)
def test_other_ids_of_the_allowed_characters_are_a_customers(tenant: str) -> None:
    assert not tenants.is_reserved(tenant)
    assert tenants.problem(tenant) is None
    assert check_tenant(tenant) == tenant


@pytest.mark.parametrize("value", ["", "a b", "x" * 201, "acme\n", 7, None])
def test_malformed_ids_are_still_refused_for_their_form(value: Any) -> None:
    assert tenants.problem(value) == "1-200 characters of A-Z a-z 0-9 . _ : ~ -"


def test_the_platform_tenant_is_itself_reserved() -> None:
    assert tenants.is_reserved(tenants.PLATFORM_TENANT)


# -- the API -------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    pipeline = fake_pipeline(dev_settings(tmp_path), registry=REGISTRY)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@pytest.mark.parametrize("tenant", ["_platform", "_ops"])
async def test_the_api_refuses_a_subscription_or_a_token_for_a_reserved_tenant(
    api: Any, tenant: str
) -> None:
    client, pipeline = api
    for path, body in [
        (
            "/v1/subscriptions",
            {"tenant_id": tenant, "url": "https://example.com/in", "event_types": ["replay.*"]},
        ),
        ("/v1/tokens", {"tenant_id": tenant}),
    ]:
        resp = await client.post(path, json=body, headers=admin())
        assert resp.status == 422, (path, await resp.text())
        error = (await resp.json())["error"]
        assert error["field"] == "tenant_id"
        assert "reserved for the platform" in error["message"]
    assert len(pipeline.subscriptions) == 0


async def test_a_customer_tenant_is_still_accepted_on_both_routes(api: Any) -> None:
    client, _ = api
    resp = await client.post(
        "/v1/subscriptions",
        json={"tenant_id": "platform", "url": "https://example.com/in", "event_types": ["*"]},
        headers=admin(),
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post("/v1/tokens", json={"tenant_id": "platform"}, headers=admin())
    assert resp.status == 201, await resp.text()


# -- tokens made before the names were reserved ----------------------------------------------


def test_a_stored_token_of_a_reserved_tenant_authenticates_no_one_but_can_be_revoked() -> None:
    index = TokenIndex()
    clear, record = new_tenant_token("_platform", "made before the rule", 1.0)
    index.apply(record["id"], orjson.dumps(record))
    with pytest.raises(AuthError, match="reserved for the platform"):
        authenticate(f"Bearer {clear}", admin_token=ADMIN, tokens=index)
    # Still listed for the admin, who can revoke it.
    assert [r["id"] for r in index.listing()] == [record["id"]]
    assert index.get(record["id"]) is not None
    ok_clear, ok = new_tenant_token("acme", "", 1.0)
    index.apply(ok["id"], orjson.dumps(ok))
    assert authenticate(f"Bearer {ok_clear}", admin_token=ADMIN, tokens=index).tenant_id == "acme"


def test_a_bad_record_replacing_a_token_leaves_no_usable_token() -> None:
    index = TokenIndex()
    clear, record = new_tenant_token("acme", "", 1.0)
    index.apply(record["id"], orjson.dumps(record))
    index.apply(record["id"], b"not json")
    with pytest.raises(AuthError):
        authenticate(f"Bearer {clear}", admin_token=ADMIN, tokens=index)


# -- the publisher -------------------------------------------------------------------------


@pytest.fixture
def publisher() -> EventPublisher:
    # Nothing is sent: the producer never needs a broker (and stays quiet about it).
    return EventPublisher(
        Settings.from_env({}),
        registry=REGISTRY,
        check_broker=False,
        extra_config={"log_level": 0},
    )


@pytest.mark.parametrize("tenant", ["_platform", "_x"])
def test_the_publisher_refuses_an_event_under_a_reserved_tenant(
    publisher: EventPublisher, tenant: str
) -> None:
    data = REGISTRY.sample("alert.fired")
    with pytest.raises(InvalidEventError, match="reserved for the platform") as caught:
        publisher.build("alert.fired", tenant, data)
    assert caught.value.field == "tenant_id"
    envelope = {
        "id": "evt_1",
        "type": "alert.fired",
        "tenant_id": tenant,
        "occurred_at": "2026-01-01T00:00:00Z",
        "data": data,
    }
    with pytest.raises(InvalidEventError, match="reserved for the platform"):
        publisher.encode(envelope)
    assert publisher.encode({**envelope, "tenant_id": "acme"})[0].tenant_id == "acme"


# -- the fan-out and the index -----------------------------------------------------------------


@dataclass
class Message:
    topic: str
    partition: int = 0
    offset: int = 7
    timestamp: float = 1.0


class FanoutPipeline:
    def __init__(self, index: SubscriptionIndex) -> None:
        self.settings = Settings.from_env({})
        self.names = TopicNames("")
        self.registry = REGISTRY
        self.subscriptions = index
        self.stats: Counter[str] = Counter()
        self.sent: list[tuple[str, bytes | None]] = []
        self.parked: list[ParkedRecord] = []

    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> Any:
        self.sent.append((topic, value))
        if topic == self.names.events_invalid:
            raw_key = key.encode() if isinstance(key, str) else key
            self.parked.append(ParkedRecord(raw_key, value, tuple(headers or ())))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def platform_index() -> SubscriptionIndex:
    """An index holding a ``_platform`` subscription written before the names were reserved."""
    index = SubscriptionIndex()
    old = Subscription(
        id="sub_old", tenant_id="_platform", url="https://x.example/", event_types=["replay.*"]
    )
    index.apply(old.id, old.to_bytes())
    return index


def replay_event(tenant: str) -> bytes:
    return orjson.dumps(
        {
            "id": "evt_r",
            "type": "replay.started",
            "tenant_id": tenant,
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": {"replay_id": "rpl_1", "started_at": "2026-01-01T00:00:00Z"},
        }
    )


def test_the_platforms_own_replay_events_reach_no_subscription() -> None:
    p = FanoutPipeline(platform_index())
    names = p.names
    asyncio.run(fan_out_one(p, b"_platform", replay_event("_platform"), Message(names.ops)))
    assert p.sent == []
    assert p.stats["events"] == 1  # read and done, not parked


def test_a_raw_event_under_a_reserved_tenant_on_events_is_parked_with_the_reason() -> None:
    p = FanoutPipeline(platform_index())
    raw = replay_event("_platform")
    asyncio.run(fan_out_one(p, b"_platform", raw, Message(p.names.events)))
    assert [topic for topic, _ in p.sent] == [p.names.events_invalid]
    [parked] = p.parked
    assert "reserved for the platform" in parked.reason
    assert (parked.field, parked.value) == ("tenant_id", raw)


def test_the_index_keeps_a_reserved_tenants_old_subscription_listed_but_never_matched() -> None:
    index = platform_index()
    assert index.get("sub_old") is not None
    assert [s.id for s in index.all(tenant_id="_platform")] == ["sub_old"]
    assert index.matching("_platform", "replay.started", operational=True) == []
    assert index.matching("_platform", "replay.started", include_disabled=True) == []


def test_a_tenant_scoped_replay_still_reaches_its_own_tenant() -> None:
    index = SubscriptionIndex()
    sub = Subscription(
        id="sub_a", tenant_id="acme", url="https://x.example/", event_types=["replay.*"]
    )
    index.apply(sub.id, sub.to_bytes())
    p = FanoutPipeline(index)
    asyncio.run(fan_out_one(p, b"acme", replay_event("acme"), Message(p.names.ops)))
    assert [topic for topic, _ in p.sent] == [p.names.deliveries]
