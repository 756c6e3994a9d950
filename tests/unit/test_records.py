"""Records round-trip through bytes, agree with their JSON Schemas, and fail loudly."""

from __future__ import annotations

import base64

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from streams.errors import DecodeError
from streams.records import (
    Attempt,
    DeadLetter,
    Delivery,
    EventEnvelope,
    Subscription,
    delivery_id_for,
)
from streams.schemas import record_schema


def _validator(name: str) -> Draft202012Validator:
    registry: Registry = Registry()
    for other in ("delivery", "attempt", "dead_letter", "subscription"):
        schema = record_schema(other)
        registry = registry.with_resource(f"{other}.json", Resource.from_contents(schema))
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return Draft202012Validator(record_schema(name), registry=registry)


DELIVERY = Delivery(
    delivery_id=delivery_id_for("evt_1", "sub_1"),
    event_id="evt_1",
    event_type="prospect.added",
    tenant_id="t_1",
    subscription_id="sub_1",
    body='{"type":"prospect.added","data":{"name":"Zoë \\"Q\\" ☃"}}',
    attempt=1,
    created_at=1_700_000_000.5,
)


def test_a_delivery_round_trips_its_exact_body_bytes() -> None:
    decoded = Delivery.from_bytes(DELIVERY.to_bytes())
    assert decoded == DELIVERY
    assert decoded.body_bytes == DELIVERY.body.encode("utf-8")


def test_the_delivery_id_is_stable_for_an_event_and_subscription_pair() -> None:
    # Fixed vector: sha256("evt_1\x00sub_1"), base32, first 26 characters, lower-case.
    assert delivery_id_for("evt_1", "sub_1") == "msg_x243i6naj7tpaybiukp53cn2xs"
    assert delivery_id_for("evt_1", "sub_1") != delivery_id_for("evt_1", "sub_2")
    assert delivery_id_for("evt_1", "sub_1") != delivery_id_for("evt_2", "sub_1")


def test_the_delivery_id_is_the_rfc4648_base32_of_the_digest() -> None:
    # The id is stored and sent as webhook-id: its encoding must never drift.
    import hashlib
    import random

    rng = random.Random(4648)
    for n in range(2000):
        event_id = f"evt_{rng.getrandbits(64):x}"
        sub_id = f"sub_{n}" + "é" * (n % 3)
        digest = hashlib.sha256(f"{event_id}\x00{sub_id}".encode()).digest()
        expected = "msg_" + base64.b32encode(digest).decode("ascii")[:26].lower()
        assert delivery_id_for(event_id, sub_id) == expected


def test_next_attempt_keeps_the_delivery_id_and_body() -> None:
    retry = DELIVERY.next_attempt(due_at=123.0, status=503, error=None)
    assert (retry.delivery_id, retry.body, retry.attempt) == (
        DELIVERY.delivery_id,
        DELIVERY.body,
        2,
    )
    assert (retry.due_at, retry.last_status) == (123.0, 503)


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("delivery", DELIVERY),
        (
            "attempt",
            Attempt(
                delivery_id=DELIVERY.delivery_id,
                event_id="evt_1",
                event_type="prospect.added",
                tenant_id="t_1",
                subscription_id="sub_1",
                attempt=1,
                at=1.0,
                duration_ms=2.5,
                outcome="retry",
                status=500,
                response_snippet="oops",
            ),
        ),
        (
            "dead_letter",
            DeadLetter(
                delivery=DELIVERY.to_dict(),
                reason="exhausted",
                attempts=10,
                dead_lettered_at=2.0,
                last_status=500,
            ),
        ),
        (
            "subscription",
            Subscription(
                id="sub_1",
                tenant_id="t_1",
                url="https://example.com/hook",
                event_types=["prospect.*"],
                secrets=[{"ciphertext": "gAAAA", "created_at": 1.0, "expires_at": None}],
            ),
        ),
    ],
)
def test_every_record_matches_its_json_schema_and_round_trips(name: str, record: object) -> None:
    data = record.to_dict()  # type: ignore[attr-defined]
    errors = list(_validator(name).iter_errors(data))
    assert errors == []
    assert type(record).from_bytes(record.to_bytes()) == record  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "e", "type": "a.b", "tenant_id": "t", "occurred_at": "x"}', "`data`"),
        (b'{"id": 7, "type": "a.b", "tenant_id": "t", "occurred_at": "x", "data": {}}', "`id`"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_the_raw_bytes(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        EventEnvelope.from_bytes(raw)
    assert message in str(info.value)
    assert info.value.raw == raw


def test_a_boolean_is_not_accepted_where_a_number_is_required() -> None:
    bad = DELIVERY.to_dict() | {"attempt": True}
    import orjson

    with pytest.raises(DecodeError, match="`attempt` must be int"):
        Delivery.from_bytes(orjson.dumps(bad))


ATTEMPT = Attempt(
    delivery_id="dlv_1",
    event_id="evt_1",
    event_type="prospect.added",
    tenant_id="t_1",
    subscription_id="sub_1",
    attempt=2,
    at=1_800_000_000.5,
    duration_ms=12.5,
    outcome="retry",
    status=503,
    error="HTTP 503",
)


def test_a_row_holds_the_fields_in_order_and_builds_the_same_record() -> None:
    import orjson

    row = Attempt.row_from_bytes(ATTEMPT.to_bytes())
    assert row[:3] == ("dlv_1", "evt_1", "prospect.added")
    assert Attempt(*row) == ATTEMPT
    # Absent optional fields take their defaults; unknown keys are ignored.
    data = {k: v for k, v in ATTEMPT.to_dict().items() if k not in ("sent", "replay_id")}
    row = Attempt.row_from_bytes(orjson.dumps(data | {"later_field": 1}))
    assert Attempt(*row) == ATTEMPT
    assert row[-2] is True  # sent
    assert row[-1] is False  # gone


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attempt": "2"}, "`attempt` must be int"),
        ({"at": None}, "`at` must be float, got missing"),
        ({"event_type": None}, "missing field `event_type`"),  # required by the dataclass only
    ],
)
def test_a_row_is_refused_where_the_record_would_be(
    change: dict[str, object], message: str
) -> None:
    import orjson

    data = {k: v for k, v in (ATTEMPT.to_dict() | change).items() if v is not None}
    raw = orjson.dumps(data)
    with pytest.raises(DecodeError, match=message):
        Attempt.row_from_bytes(raw)
    with pytest.raises(DecodeError):
        Attempt.from_bytes(raw)


def test_a_row_gets_a_fresh_default_for_each_field_with_a_factory() -> None:
    import orjson

    data = {
        "id": "sub_1",
        "tenant_id": "t_1",
        "url": "https://example.com/hook",
        "event_types": ["a.b"],
        "secrets": [],
    }
    first = Subscription.row_from_bytes(orjson.dumps(data))
    second = Subscription.row_from_bytes(orjson.dumps(data))
    assert Subscription(*first) == Subscription.from_bytes(orjson.dumps(data))
    mutable = [i for i, v in enumerate(first) if isinstance(v, (list, dict)) and not v]
    assert mutable, "Subscription has a field with a default factory"
    for i in mutable:
        assert first[i] is not second[i]
