"""What a first-time user tripped over in the API (issue 17, items 9 and 16).

- A compressed body that does not decompress is a 400 saying so, on every route
  that reads a body, for every encoding aiohttp decodes (it was a 500 and a
  traceback).
- A create whose answer was lost (the client timed out) can be repeated with the
  same ``Idempotency-Key``: it answers the subscription the first request made and
  its secret, instead of making a second one whose secret nobody saw.
- A write while Kafka does not answer is a 503 before anything is written (the
  record used to be queued and written when the broker came back, after the
  caller had been told the request failed).

The API runs in-process on fakes (no Kafka): the fake output says whether Kafka
answers, and records every write.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from streams.api import register_api
from streams.config import Settings
from streams.errors import KafkaUnavailableError
from streams.kafka.topics import TopicNames
from streams.records import Subscription
from streams.schemas import SchemaRegistry
from streams.subscriptions import idempotency
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.secrets import SecretBox

ADMIN = "adm_test_0123456789abcdef"
URL = "http://127.0.0.1:9/hooks/in"
BODY = {"tenant_id": "acme", "url": URL, "event_types": ["prospect.added"]}


class FakeOutput:
    """Kafka as the API's writes see it: answering or not, confirming or not."""

    def __init__(self) -> None:
        self.answers = True
        self.checks = 0

    async def check_reachable(self, topic: str, timeout_s: float) -> None:
        self.checks += 1
        if not self.answers:
            raise KafkaUnavailableError(f"Kafka did not answer within {timeout_s:g}s")


