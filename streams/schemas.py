"""JSON Schemas: loading ``schemas/`` and validating events against it.

Layout of a schema directory::

    envelope.json                 the event envelope
    events/<event.type>.json      one schema per event type, for ``data``
    records/<record>.json         the records that travel between stages

An event type's schema may declare ``"x-body-key": "prospect"``: the key under
which the ``keyed`` body shape places the event's data (see
:mod:`streams.fanout.bodies`). Without it the key is the type's first segment.
It may declare ``"x-summary"``, the template of the line chat destinations
show for the event (:mod:`streams.fanout.summary`); without it they show the
default one.

Extra event types are added without touching the package by pointing
``STREAMS_EVENT_SCHEMAS`` at a directory of ``<event.type>.json`` files.

Validation has two layers. jsonschema (Draft 2020-12) is the reference: it
decides, and its best-ranked error is the message an operator reads. It costs
about 300 us per event here, which was 7% of a worker's CPU at full load, so a
schema that uses only keywords whose meaning is the same in fastjsonschema's
draft (:data:`FAST_KEYWORDS`) is also compiled by fastjsonschema, and an event
it accepts is accepted without asking jsonschema. Anything it rejects, and
every schema with another keyword (``$ref``, ``format``, ``prefixItems``,
``unevaluatedProperties``...), goes to jsonschema. The fast layer can only
make the valid path cheaper; a cross-check test holds it to that.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as _SchemaViolation

from streams.errors import (
    ConfigError,
    DecodeError,
    InvalidEventError,
    PayloadTooLargeError,
    UnknownEventTypeError,
)
from streams.records import EventEnvelope

log = logging.getLogger(__name__)


def schema_root() -> Path:
    """The directory of the built-in schemas (installed copy first, then the repo's)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if (candidate / "envelope.json").is_file():
            return candidate
    raise ConfigError(
        "the built-in JSON Schemas are missing: expected schemas/envelope.json beside the "
        "package; reinstall the package"
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read JSON Schema {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"JSON Schema {path} must be an object")
    Draft202012Validator.check_schema(doc)
    return doc


def _path_of(error: _SchemaViolation, prefix: str) -> str:
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in error.absolute_path)
    # A missing required property: name the property itself, not its parent.
    if error.validator == "required" and isinstance(error.validator_value, list):
        for name in error.validator_value:
            if isinstance(error.instance, dict) and name not in error.instance:
                parts.append(str(name))
                break
    return ".".join(parts)


#: Keywords that take a schema (or, for ``properties``, a mapping of them).
_SUBSCHEMA = frozenset({"items", "additionalProperties", "if", "then", "else", "not"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties"})
#: Keywords that check a value the same way in fastjsonschema and Draft 2020-12.
_LEAF = frozenset(
    {
        "type", "enum", "const", "required", "minLength", "maxLength", "pattern",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    }
)  # fmt: skip
#: Annotations: no effect on validity (``default`` is never applied: use_default=False).
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated",
     "readOnly", "writeOnly"}
)  # fmt: skip
FAST_KEYWORDS = _SUBSCHEMA | _SUBSCHEMA_LISTS | _SUBSCHEMA_MAPS | _LEAF | _ANNOTATIONS


def fast_compatible(schema: Any) -> bool:
    """True when every keyword of ``schema`` (recursively) is in :data:`FAST_KEYWORDS`.

    ``x-`` keys are extensions and ignored by both validators. ``items`` must be
    one schema (an array of schemas means different things in the two drafts).
    """
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key.startswith("x-") or key in _ANNOTATIONS or key in _LEAF:
            continue
        if key in _SUBSCHEMA:
            if not fast_compatible(value):
                return False
        elif key in _SUBSCHEMA_LISTS:
            if not isinstance(value, list) or not all(fast_compatible(v) for v in value):
                return False
        elif key in _SUBSCHEMA_MAPS:
            if not isinstance(value, dict) or not all(fast_compatible(v) for v in value.values()):
                return False
        else:
            return False
    return True


class _Validator:
    """jsonschema's validator, with fastjsonschema's compiled check in front when it is safe."""

    __slots__ = ("fast", "reference")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.reference = Draft202012Validator(schema)
        self.fast: Any = None
        if fast_compatible(schema):
            try:
                self.fast = fastjsonschema.compile(schema, use_default=False, use_formats=False)
            except Exception:  # a schema it cannot compile is still checked by jsonschema
                log.debug("fastjsonschema could not compile a schema; jsonschema only")

    def first_error(self, instance: Any) -> _SchemaViolation | None:
        """None when valid; otherwise jsonschema's most relevant error."""
        if self.fast is not None:
            try:
                self.fast(instance)
                return None
            except fastjsonschema.JsonSchemaException:
                pass  # jsonschema decides (fastjsonschema is stricter about 1.0 as integer)
        return _first_error(self.reference, instance)


class SchemaRegistry:
    """The envelope schema and one compiled validator per event type."""

    def __init__(self, envelope: dict[str, Any], events: Mapping[str, dict[str, Any]]) -> None:
        self._envelope = _Validator(envelope)
        self._events = {name: _Validator(s) for name, s in events.items()}
        self._body_keys = {
            name: str(s.get("x-body-key") or name.split(".", 1)[0]) for name, s in events.items()
        }
        self._summaries: dict[str, str] = {}
        for name, s in events.items():
            template = s.get("x-summary")
            if template is None:
                continue
            if not isinstance(template, str) or not template.strip() or len(template) > 500:
                raise ConfigError(
                    f"event type {name}: `x-summary` must be a template string of at most 500 "
                    'characters, such as "{watcher_name}: {new_posts} new posts"'
                )
            self._summaries[name] = template
        self.schemas = dict(events)

    @classmethod
    def load(cls, root: Path | None = None, extra_dirs: Iterable[Path] = ()) -> SchemaRegistry:
        root = root or schema_root()
        envelope = _load(root / "envelope.json")
        events: dict[str, dict[str, Any]] = {}
        for directory in (root / "events", *extra_dirs):
            if not directory.is_dir():
                raise ConfigError(f"event schema directory {directory} does not exist")
            for path in sorted(directory.glob("*.json")):
                events[path.stem] = _load(path)
        return cls(envelope, events)

    @classmethod
    def from_settings(cls, settings: Any) -> SchemaRegistry:
        """The built-in schemas plus ``STREAMS_EVENT_SCHEMAS`` when set."""
        extra = [Path(settings.event_schemas)] if settings.event_schemas else []
        return cls.load(extra_dirs=extra)

    @property
    def event_types(self) -> list[str]:
        """Domain event types (operational ones, ``x-operational``, excluded)."""
        return sorted(n for n, s in self.schemas.items() if not s.get("x-operational"))

    @property
    def operational_types(self) -> list[str]:
        return sorted(n for n, s in self.schemas.items() if s.get("x-operational"))

    def body_key(self, event_type: str) -> str:
        return self._body_keys.get(event_type) or event_type.split(".", 1)[0]

    def summary(self, event_type: str) -> str | None:
        """The type's summary template (``x-summary``), or None: the default applies."""
        return self._summaries.get(event_type)

    def sample(self, event_type: str) -> dict[str, Any]:
        """Sample data for test deliveries: the schema's first ``examples`` entry."""
        examples = self.schemas.get(event_type, {}).get("examples") or [{}]
        sample = examples[0]
        return dict(sample) if isinstance(sample, dict) else {}

    def validate(self, obj: Any) -> EventEnvelope:
        """Validate a decoded event; return it as an :class:`EventEnvelope`.

        Raises :class:`InvalidEventError` (``field`` = the first offending path),
        or :class:`UnknownEventTypeError` when no schema exists for ``type``.
        """
        if not isinstance(obj, dict):
            raise InvalidEventError("an event must be a JSON object")
        error = self._envelope.first_error(obj)
        if error is not None:
            where = _path_of(error, "")
            raise InvalidEventError(
                f"envelope field `{where or '(root)'}`: {error.message}", field=where
            )
        for name in _ENVELOPE_LINES:
            value = obj.get(name)
            if isinstance(value, str) and "\n" in value:
                # The schemas' patterns end in `$`, which Python's re (jsonschema's and
                # fastjsonschema's engine) also matches before a final line break.
                raise InvalidEventError(
                    f"envelope field `{name}` contains a line break", field=name
                )
        event_type = obj["type"]
        validator = self._events.get(event_type)
        if validator is None:
            raise UnknownEventTypeError(
                f"unknown event type `{event_type}`: add schemas/events/{event_type}.json "
                f"(known: {', '.join(self.event_types)})",
                field="type",
            )
        error = validator.first_error(obj["data"])
        if error is not None:
            where = _path_of(error, "data")
            raise InvalidEventError(f"`{event_type}` field `{where}`: {error.message}", field=where)
        return EventEnvelope.from_dict(obj)

    def decode(self, raw: bytes | None, *, max_bytes: int) -> EventEnvelope:
        """Decode and validate raw event bytes, with the size limit applied first.

        ``None`` is a record without a value (a tombstone): not an event either.
        """
        if raw is None:
            raise InvalidEventError(
                "the record has no value (a tombstone): an event is a JSON object"
            )
        if len(raw) > max_bytes:
            raise PayloadTooLargeError(
                f"event is {len(raw)} bytes, over the limit of {max_bytes} "
                "(STREAMS_MAX_PAYLOAD_BYTES); send a reference to large data instead",
            )
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEventError(f"event is not JSON: {exc}") from None
        where = too_deep(obj, MAX_NESTING)
        if where is not None:
            raise InvalidEventError(
                f"event is nested deeper than {MAX_NESTING} levels at `{where}`: flatten the data",
                field=where,
            )
        if _NINETEEN_DIGITS in raw.translate(_DIGITS_TO_ZERO):
            found = wide_integer(raw)
            if found is not None:
                where, digits = found
                shown = digits if len(digits) <= 40 else digits[:40] + "..."
                raise InvalidEventError(
                    f"event has an integer beyond 64 bits at `{where}` ({shown}): JSON "
                    "parsers read it as a float and change its value, so it would not reach "
                    "receivers as sent; send it as a string",
                    field=where,
                )
        try:
            return self.validate(obj)
        except DecodeError as exc:  # pragma: no cover - validate() checks types first
            raise InvalidEventError(str(exc)) from None


#: 19 digits or more: the shortest integer outside orjson's range, -2**63 .. 2**64-1
#: (-9223372036854775809), has 19. Only events with such a run of digits (in a
#: number or a string) pay for the exact check, :func:`wide_integer`. Found by
#: mapping every digit to "0" and searching for 19 of them: 0.5 us for a 570-byte
#: event, where the regular expression [0-9]{19} took 8 us.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class _Wide(str):
    """An integer literal outside 64 bits, as its digits (see :func:`wide_integer`)."""


def _wide_or_small(digits: str) -> Any:
    # Never int() a long literal: Python refuses to convert more than 4,300 digits.
    if len(digits.lstrip("-")) > 20 or not _INT_MIN <= int(digits) <= _INT_MAX:
        return _Wide(digits)
    return 0


def wide_integer(raw: bytes) -> tuple[str, str] | None:
    """The path and digits of the first integer in ``raw`` outside 64 bits, or None.

    orjson reads such an integer as a float (``12345678901234567890123`` becomes
    ``1.2345678901234568e+22``) and writes it back that way, so the fan-out
    would send receivers a different number than the producer wrote; the
    publisher already refuses them (orjson cannot write them). The standard
    library's parser keeps every integer literal; only its integers are looked
    at here (``raw`` is known to be JSON nested at most :data:`MAX_NESTING`).
    """
    obj = json.loads(raw, parse_int=_wide_or_small)
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Wide):
            return (path or "(root)", str(node))
        if isinstance(node, dict):
            items: Iterable[tuple[Any, Any]] = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        children = [
            (
                child,
                f"{path}[{key}]" if isinstance(node, list) else (f"{path}.{key}" if path else key),
            )
            for key, child in items
        ]
        stack.extend(reversed(children))
    return None


