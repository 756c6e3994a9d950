"""The HTTP request of one attempt: fixed header vectors and header precedence."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import pytest

from streams.delivery.request import PreparedRequest, build_request
from streams.records import Delivery, Subscription
from streams.subscriptions.model import reserved_headers

# Fixed inputs: a 32-byte key 00 01 02 .. 1f, as a Standard Webhooks secret.
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode("ascii")
OLD_KEY = bytes(range(100, 132))
OLD_SECRET = "whsec_" + base64.b64encode(OLD_KEY).decode("ascii")
TIMESTAMP = 1_700_000_000
USER_AGENT = "streams-test/1.0"
BODY = '{"type":"order.created","data":{"id":"ord_1","name":"Zoë"}}'
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RESERVED = reserved_headers()  # what the delivery engine passes


def _delivery(**changes: object) -> Delivery:
    delivery = Delivery(
        delivery_id="msg_2kq7mvyx4t3a5s6dfghjklzxcv",
        event_id="evt_1",
        event_type="order.created",
        tenant_id="acme",
        subscription_id="sub_1",
        body=BODY,
    )
    return dataclasses.replace(delivery, **changes)


def _sub(headers: dict[str, str] | None = None) -> Subscription:
    return Subscription(
        id="sub_1",
        tenant_id="acme",
        url="https://hooks.example.com/in",
        event_types=["order.created"],
        headers=headers or {},
    )


def _build(
    delivery: Delivery | None = None,
    sub: Subscription | None = None,
    *,
    secrets: tuple[str, ...] = (SECRET,),
    timestamp: int = TIMESTAMP,
    reserved: frozenset[str] = RESERVED,
) -> PreparedRequest:
    return build_request(
        delivery or _delivery(),
        sub or _sub(),
        secrets=secrets,
        timestamp=timestamp,
        user_agent=USER_AGENT,
        reserved=reserved,
    )


def _expected_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1, computed here without the signing module."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _named(headers: dict[str, str], name: str) -> dict[str, str]:
    """Every header called ``name``, whatever its case."""
    return {key: value for key, value in headers.items() if key.lower() == name.lower()}


def test_a_standard_delivery_carries_exactly_these_headers() -> None:
    delivery = _delivery()
    request = _build(delivery, _sub({"X-Tenant": "acme"}))
    body = BODY.encode("utf-8")

    assert request.url == "https://hooks.example.com/in"
    assert request.body == body
    assert request.headers == {
        "X-Tenant": "acme",
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-event-type": "order.created",
        "webhook-attempt": "1",
        "webhook-id": "msg_2kq7mvyx4t3a5s6dfghjklzxcv",
        "webhook-timestamp": "1700000000",
        "webhook-signature": _expected_signature(KEY, delivery.delivery_id, TIMESTAMP, body),
    }


def test_the_signature_covers_the_utf8_body_bytes() -> None:
    request = _build()
    assert "ë".encode() in request.body
    assert request.body == BODY.encode("utf-8")
    # A signature over any other encoding would not match.
    wrong = _expected_signature(
        KEY, "msg_2kq7mvyx4t3a5s6dfghjklzxcv", TIMESTAMP, BODY.encode("latin-1")
    )
    assert request.headers["webhook-signature"] != wrong


def test_the_timestamp_is_the_one_given_for_this_attempt_and_is_signed() -> None:
    first = _build(timestamp=TIMESTAMP)
    later = _build(timestamp=TIMESTAMP + 60)
    assert later.headers["webhook-timestamp"] == str(TIMESTAMP + 60)
    assert later.headers["webhook-id"] == first.headers["webhook-id"]
    assert later.headers["webhook-signature"] == _expected_signature(
        KEY, "msg_2kq7mvyx4t3a5s6dfghjklzxcv", TIMESTAMP + 60, BODY.encode()
    )
    assert later.headers["webhook-signature"] != first.headers["webhook-signature"]


def test_during_a_rotation_the_request_carries_one_signature_per_secret_current_first() -> None:
    request = _build(secrets=(SECRET, OLD_SECRET))
    body = BODY.encode()
    msg_id = "msg_2kq7mvyx4t3a5s6dfghjklzxcv"
    assert request.headers["webhook-signature"] == " ".join(
        [
            _expected_signature(KEY, msg_id, TIMESTAMP, body),
            _expected_signature(OLD_KEY, msg_id, TIMESTAMP, body),
        ]
    )


@pytest.mark.parametrize(
    "name",
    [
        "Webhook-Signature",
        "webhook-signature",
        "WEBHOOK-ID",
        "Webhook-Timestamp",
        "Webhook-Attempt",
        "webhook-event-type",
        "Webhook-Replay",
        "Webhook-Anything",
    ],
)
def test_a_custom_webhook_header_is_dropped_whatever_its_case(name: str) -> None:
    request = _build(sub=_sub({name: "forged", "X-Kept": "yes"}))
    assert "forged" not in request.headers.values()
    assert request.headers["X-Kept"] == "yes"
    assert len(_named(request.headers, name)) <= 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("content-type", "text/plain"),
        ("Content-Type", "text/plain"),
        ("User-Agent", "evil/1.0"),
        ("Host", "internal.example"),
        ("Content-Length", "0"),
        ("Traceparent", "00-00000000000000000000000000000001-0000000000000001-01"),
        ("X-Hub-Signature-256", "sha256=forged"),
        ("Stripe-Signature", "t=1,v1=forged"),
    ],
)
def test_a_custom_reserved_header_is_dropped_whatever_its_case(name: str, value: str) -> None:
    request = _build(sub=_sub({name: value}))
    assert value not in request.headers.values()
    assert name not in request.headers or name.lower() == name
    same = _named(request.headers, name)
    assert len(same) <= 1
    if same:
        assert next(iter(same)) == name.lower()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT


def test_headers_named_in_the_reserved_set_are_dropped_and_webhook_headers_always_are() -> None:
    sub = _sub({"X-Secret-Route": "1", "Webhook-Signature": "v1,forged", "X-Other": "2"})
    request = _build(sub=sub, reserved=frozenset({"x-secret-route"}))
    assert "X-Secret-Route" not in request.headers
    assert "Webhook-Signature" not in request.headers
    assert request.headers["X-Other"] == "2"
    assert request.headers["webhook-signature"].startswith("v1,")


def test_the_signature_wins_over_everything_else() -> None:
    # Even with an empty reserved set, a custom header cannot replace the signature.
    sub = _sub({"webhook-signature": "v1,forged", "webhook-id": "msg_forged"})
    request = _build(sub=sub, reserved=frozenset())
    assert request.headers["webhook-signature"] == _expected_signature(
        KEY, "msg_2kq7mvyx4t3a5s6dfghjklzxcv", TIMESTAMP, BODY.encode()
    )
    assert request.headers["webhook-id"] == "msg_2kq7mvyx4t3a5s6dfghjklzxcv"


def test_the_replay_header_is_sent_only_when_the_delivery_is_a_replay() -> None:
    assert "webhook-replay" not in _build(_delivery()).headers
    replayed = _build(_delivery(replay_id="rpl_1"))
    assert replayed.headers["webhook-replay"] == "true"
    assert len(_named(replayed.headers, "webhook-replay")) == 1


@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_the_attempt_header_is_the_delivery_attempt_number(attempt: int) -> None:
    request = _build(_delivery(attempt=attempt))
    assert request.headers["webhook-attempt"] == str(attempt)


def test_the_attempt_number_does_not_change_the_signature() -> None:
    first = _build(_delivery(attempt=1))
    third = _build(_delivery(attempt=3))
    assert first.headers["webhook-signature"] == third.headers["webhook-signature"]
    assert first.headers["webhook-id"] == third.headers["webhook-id"]


def test_the_events_traceparent_is_passed_through_unchanged() -> None:
    request = _build(_delivery(traceparent=TRACEPARENT))
    assert request.headers["traceparent"] == TRACEPARENT


def test_no_traceparent_is_sent_when_the_event_had_none() -> None:
    assert _named(_build(_delivery(traceparent=None)).headers, "traceparent") == {}
    assert _named(_build(_delivery(traceparent="")).headers, "traceparent") == {}


def test_the_event_type_header_is_the_deliverys_event_type() -> None:
    request = _build(_delivery(event_type="invoice.paid"))
    assert request.headers["webhook-event-type"] == "invoice.paid"


def test_building_a_request_does_not_change_the_subscriptions_headers() -> None:
    custom = {"X-Tenant": "acme", "Webhook-Signature": "v1,forged"}
    sub = _sub(dict(custom))
    request = _build(sub=sub)
    request.headers["X-Tenant"] = "changed"
    assert sub.headers == custom