class Pipeline(SimpleNamespace):
    async def send(self, topic: str, key: Any, value: bytes | None) -> Any:
        self.writes.append((topic, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.confirms:
            if topic == self.names.subscriptions:
                self.subscriptions.apply(key.decode() if isinstance(key, bytes) else key, value)
            future.set_result(None)
        return future

    is_ready = True


def settings_for(tmp_path: Path, key: str) -> Settings:
    return Settings.from_env(
        {
            "STREAMS_ENV": "development",
            "STREAMS_ADMIN_TOKEN": ADMIN,
            "STREAMS_SECRETS_KEY": key,
            "STREAMS_STATE_DIR": str(tmp_path),
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8",
        }
    )


def make_pipeline(settings: Settings, subscriptions: SubscriptionIndex) -> Pipeline:
    return Pipeline(
        settings=settings,
        app=SimpleNamespace(web=SimpleNamespace(web_app=web.Application())),
        names=TopicNames(settings.topic_prefix),
        registry=SchemaRegistry.from_settings(settings),
        box=SecretBox.from_settings(settings),
        subscriptions=subscriptions,
        output=FakeOutput(),
        readers=[],
        extras={},
        stats=Counter(),
        writes=[],
        confirms=True,
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Pipeline]]:
    pipeline = make_pipeline(
        settings_for(tmp_path, Fernet.generate_key().decode()), SubscriptionIndex()
    )
    register_api(pipeline)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


def auth(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}", **extra}


# -- item 9: bodies that do not decompress -------------------------------------------------

NOT_GZIP = b"\x1f\x8b\x08\x00these bytes are not gzip"
NOT_DEFLATE = b"\x78\x9c these bytes are not deflate"


@pytest.mark.parametrize(
    ("encoding", "raw"),
    [("gzip", NOT_GZIP), ("deflate", NOT_DEFLATE), ("GZIP", NOT_GZIP)],
)
async def test_a_corrupt_compressed_body_is_a_400_on_every_route_that_reads_one(
    api: tuple[TestClient[Any, Any], Pipeline], encoding: str, raw: bytes
) -> None:
    client, _ = api
    created = await client.post("/v1/subscriptions", json=BODY, headers=auth())
    assert created.status == 201, await created.text()
    sub_id = (await created.json())["id"]
    routes = [
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.method in ("POST", "PATCH", "PUT") and r.resource is not None
    ]
    assert len(routes) >= 8, routes  # every body-taking route of the API is here
    for method, path in routes:
        if "{id}" in path and not path.startswith("/v1/subscriptions/"):
            continue  # an unknown delivery or replay is a 404 before any body is read
        resp = await client.request(
            method,
            path.replace("{id}", sub_id),
            data=raw,
            headers=auth(**{"Content-Encoding": encoding, "Content-Type": "application/json"}),
        )
        assert resp.status == 400, (method, path, resp.status, await resp.text())
        err = (await resp.json())["error"]
        assert err["code"] == "bad_request"
        assert f"not valid {encoding}" in err["message"], err


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_valid_compressed_body_is_read(
    api: tuple[TestClient[Any, Any], Pipeline], encoding: str
) -> None:
    client, _ = api
    import orjson

    plain = orjson.dumps(BODY)
    raw = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    resp = await client.post(
        "/v1/subscriptions",
        data=raw,
        headers=auth(**{"Content-Encoding": encoding, "Content-Type": "application/json"}),
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_encodings_without_a_decoder_installed_are_a_400_too(
    api: tuple[TestClient[Any, Any], Pipeline], encoding: str
) -> None:
    """aiohttp refuses these while parsing the headers (its own 400 with the reason)
    when Brotli or zstandard is not installed, and decodes them like gzip when it is."""
    client, _ = api
    resp = await client.post(
        "/v1/subscriptions",
        data=b"\x00\x01 not compressed at all",
        headers=auth(**{"Content-Encoding": encoding, "Content-Type": "application/json"}),
    )
    assert resp.status == 400, await resp.text()


# -- item 16: Idempotency-Key, and 503 before writing ---------------------------------------


async def test_the_same_idempotency_key_answers_the_same_subscription_and_secret(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, pipeline = api
    key = {"Idempotency-Key": "0b8f2c1e-4c57-4a53-9a0e-2f3d8c7b6a51"}
    first = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    assert first.status == 201
    again = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    assert again.status == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    a, b = await first.json(), await again.json()
    assert b["id"] == a["id"]
    assert b["signing_secret"] == a["signing_secret"]
    assert a["signing_secret"].startswith("whsec_")
    assert len(pipeline.subscriptions) == 1
    other = await client.post(
        "/v1/subscriptions", json=BODY, headers=auth(**{"Idempotency-Key": "another"})
    )
    assert (await other.json())["id"] != a["id"]
    plain = await client.post("/v1/subscriptions", json=BODY, headers=auth())
    assert (await plain.json())["id"] not in (a["id"], (await other.json())["id"])
    assert len(pipeline.subscriptions) == 3


async def test_concurrent_requests_with_one_key_create_once(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, pipeline = api
    key = {"Idempotency-Key": "k-concurrent"}
    answers = await asyncio.gather(
        *(client.post("/v1/subscriptions", json=BODY, headers=auth(**key)) for _ in range(5))
    )
    ids = {(await r.json())["id"] for r in answers}
    assert len(ids) == 1
    assert len(pipeline.subscriptions) == 1


async def test_a_key_reused_for_a_different_request_is_a_422(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, _ = api
    key = {"Idempotency-Key": "k-1"}
    assert (await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))).status == 201
    other = {**BODY, "event_types": ["alert.fired"]}
    resp = await client.post("/v1/subscriptions", json=other, headers=auth(**key))
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "Idempotency-Key"


async def test_keys_are_per_tenant(api: tuple[TestClient[Any, Any], Pipeline]) -> None:
    client, pipeline = api
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    b = await client.post(
        "/v1/subscriptions", json={**BODY, "tenant_id": "globex"}, headers=auth(**key)
    )
    assert (await a.json())["id"] != (await b.json())["id"]
    assert len(pipeline.subscriptions) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9"])
async def test_a_malformed_key_is_a_422_naming_the_header(
    api: tuple[TestClient[Any, Any], Pipeline], key: str
) -> None:
    client, pipeline = api
    headers = auth()
    headers["Idempotency-Key"] = key
    resp = await client.post("/v1/subscriptions", json=BODY, headers=headers)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == "Idempotency-Key"
    assert pipeline.writes == []


async def test_a_key_answers_from_another_worker_that_read_the_record(
    api: tuple[TestClient[Any, Any], Pipeline], tmp_path: Path
) -> None:
    """The key travels on the subscription record: a second worker with the same
    STREAMS_SECRETS_KEY that applied it answers the same subscription and secret."""
    client, pipeline = api
    key = {"Idempotency-Key": "k-cross"}
    first = await (await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))).json()
    (_, raw), *_ = pipeline.writes
    other_index = SubscriptionIndex()
    other_index.apply(first["id"], raw)
    other = make_pipeline(
        settings_for(tmp_path / "w2", pipeline.settings.secrets_key.reveal()), other_index
    )
    register_api(other)
    async with TestClient(TestServer(other.app.web.web_app)) as second:
        again = await second.post("/v1/subscriptions", json=BODY, headers=auth(**key))
        body = await again.json()
    assert (body["id"], body["signing_secret"]) == (first["id"], first["signing_secret"])
    assert other.writes == []
    assert "k-cross" not in raw.decode()  # the topic holds a digest, not the key


async def test_a_key_is_honoured_for_a_bounded_time(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, pipeline = api
    key = {"Idempotency-Key": "k-old"}
    first = await (await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))).json()
    sub = pipeline.subscriptions.get(first["id"])
    assert sub is not None
    aged = Subscription.from_dict(
        {**sub.to_dict(), "created_at": sub.created_at - idempotency.KEY_TTL_S - 1}
    )
    pipeline.subscriptions.apply(sub.id, aged.to_bytes())
    again = await (await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))).json()
    assert again["id"] != first["id"]


