"""The fastjsonschema layer never accepts what jsonschema (the reference) rejects."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from streams.schemas import SchemaRegistry, _Validator, fast_compatible

ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, 1.0, 1.5, -1, 10**20, "", "x", "x" * 600, "1", [], [1], {}, {"a": 1},
]  # fmt: skip


def mutations(instance: Any) -> Iterator[Any]:
    """The instance, then each field dropped or replaced by each odd value, two levels deep."""
    yield instance
    if not isinstance(instance, dict):
        return
    for key in list(instance):
        dropped = dict(instance)
        del dropped[key]
        yield dropped
        for odd in ODD_VALUES:
            yield {**instance, key: odd}
        for inner in mutations(instance[key]):
            if inner is not instance[key]:
                yield {**instance, key: inner}
    yield {**instance, "unexpected_field": 1}


def _agree(validator: _Validator, instance: Any) -> tuple[bool, bool]:
    reference = validator.reference.is_valid(instance)
    fast = True
    try:
        validator.fast(copy.deepcopy(instance))
    except Exception:
        fast = False
    return fast, reference


def test_every_built_in_schema_takes_the_fast_path() -> None:
    registry = SchemaRegistry.load()
    assert registry._envelope.fast is not None
    slow = [name for name, v in registry._events.items() if v.fast is None]
    assert slow == []


def test_fast_acceptance_implies_reference_acceptance_on_mutated_events() -> None:
    registry = SchemaRegistry.load()
    checked = accepted = 0
    for name, validator in registry._events.items():
        envelope = {
            "id": "evt_1",
            "type": name,
            "tenant_id": "t1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": registry.sample(name),
        }
        for candidate in mutations(envelope):
            fast, reference = _agree(registry._envelope, candidate)
            assert not fast or reference, (name, candidate)
            checked += 1
            accepted += fast
        for candidate in mutations(registry.sample(name)):
            fast, reference = _agree(validator, candidate)
            assert not fast or reference, (name, candidate)
            checked += 1
            accepted += fast
    assert checked > 1000
    assert 0 < accepted < checked  # both outcomes were exercised


@pytest.mark.parametrize(
    ("schema", "compatible"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, True),
        ({"properties": {"format": {"type": "string"}}}, True),  # a property *named* format
        ({"type": "string", "format": "email"}, False),
        ({"$ref": "#/$defs/a", "$defs": {"a": {}}}, False),
        ({"prefixItems": [{"type": "string"}]}, False),
        ({"items": [{"type": "string"}]}, False),  # draft-07 tuple form means something else
        ({"items": {"type": "string"}, "x-body-key": "k"}, True),
        ({"enum": ["a", "b", None]}, True),
        ({"enum": [1, 2]}, True),
        ({"const": False}, True),
        ({"anyOf": [{"type": "string"}, {"unevaluatedProperties": False}]}, False),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, True),
        (True, True),
        ("not a schema", False),
    ],
)
def test_fast_compatible(schema: Any, compatible: bool) -> None:
    assert fast_compatible(schema) is compatible


def test_a_schema_outside_the_fast_set_is_validated_by_jsonschema_alone() -> None:
    validator = _Validator({"type": "object", "properties": {"at": {"format": "date"}}})
    assert validator.fast is None
    assert validator.first_error({"at": 5}) is None  # format is an annotation in 2020-12
    assert validator.first_error([]) is not None


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"enum": [1]}, True),  # True == 1 in Python, not in JSON Schema
        ({"const": True}, 1),
        ({"const": False}, 0),
        ({"const": [1]}, [True]),
        ({"type": "integer"}, True),
        ({"type": "number"}, False),
    ],
)
def test_booleans_are_not_numbers_on_either_path(schema: Any, instance: Any) -> None:
    validator = _Validator(schema)
    assert validator.fast is not None
    assert validator.first_error(instance) is not None


def test_an_integral_float_is_still_an_integer() -> None:
    validator = _Validator({"type": "integer"})
    assert validator.fast is not None
    assert validator.first_error(1.0) is None  # fastjsonschema rejects it; jsonschema decides
    assert validator.first_error(1.5) is not None
