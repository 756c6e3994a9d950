"""Events are validated against schemas/ with errors that name the field at fault."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.errors import InvalidEventError, PayloadTooLargeError, UnknownEventTypeError
from streams.schemas import (
    MAX_NESTING,
    MAX_RANKED_ERRORS,
    SchemaRegistry,
    too_deep,
    wide_integer,
)

REGISTRY = SchemaRegistry.load()

PROSPECT = {
    "id": "p_1",
    "name": "Sunshine Promo Co.",
    "website": "https://sunshinepromo.com",
    "email": "sales@sunshinepromo.com",
    "phone": "+1 407-555-0101",
    "address": "1 Main St",
    "city": "Orlando",
    "state": "FL",
    "postal_code": "32801",
    "segment": "promo",
    "lead_potential": "high",
    "lead_reasoning": "Lists Disney, Universal, ...",
    "classification_confidence": "0.85",
    "notable_clients": ["Disney", "Universal"],
    "large_run_indicators": [],
    "status": "qualified",
    "created_at": "2026-04-26T12:34:56.000Z",
}

CRAWL = {
    "organization_id": "org_01H",
    "run_id": "run_01H",
    "watcher_id": "wch_01H",
    "watcher_name": "SaaS founders",
    "platform": "reddit",
    "subreddit": "SaaS",
    "status": "ok",
    "posts_fetched": 100,
    "matched": 12,
    "tagged": 8,
    "new_posts": 5,
    "errored": False,
    "error": None,
    "duration_ms": 842,
    "started_at": "2026-04-29T19:12:32.579Z",
}


def envelope(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "type": event_type,
        "tenant_id": "t_1",
        "occurred_at": "2026-04-29T19:12:33.421Z",
        "data": data,
        **extra,
    }


def test_the_three_documented_event_types_have_schemas() -> None:
    assert {"prospect.added", "crawl.run.completed", "alert.fired"} <= set(REGISTRY.event_types)


def test_the_documented_example_payloads_are_valid() -> None:
    assert REGISTRY.validate(envelope("prospect.added", PROSPECT)).data == PROSPECT
    assert REGISTRY.validate(envelope("crawl.run.completed", CRAWL)).type == "crawl.run.completed"


def test_an_errored_run_must_say_status_error_and_carry_the_message() -> None:
    bad = CRAWL | {"errored": True, "status": "ok", "error": None}
    with pytest.raises(InvalidEventError) as info:
        REGISTRY.validate(envelope("crawl.run.completed", bad))
    assert info.value.field in ("data.status", "data.error")
    good = CRAWL | {"errored": True, "status": "error", "error": "reddit 503"}
    REGISTRY.validate(envelope("crawl.run.completed", good))


@pytest.mark.parametrize(
    ("event", "field", "text"),
    [
        (
            envelope("prospect.added", {k: v for k, v in PROSPECT.items() if k != "name"}),
            "data.name",
            "'name' is a required property",
        ),
        (
            envelope("prospect.added", PROSPECT | {"notable_clients": "Disney"}),
            "data.notable_clients",
            "is not of type 'array'",
        ),
        (
            envelope("crawl.run.completed", CRAWL | {"posts_fetched": -1}),
            "data.posts_fetched",
            "less than the minimum",
        ),
        (envelope("prospect.added", PROSPECT, occurred_at="yesterday"), "occurred_at", "match"),
        (envelope("prospect.added", PROSPECT, tenant_id=""), "tenant_id", "non-empty"),
        (
            {k: v for k, v in envelope("prospect.added", PROSPECT).items() if k != "id"},
            "id",
            "'id' is a required property",
        ),
        (envelope("Prospect Added", PROSPECT), "type", "match"),
        (envelope("prospect.added", PROSPECT, extra=1), "", "Additional properties"),
    ],
)
def test_a_schema_violation_names_the_field_at_fault(
    event: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        REGISTRY.validate(event)
    assert info.value.field == field
    assert text in str(info.value)


def test_an_unknown_event_type_says_which_schema_file_to_add() -> None:
    with pytest.raises(UnknownEventTypeError) as info:
        REGISTRY.validate(envelope("invoice.paid", {}))
    assert "schemas/events/invoice.paid.json" in str(info.value)
    assert info.value.field == "type"


def test_an_oversized_event_is_refused_before_parsing() -> None:
    raw = orjson.dumps(envelope("prospect.added", PROSPECT | {"lead_reasoning": "x" * 5000}))
    with pytest.raises(PayloadTooLargeError, match="STREAMS_MAX_PAYLOAD_BYTES"):
        REGISTRY.decode(raw, max_bytes=4096)
    assert REGISTRY.decode(raw, max_bytes=len(raw)).id == "evt_1"


def test_bytes_that_are_not_json_are_an_invalid_event() -> None:
    with pytest.raises(InvalidEventError, match="not JSON"):
        REGISTRY.decode(b"\x00\x01", max_bytes=100)


def test_event_types_declare_the_key_of_the_keyed_body_shape() -> None:
    assert REGISTRY.body_key("prospect.added") == "prospect"
    assert REGISTRY.body_key("crawl.run.completed") == "run"
    assert REGISTRY.body_key("never.declared") == "never"


def test_extra_schema_directories_add_event_types(tmp_path: Any) -> None:
    (tmp_path / "invoice.paid.json").write_text(
        '{"type": "object", "required": ["amount"], "x-body-key": "invoice"}'
    )
    registry = SchemaRegistry.load(extra_dirs=[tmp_path])
    assert registry.validate(envelope("invoice.paid", {"amount": 5})).data == {"amount": 5}
    assert registry.body_key("invoice.paid") == "invoice"


def test_streams_event_schemas_adds_a_directory_of_event_types(tmp_path: Any) -> None:
    from streams.config import Settings

    (tmp_path / "invoice.paid.json").write_text('{"type": "object"}')
    registry = SchemaRegistry.from_settings(
        Settings.from_env({"STREAMS_EVENT_SCHEMAS": str(tmp_path)})
    )
    assert "invoice.paid" in registry.event_types
    assert "invoice.paid" not in SchemaRegistry.from_settings(Settings.from_env({})).event_types


@pytest.mark.parametrize(
    ("value", "limit", "where"),
    [
        ({"a": [{"b": [[1]]}]}, 5, None),
        ({"a": [{"b": [[1]]}]}, 4, "a[0].b[0]"),
        ({"a": [{"b": [[1]]}]}, 3, "a[0].b"),
        ([[[]]], 2, "[0][0]"),
        ({"x": {"y": {}}}, 2, "x.y"),
        ({}, 0, "(root)"),
        ("text", 0, None),
        (7, 1, None),
    ],
)
def test_too_deep_names_the_first_path_past_the_limit(value: Any, limit: int, where: Any) -> None:
    assert too_deep(value, limit) == where


def test_an_event_nested_too_deep_is_invalid_and_names_where() -> None:
    data = dict(PROSPECT)
    raw = orjson.dumps(envelope("prospect.added", data))
    deep = raw[:-2] + b',"x":' + b"[" * 200 + b"]" * 200 + b"}}"
    with pytest.raises(InvalidEventError, match=f"deeper than {MAX_NESTING} levels") as info:
        REGISTRY.decode(deep, max_bytes=10_000)
    assert info.value.field.startswith("data.x[0][0]")


@pytest.mark.parametrize("name", ["id", "tenant_id", "occurred_at", "traceparent"])
def test_an_envelope_field_with_a_trailing_line_break_is_invalid(name: str) -> None:
    # The schema patterns end in `$`, which Python's re also matches before a final "\n".
    obj = envelope("prospect.added", PROSPECT)
    obj["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    REGISTRY.validate(dict(obj))
    obj[name] = obj[name] + "\n"
    with pytest.raises(InvalidEventError, match="line break") as info:
        REGISTRY.validate(obj)
    assert info.value.field == name


def test_only_the_first_errors_are_ranked_so_a_flood_of_them_stays_cheap() -> None:
    # Ranking all 20,000 errors took seconds of the worker's loop at 85,000 items.
    data = dict(REGISTRY.sample("alert.fired"), matched_keywords=[[]] * 20_000)
    with pytest.raises(InvalidEventError) as info:
        REGISTRY.validate(envelope("alert.fired", data))
    index = int(info.value.field.rsplit(".", 1)[1])
    assert index < MAX_RANKED_ERRORS


def with_number(literal: bytes) -> bytes:
    """A valid prospect.added event with ``data.lead_score`` written as ``literal``."""
    raw = orjson.dumps(envelope("prospect.added", PROSPECT))
    return raw[:-2] + b',"lead_score":' + literal + b"}}"


@pytest.mark.parametrize(
    "literal",
    [
        b"12345678901234567890123",  # the example: orjson read 1.2345678901234568e+22
        b"18446744073709551616",  # 2**64
        b"-9223372036854775809",  # -2**63 - 1
        b"1" + b"0" * 300,  # as long as orjson reads (longer is infinity: not JSON to it)
    ],
)
def test_an_integer_beyond_64_bits_is_invalid_and_names_where(literal: bytes) -> None:
    with pytest.raises(InvalidEventError, match="integer beyond 64 bits") as info:
        REGISTRY.decode(with_number(literal), max_bytes=100_000)
    assert info.value.field == "data.lead_score"
    assert "send it as a string" in str(info.value)
    assert len(str(info.value)) < 400  # the digits are shown cut


@pytest.mark.parametrize(
    "literal",
    [
        b"18446744073709551615",  # 2**64 - 1: orjson keeps it exact
        b"-9223372036854775808",  # -2**63
        b"1234567890123456789.5",  # a float with many digits is a float
        b"1e30",
        b'"123456789012345678901234567890"',  # digits in a string
    ],
)
def test_numbers_within_64_bits_and_long_digit_strings_are_accepted(literal: bytes) -> None:
    event = REGISTRY.decode(with_number(literal), max_bytes=100_000)
    assert orjson.dumps(event.data["lead_score"]) == orjson.dumps(orjson.loads(literal))


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'{"a": [1, {"b": 99999999999999999999}]}', ("a[1].b", "99999999999999999999")),
        (b"[0, -99999999999999999999]", ("[1]", "-99999999999999999999")),
        (b"99999999999999999999", ("(root)", "99999999999999999999")),
        (b'{"a": 1, "b": [18446744073709551615]}', None),
        # Past Python's 4,300-digit int() limit: never converted, so no ValueError.
        (b"[" + b"7" * 5000 + b"]", ("[0]", "7" * 5000)),
    ],
)
def test_wide_integer_names_the_first_in_document_order(
    raw: bytes, found: tuple[str, str] | None
) -> None:
    assert wide_integer(raw) == found


def test_a_record_without_a_value_is_an_invalid_event_not_a_type_error() -> None:
    with pytest.raises(InvalidEventError, match="no value"):
        REGISTRY.decode(None, max_bytes=100)