async def test_a_key_whose_secret_was_rotated_since_is_a_409_not_another_secret(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, _ = api
    key = {"Idempotency-Key": "k-rot"}
    first = await (await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))).json()
    rotated = await client.post(
        f"/v1/subscriptions/{first['id']}/rotate-secret", json={"grace": "0s"}, headers=auth()
    )
    assert rotated.status == 200
    again = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    assert again.status == 409
    assert "rotated" in (await again.json())["error"]["message"]


async def test_an_unsigned_subscription_replays_without_a_secret(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, _ = api
    body = {**BODY, "signing": "prospektr", "secret": None}
    key = {"Idempotency-Key": "k-unsigned"}
    first = await (await client.post("/v1/subscriptions", json=body, headers=auth(**key))).json()
    again = await client.post("/v1/subscriptions", json=body, headers=auth(**key))
    assert again.status == 201
    replayed = await again.json()
    assert replayed["id"] == first["id"]
    assert replayed["signing_secret"] is None is first["signing_secret"]


async def test_writes_while_kafka_does_not_answer_are_a_503_and_write_nothing(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, pipeline = api
    created = await (await client.post("/v1/subscriptions", json=BODY, headers=auth())).json()
    pipeline.writes.clear()
    pipeline.output.answers = False
    sub = f"/v1/subscriptions/{created['id']}"
    for method, path, body in [
        ("POST", "/v1/subscriptions", BODY),
        ("PATCH", sub, {"description": "x"}),
        ("POST", sub + "/rotate-secret", {}),
        ("POST", sub + "/disable", {}),
        ("DELETE", sub, None),
        ("POST", "/v1/tokens", {"tenant_id": "acme"}),
    ]:
        resp = await client.request(method, path, json=body, headers=auth())
        assert resp.status == 503, (method, path, await resp.text())
        assert (await resp.json())["error"]["code"] == "unavailable"
    assert pipeline.writes == []


async def test_a_write_kafka_does_not_confirm_in_time_is_a_503_saying_it_may_land(
    api: tuple[TestClient[Any, Any], Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.api import writes

    monkeypatch.setattr(writes, "CONFIRM_TIMEOUT_S", 0.2)
    client, pipeline = api
    pipeline.confirms = False
    key = {"Idempotency-Key": "k-slow"}
    resp = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    assert resp.status == 503
    assert "may still be applied" in (await resp.json())["error"]["message"]
    # The write lands later; the retry with the same key answers it, with its secret.
    (_, raw), *_ = pipeline.writes
    sub = Subscription.from_bytes(raw)
    pipeline.subscriptions.apply(sub.id, raw)
    again = await client.post("/v1/subscriptions", json=BODY, headers=auth(**key))
    assert again.status == 201
    body = await again.json()
    assert body["id"] == sub.id
    assert body["signing_secret"] == pipeline.box.decrypt(sub.secrets[0])


# -- the pure parts, fixed vectors -------------------------------------------------------


def test_the_key_digest_is_sha256_of_tenant_nul_key() -> None:
    # printf 'acme\0k' | sha256sum
    digest = "8b7ae2f482bc2a7c1d53cda7717e27bf73d52b3c661d5db40ac12533585d8d0a"
    assert idempotency.key_digest("acme", "k") == digest
    assert idempotency.key_digest("acme2", "k") != digest


def test_the_request_digest_ignores_key_order_and_never_hashes_a_secret() -> None:
    # printf '{"event_types":["*"],"url":"https://a.example/x"}' | sha256sum
    plain = "579924be59ad191189b992ff079537ae66b006ed37b0344497fce3441774dc32"
    # the same with "secret":"(given)" between them, sorted
    given = "e59d06d8ff96848ca93e366e99016380fe2d19eda4dca04a910a7fc0123614b8"
    url = "https://a.example/x"
    assert idempotency.request_digest({"url": url, "event_types": ["*"]}) == plain
    assert idempotency.request_digest({"event_types": ["*"], "url": url}) == plain
    for secret in ("hunter2", "another"):
        body = {"url": url, "event_types": ["*"], "secret": secret}
        assert idempotency.request_digest(body) == given
    unsigned = {"url": url, "event_types": ["*"], "secret": None}
    assert idempotency.request_digest(unsigned) not in (plain, given)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("a", "a"), ("0b8f2c1e-4c57-4a53-9a0e-2f3d8c7b6a51",) * 2, ("~" * 255,) * 2],
)
def test_parse_key_accepts_visible_ascii(header: str | None, expected: str | None) -> None:
    assert idempotency.parse_key(header) == expected


# -- item 20: warnings for patterns that match nothing; one duration form everywhere --------


async def test_create_and_update_warn_of_a_pattern_that_matches_no_known_type(
    api: tuple[TestClient[Any, Any], Pipeline],
) -> None:
    client, _ = api
    typo = {**BODY, "event_types": ["prospect.creatd", "alert.*"]}
    created = await client.post("/v1/subscriptions", json=typo, headers=auth())
    assert created.status == 201  # accepted: a type may be added later
    (warning,) = (await created.json())["warnings"]
    assert warning.startswith("`prospect.creatd` matches no known event type")
    assert "did you mean prospect.added?" in warning
    sub_id = (await created.json())["id"]
    fine = await client.patch(
        f"/v1/subscriptions/{sub_id}", json={"event_types": ["endpoint.*"]}, headers=auth()
    )
    assert "warnings" not in await fine.json()
    again = await client.patch(
        f"/v1/subscriptions/{sub_id}", json={"event_types": ["invoice.paid"]}, headers=auth()
    )
    assert (await again.json())["warnings"][0].startswith("`invoice.paid`")
    plain = await client.post("/v1/subscriptions", json=BODY, headers=auth())
    assert "warnings" not in await plain.json()


@pytest.mark.parametrize("grace", ["10", 10, "10s", 2.5])
async def test_rotate_secret_takes_every_duration_form(
    api: tuple[TestClient[Any, Any], Pipeline], grace: Any
) -> None:
    client, _ = api
    created = await (await client.post("/v1/subscriptions", json=BODY, headers=auth())).json()
    resp = await client.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret", json={"grace": grace}, headers=auth()
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["secret"]["previous_valid_until"] is not None


@pytest.mark.parametrize("grace", ["ten", -1, True, "nan", [1]])
async def test_rotate_secret_refuses_what_is_not_a_duration(
    api: tuple[TestClient[Any, Any], Pipeline], grace: Any
) -> None:
    client, _ = api
    created = await (await client.post("/v1/subscriptions", json=BODY, headers=auth())).json()
    resp = await client.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret", json={"grace": grace}, headers=auth()
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "grace"


async def test_the_enable_hint_names_what_still_works_after_enabling(
    api: tuple[TestClient[Any, Any], Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enabling again finds nothing parked (it is enabled now): the hint says so no more."""
    from streams.deadletter import replay as dlq

    monkeypatch.setattr(dlq, "replay", lambda *a, **k: dlq.ReplaySummary(replay_id="r1", matched=2))
    client, _ = api
    created = await (await client.post("/v1/subscriptions", json=BODY, headers=auth())).json()
    path = f"/v1/subscriptions/{created['id']}"
    assert (await client.post(path + "/disable", json={}, headers=auth())).status == 200
    parked = (await (await client.post(path + "/enable", json={}, headers=auth())).json())["parked"]
    assert parked["count"] == 2
    assert "POST this path again" not in parked["replay"]
    assert f"--subscription {created['id']} --reason subscription_disabled" in parked["replay"]
    again = await (await client.post(path + "/enable", json={}, headers=auth())).json()
    assert "parked" not in again