#: Envelope fields whose schema pattern allows no line break (see ``validate``).
_ENVELOPE_LINES = ("id", "type", "tenant_id", "occurred_at", "traceparent")

#: Deepest nesting of objects and arrays an event may have (the envelope counts as 1).
#: orjson reads up to 1,024 levels but writes only about 254, and jsonschema's
#: error messages recurse through the value: an event deeper than either would
#: raise inside the fan-out instead of being parked in ``events.invalid``.
MAX_NESTING = 64


def too_deep(value: Any, limit: int) -> str | None:
    """The path of the first object or array nested deeper than ``limit``, or None.

    Iterative, so any depth is safe to check. Paths are only built once a value
    is known to be too deep (a second pass), which keeps the common case cheap.
    """
    if not isinstance(value, (dict, list)):
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            break
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    else:
        return None
    paths: list[tuple[Any, int, str]] = [(value, 1, "")]
    while paths:
        node, depth, path = paths.pop()
        if depth > limit:
            return path or "(root)"
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, (dict, list)):
                where = f"[{key}]" if isinstance(node, list) else (f".{key}" if path else key)
                paths.append((child, depth + 1, f"{path}{where}"))
    return None  # pragma: no cover - the first pass found one


#: Errors ranked to pick the one to report. jsonschema finds them lazily; an
#: event with 85,000 wrong items took 1.1 s of the worker's loop to rank them all.
MAX_RANKED_ERRORS = 100


def _first_error(validator: Draft202012Validator, instance: Any) -> _SchemaViolation | None:
    """The most relevant of the first errors (jsonschema's own ranking), or None."""
    from jsonschema.exceptions import best_match

    errors = itertools.islice(validator.iter_errors(instance), MAX_RANKED_ERRORS)
    error: _SchemaViolation | None = best_match(errors)
    return error


@cache
def record_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of an inter-stage record, e.g. ``record_schema("delivery")``."""
    return _load(schema_root() / "records" / f"{name}.json")


@cache
def _record_validator(name: str) -> _Validator:
    return _Validator(record_schema(name))


def record_error(name: str, obj: Any) -> str | None:
    """Why ``obj`` is not a valid record of ``schemas/records/<name>.json``, or None.

    For records read from Kafka whose fields reach code that assumes them valid
    (a subscription's body format, rate, schedule...): checked where they are read.
    """
    error = _record_validator(name).first_error(obj)
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"field `{where}`: {bounded_message(error.message)}"


def bounded_message(message: str, limit: int = 300) -> str:
    """A validation message cut to ``limit`` characters (it can quote a whole value)."""
    return message if len(message) <= limit else message[: limit - 3] + "..."
