"""Custom header values are secrets unless marked otherwise (issue 17, item 8).

Users are told to authenticate with a custom header instead of URL
credentials, yet header values were stored in clear in the subscriptions
topic and listed in clear by ``GET /v1/subscriptions``. Now a secret value is
a Fernet ciphertext at rest, ``********`` in every view, and clear only in the
request that is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from streams.config import Settings
from streams.delivery.engine import DeliveryEngine, SendResult
from streams.delivery.request import PreparedRequest
from streams.errors import InvalidRequestError, StreamsError
from streams.health import FailureState, HealthMonitor, Verdict
from streams.kafka.commits import OrderedAcks
from streams.kafka.topics import TopicNames
from streams.ops.logs import JsonFormatter
from streams.records import Attempt, DeadLetter, Subscription
from streams.subscriptions import headers
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.model import (
    apply_update,
    build_subscription,
    public_view,
    reserved_headers,
)
from streams.subscriptions.secrets import SecretBox
from tests.fake_pipeline import ADMIN, dev_settings, fake_pipeline
from tests.unit.test_breaker import SETTINGS, Clock, Event, Message, delivery

KEY = Fernet.generate_key().decode()
BOX = SecretBox([KEY])
NOW = 1_800_000_000.0
PROD = Settings.from_env({})
RESERVED = reserved_headers()
SECRET_VALUE = "k-9f2c-a-value-nobody-may-read"
URL = "https://example.com/in"


def parse(value: Any) -> list[headers.Header]:
    return headers.parse(value, reserved=RESERVED)


# -- input forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"X-Team": "growth"}, [headers.Header("X-Team", "growth", True)]),
        (
            {"X-Team": {"value": "growth", "secret": False}, "X-Key": {"value": "k"}},
            [headers.Header("X-Team", "growth", False), headers.Header("X-Key", "k", True)],
        ),
        (
            [
                {"name": "X-Key", "value": "k"},
                {"name": "X-Team", "value": "growth", "secret": False},
                {"name": "X-Also", "value": "s", "secret": True},
            ],
            [
                headers.Header("X-Key", "k", True),
                headers.Header("X-Team", "growth", False),
                headers.Header("X-Also", "s", True),
            ],
        ),
        ({}, []),
        ([], []),
    ],
)
def test_both_input_forms_say_the_same_and_a_bare_value_is_secret(
    given: Any, expected: list[headers.Header]
) -> None:
    assert parse(given) == expected


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ("X-Team: growth", "headers", "an object of header name"),
        ({"X-A": {"value": "1", "secret": "false"}}, "headers.X-A.secret", "JSON booleans"),
        ({"X-A": {"secret": False}}, "headers.X-A", "needs `value`"),
        ({"X-A": {"value": "1", "public": True}}, "headers.X-A", "unknown field `public`"),
        ([{"name": "X-A"}], "headers[0]", '"name": ..., "value"'),
        ([{"name": 5, "value": "1"}], "headers[0].name", "must be a string"),
        ([{"name": "X-A", "value": "1", "hidden": 1}], "headers[0]", "unknown field `hidden`"),
        ([{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}], "headers.x-a", "twice"),
        ({"X-A": 5}, "headers.X-A", "must be a string"),
        ({"X-A": {"value": 5}}, "headers.X-A", "must be a string"),
        ({"Webhook-Signature": "x"}, "headers.Webhook-Signature", "reserved"),
        ([{"name": "Content-Type", "value": "x"}], "headers.Content-Type", "reserved"),
        ({"Bad Name": "x"}, "headers.Bad Name", "RFC 9110 token"),
        ({"X-A": "a\r\nX-B: b"}, "headers.X-A", "no control characters"),
        ({f"X-{n}": "v" for n in range(21)}, "headers", "at most 20 headers"),
    ],
)
def test_malformed_headers_are_a_422_naming_the_header(given: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words) as caught:
        parse(given)
    assert caught.value.field == field


# -- at rest and in views -----------------------------------------------------------------------


def created(body_headers: Any) -> Subscription:
    sub, _secret = build_subscription(
        {"url": URL, "event_types": ["*"], "headers": body_headers},
        tenant_id="acme",
        settings=PROD,
        box=BOX,
        now=NOW,
    )
    return sub


def test_a_secret_value_is_stored_only_as_a_ciphertext_and_shown_masked() -> None:
    sub = created({"X-Api-Key": SECRET_VALUE, "X-Team": {"value": "growth", "secret": False}})
    stored = sub.to_bytes()
    assert SECRET_VALUE.encode() not in stored
    assert b'"X-Team":"growth"' in stored  # marked not secret: clear, as asked
    again = Subscription.from_bytes(stored)
    assert again.secret_headers is not None
    assert BOX.decrypt_text(again.secret_headers["X-Api-Key"], what="x") == SECRET_VALUE
    view = public_view(again, now=NOW)
    assert view["headers"] == {"X-Team": "growth", "X-Api-Key": headers.MASK}
    assert view["secret_headers"] == ["X-Api-Key"]
    assert SECRET_VALUE not in orjson.dumps(view).decode()
    assert headers.reveal(again, BOX) == {"X-Team": "growth", "X-Api-Key": SECRET_VALUE}


def test_a_subscription_without_headers_is_not_a_pre_encryption_record() -> None:
    sub = created({})
    assert sub.secret_headers == {}
    assert not headers.is_legacy(Subscription.from_bytes(sub.to_bytes()))


def test_an_update_replaces_every_header_and_leaves_them_alone_otherwise() -> None:
    sub = created({"X-Api-Key": SECRET_VALUE})
    body = {"headers": [{"name": "X-Team", "value": "growth", "secret": False}]}
    updated = apply_update(sub, body, settings=PROD, now=NOW + 1, box=BOX)
    assert (updated.headers, updated.secret_headers) == ({"X-Team": "growth"}, {})
    # Other fields leave the sealed headers as they were (the same ciphertexts).
    renamed = apply_update(sub, {"description": "x"}, settings=PROD, now=NOW + 1, box=BOX)
    assert renamed.secret_headers == sub.secret_headers


def legacy_record(values: dict[str, str]) -> bytes:
    """A subscription as written before header values were encrypted (no secret_headers)."""
    obj = orjson.loads(created({}).to_bytes())
    del obj["secret_headers"]
    obj["headers"] = values
    return orjson.dumps(obj)


def test_a_record_written_in_clear_still_loads_is_masked_sent_as_is_and_migrates() -> None:
    old = Subscription.from_bytes(legacy_record({"Authorization": "Basic dXNlcjpwdw=="}))
    assert headers.is_legacy(old)
    assert public_view(old, now=NOW)["headers"] == {"Authorization": headers.MASK}
    assert public_view(old, now=NOW)["secret_headers"] == ["Authorization"]
    assert headers.reveal(old, BOX) == {"Authorization": "Basic dXNlcjpwdw=="}
    new = headers.migrate(old, BOX)
    assert b"dXNlcjpwdw" not in new.to_bytes()
    assert (new.headers, list(new.secret_headers or {})) == ({}, ["Authorization"])
    assert headers.reveal(new, BOX) == {"Authorization": "Basic dXNlcjpwdw=="}
    assert headers.migrate(new, BOX) is new  # once only


def test_the_repr_of_a_subscription_holds_no_header_value() -> None:
    old = Subscription.from_bytes(legacy_record({"X-Api-Key": SECRET_VALUE}))
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "sub %r", (old,), None)
    assert SECRET_VALUE not in JsonFormatter().format(record)
    assert SECRET_VALUE not in repr(old)


def test_a_ciphertext_the_keys_cannot_open_is_an_error_that_names_no_value() -> None:
    sub = created({"X-Api-Key": SECRET_VALUE})
    other = SecretBox([Fernet.generate_key().decode()])
    with pytest.raises(StreamsError, match="header X-Api-Key cannot be decrypted") as caught:
        headers.reveal(sub, other)
    assert SECRET_VALUE not in str(caught.value)
    # A new key first and the old one after it still opens what the old one sealed.
    rotated = SecretBox([Fernet.generate_key().decode(), KEY])
    assert headers.reveal(sub, rotated)["X-Api-Key"] == SECRET_VALUE


# -- the API --------------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    pipeline = fake_pipeline(dev_settings(tmp_path, secrets_key=KEY), box=BOX)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client, pipeline


AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_the_api_lists_and_shows_secret_values_masked_and_writes_them_encrypted(
    api: Any,
) -> None:
    client, pipeline = api
    body = {
        "tenant_id": "acme",
        "url": URL,
        "event_types": ["*"],
        "headers": {"X-Api-Key": SECRET_VALUE, "X-Team": {"value": "growth", "secret": False}},
    }
    resp = await client.post("/v1/subscriptions", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    answers = [await resp.text()]
    sub_id = (await resp.json())["id"]
    for path in ("/v1/subscriptions", f"/v1/subscriptions/{sub_id}"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 200
        answers.append(await resp.text())
    resp = await client.patch(
        f"/v1/subscriptions/{sub_id}", json={"headers": {"X-Api-Key": "rotated-9"}}, headers=AUTH
    )
    answers.append(await resp.text())
    assert resp.status == 200
    for text in answers:
        assert SECRET_VALUE not in text
        assert "rotated-9" not in text
    shown = orjson.loads(answers[2])
    assert shown["headers"] == {"X-Team": "growth", "X-Api-Key": headers.MASK}
    assert shown["secret_headers"] == ["X-Api-Key"]
    for raw in pipeline.written(pipeline.names.subscriptions):
        assert SECRET_VALUE.encode() not in raw
        assert b"rotated-9" not in raw
    last = pipeline.subscriptions.get(sub_id)
    assert headers.reveal(last, BOX) == {"X-Api-Key": "rotated-9"}


@pytest.mark.parametrize(("method", "path"), [("POST", "/disable"), ("PATCH", "")])
async def test_any_save_of_a_record_written_in_clear_rewrites_it_encrypted(
    api: Any, method: str, path: str
) -> None:
    client, pipeline = api
    raw = legacy_record({"X-Api-Key": SECRET_VALUE})
    sub_id = orjson.loads(raw)["id"]
    pipeline.subscriptions.apply(sub_id, raw)
    resp = await client.request(
        method, f"/v1/subscriptions/{sub_id}{path}", json={"description": "x"}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    assert SECRET_VALUE not in await resp.text()
    (written,) = pipeline.written(pipeline.names.subscriptions)
    assert SECRET_VALUE.encode() not in written
    saved = Subscription.from_bytes(written)
    assert headers.reveal(saved, BOX) == {"X-Api-Key": SECRET_VALUE}


# -- sending --------------------------------------------------------------------------------------


@dataclass
class EnginePipeline:
    subscriptions: dict[str, Subscription]
    box: SecretBox = BOX
    settings: Settings = SETTINGS
    names: TopicNames = field(default_factory=lambda: TopicNames("p."))
    stats: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[str, bytes | None]] = field(default_factory=list)
    readers: list[Any] = field(default_factory=list)

    async def send(self, topic: str, key: Any, value: bytes | None) -> Any:
        self.sent.append((topic, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class Capture:
    def __init__(self) -> None:
        self.requests: list[PreparedRequest] = []

    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        self.requests.append(request)
        return SendResult(status=200)


async def send_one(p: EnginePipeline) -> tuple[Capture, list[BaseException]]:
    sender = Capture()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    failed: list[BaseException] = []
    acks = OrderedAcks(max_pending=10, on_fatal=failed.append)
    message = Message(offset=1)
    ticket = await acks.track(Event(message))
    await eng.handle(delivery(1), message, ticket, acks)
    for _ in range(50):
        if ticket.done:
            break
        await asyncio.sleep(0)
    assert ticket.done
    return sender, failed


def engine_sub(sub: Subscription) -> Subscription:
    return dataclasses.replace(sub, id="sub_1", signing="prospektr", secrets=[])


async def test_the_request_carries_the_decrypted_value_of_a_secret_header() -> None:
    sub = engine_sub(
        created({"X-Api-Key": SECRET_VALUE, "X-Team": {"value": "g", "secret": False}})
    )
    sender, failed = await send_one(EnginePipeline({"sub_1": sub}))
    assert failed == []
    (request,) = sender.requests
    assert request.headers["X-Api-Key"] == SECRET_VALUE
    assert request.headers["X-Team"] == "g"


async def test_a_pre_encryption_record_is_sent_with_its_clear_values() -> None:
    old = engine_sub(Subscription.from_bytes(legacy_record({"X-Api-Key": SECRET_VALUE})))
    sender, failed = await send_one(EnginePipeline({"sub_1": old}))
    assert failed == []
    assert sender.requests[0].headers["X-Api-Key"] == SECRET_VALUE


async def test_an_undecryptable_header_fails_the_attempt_with_the_reason_not_the_worker() -> None:
    sub = engine_sub(created({"X-Api-Key": SECRET_VALUE}))
    p = EnginePipeline({"sub_1": sub}, box=SecretBox([Fernet.generate_key().decode()]))
    sender, failed = await send_one(p)
    assert failed == []  # the worker keeps running
    assert sender.requests == []  # nothing was sent without its header
    letters = [DeadLetter.from_bytes(v) for t, v in p.sent if t == "p.deliveries.dlq" and v]
    assert [letter.reason for letter in letters] == ["not_retryable"]
    (attempt,) = [Attempt.from_bytes(v) for t, v in p.sent if t == "p.attempts" and v]
    assert "header X-Api-Key cannot be decrypted" in (attempt.error or "")
    assert "STREAMS_SECRETS_KEY" in (attempt.error or "")


# -- an automatic disable --------------------------------------------------------------------------


async def test_an_automatic_disable_rewrites_a_clear_record_encrypted() -> None:
    old = engine_sub(Subscription.from_bytes(legacy_record({"X-Api-Key": SECRET_VALUE})))
    p = EnginePipeline({"sub_1": old})
    monitor = HealthMonitor(p)  # type: ignore[arg-type]
    verdict = Verdict(FailureState(consecutive=5), disable_reason="5 consecutive 5xx responses")
    await monitor._act(old, verdict, FailureState(consecutive=4))
    (written,) = [v for t, v in p.sent if t == "p.subscriptions" and v]
    assert SECRET_VALUE.encode() not in written
    saved = Subscription.from_bytes(written)
    assert saved.state == "disabled"
    assert headers.reveal(saved, BOX) == {"X-Api-Key": SECRET_VALUE}


def test_the_index_accepts_a_record_with_every_field_of_both_branches() -> None:
    """The subscription schema the index checks knows secret headers, a sealed URL, a chat
    id and an Idempotency-Key stamp together (a field it did not know would hide the
    subscription from every worker)."""
    sub = dataclasses.replace(
        created({"X-Api-Key": SECRET_VALUE}),
        body_format="telegram",
        signing="none",
        chat_id="@acme_alerts",
        url="https://api.telegram.org/bot***/sendMessage",
        url_secret=BOX.encrypt("https://api.telegram.org/bot1:abc/sendMessage", now=NOW),
        idempotency={"key": "a" * 64, "request": "b" * 64},
    )
    raw = orjson.loads(sub.to_bytes())
    assert {"secret_headers", "url_secret", "chat_id", "idempotency"} <= raw.keys()
    index = SubscriptionIndex()
    assert index.apply(sub.id, sub.to_bytes()) is None
    assert index.get(sub.id) == sub
    raw["secret_headers"] = {"X-Api-Key": 7}  # not a ciphertext: the record is unusable
    assert index.apply(sub.id, orjson.dumps(raw)) is not None
    assert index.get(sub.id) is None
