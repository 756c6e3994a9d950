"""One typed record per topic, encoded with orjson.

Every record is a frozen dataclass with ``to_bytes()`` and ``from_bytes()``.
``from_bytes`` checks the structure (required fields and their JSON types) and
raises :class:`~streams.errors.DecodeError` with the raw bytes kept, so a bad
record can be parked rather than lost. Semantic validation of events against
``schemas/`` lives in :mod:`streams.schemas`; the JSON Schemas of these records
are in ``schemas/records/`` and a unit test checks the two agree.

Topic → record:

=====================  =================  ===============
topic                  key                value
=====================  =================  ===============
events                 tenant id          EventEnvelope
events.invalid         as the original    ParkedRecord (the original bytes; reason in headers)
subscriptions          subscription id    Subscription (tombstone on delete)
tokens                 token id           tenant token record (sha256 only)
deliveries             subscription id    Delivery
deliveries.retry.<t>   subscription id    Delivery (with ``due_at``)
deliveries.dlq         subscription id    DeadLetter
attempts               delivery id        Attempt
ops                    tenant id          EventEnvelope (operational event types)
=====================  =================  ===============
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self, TypeVar

import orjson

from streams.errors import DecodeError

R = TypeVar("R", bound="Record")

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}


def _loads(raw: bytes, kind: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{kind}: not JSON ({exc})", raw) from None
    if not isinstance(obj, dict):
        raise DecodeError(f"{kind}: expected a JSON object, got {type(obj).__name__}", raw)
    return obj


_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A record class's field names in declaration order, and as a set (computed once:
    ``dataclasses.fields`` is slow on the hot path)."""
    known = _FIELDS.get(cls)
    if known is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        known = _FIELDS[cls] = (names, frozenset(names))
    return known


_NO_DEFAULT: Any = object()
_DEFAULTS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}


def _defaults(cls: type) -> tuple[tuple[str, Any, Any], ...]:
    """(name, default, default factory) of each field in declaration order;
    ``_NO_DEFAULT`` and None for a field without either."""
    known = _DEFAULTS.get(cls)
    if known is None:
        known = _DEFAULTS[cls] = tuple(
            (
                f.name,
                _NO_DEFAULT if f.default is dataclasses.MISSING else f.default,
                None if f.default_factory is dataclasses.MISSING else f.default_factory,
            )
            for f in dataclasses.fields(cls)
        )
    return known


_ABSENT: Any = object()


class Record:
    """Shared encode/decode for the dataclass records below.

    Subclasses declare ``_required`` (field → JSON type name) for the
    structural check; optional fields take their dataclass default when absent.
    ``_optional`` types the optional fields a record read from Kafka may carry
    (``"int?"``: an integer or null), ``_ranges`` bounds integers and
    ``_max_chars`` strings. A record off a topic can hold anything a producer
    wrote; what passes these checks cannot raise later, in an agent, where it
    would stop the worker (a string ``due_at`` stopped the retry tiers, an
    ``attempt`` of 0 stopped the delivery lane).
    """

    _required: ClassVar[dict[str, str]] = {}
    _optional: ClassVar[dict[str, str]] = {}
    _ranges: ClassVar[dict[str, tuple[int, int]]] = {}
    _max_chars: ClassVar[dict[str, int]] = {}
    _kind: ClassVar[str] = "record"

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _fields(type(self))[0]}

    def to_bytes(self) -> bytes:
        # orjson encodes dataclasses natively, fields in declaration order (as to_dict).
        if type(self).to_dict is Record.to_dict:
            return orjson.dumps(self)
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: dict[str, Any], raw: bytes = b"") -> Self:
        cls._check(obj, raw)
        names = _fields(cls)[1]
        try:
            return cls(**{k: v for k, v in obj.items() if k in names})
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"{cls._kind}: {exc}", raw) from None

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        return cls.from_dict(_loads(raw, cls._kind), raw)

    @classmethod
    def row_from_bytes(cls, raw: bytes) -> tuple[Any, ...]:
        """The record's field values in declaration order, checked as :meth:`from_bytes`
        checks them, without building the object (``cls(*row)`` builds it later)."""
        obj = _loads(raw, cls._kind)
        cls._check(obj, raw)
        row = []
        for name, default, factory in _defaults(cls):
            value = obj.get(name, default)
            if value is _NO_DEFAULT:
                if factory is None:
                    raise DecodeError(f"{cls._kind}: missing field `{name}`", raw)
                value = factory()  # a fresh one per row, as the dataclass would make
            row.append(value)
        return tuple(row)

    @classmethod
    def _check(cls, obj: dict[str, Any], raw: bytes) -> None:
        for name, type_name in cls._required.items():
            value = obj.get(name)
            ok = _JSON_TYPES[type_name]
            if (
                value is None
                or not isinstance(value, ok)
                or (type_name in ("int", "float") and isinstance(value, bool))
            ):
                got = "missing" if value is None else type(value).__name__
                raise DecodeError(
                    f"{cls._kind}: field `{name}` must be {type_name}, got {got}", raw
                )
        checks = _CHECKS.get(cls)
        if checks is None:
            checks = _CHECKS[cls] = _field_checks(cls)
        for name, types, nullable, numeric, type_name, bounds, most in checks:
            value = obj.get(name, _ABSENT)
            if value is _ABSENT or (value is None and nullable):
                continue
            if types is not None and (
                not isinstance(value, types) or (numeric and isinstance(value, bool))
            ):
                got = "null" if value is None else type(value).__name__
                raise DecodeError(
                    f"{cls._kind}: field `{name}` must be {type_name}, got {got}", raw
                )
            if most is not None and isinstance(value, str) and len(value) > most:
                raise DecodeError(
                    f"{cls._kind}: field `{name}` is {len(value)} characters long, "
                    f"over the limit of {most}",
                    raw,
                )
            if bounds is not None and isinstance(value, int):
                low, high = bounds
                if not low <= value <= high:
                    raise DecodeError(
                        f"{cls._kind}: field `{name}` must be from {low} to {high}, got {value}",
                        raw,
                    )


#: name, JSON types (None: checked as required), nullable, numeric, type name, range, length.
_Check = tuple[str, tuple[type, ...] | None, bool, bool, str, tuple[int, int] | None, int | None]
_CHECKS: dict[type, tuple[_Check, ...]] = {}


def _field_checks(cls: type[Record]) -> tuple[_Check, ...]:
    """The checks of ``_optional``, ``_ranges`` and ``_max_chars``, one entry per field."""
    names = [
        *cls._optional,
        *(n for n in (*cls._ranges, *cls._max_chars) if n not in cls._optional),
    ]
    out: list[_Check] = []
    for name in dict.fromkeys(names):
        spec = cls._optional.get(name)
        base = spec.rstrip("?") if spec else ""
        out.append(
            (
                name,
                _JSON_TYPES[base] if spec else None,
                spec is None or spec.endswith("?"),
                base in ("int", "float"),
                base,
                cls._ranges.get(name),
                cls._max_chars.get(name),
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class EventEnvelope(Record):
    """A domain event as upstream services publish it (topic ``events``)."""

    id: str
    type: str
    tenant_id: str
    occurred_at: str
    data: dict[str, Any]
    tenant_name: str | None = None
    traceparent: str | None = None

    _kind: ClassVar[str] = "event"
    _required: ClassVar[dict[str, str]] = {
        "id": "str",
        "type": "str",
        "tenant_id": "str",
        "occurred_at": "str",
        "data": "dict",
    }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "tenant_id": self.tenant_id,
            "occurred_at": self.occurred_at,
            "data": self.data,
        }
        if self.tenant_name is not None:
            out["tenant_name"] = self.tenant_name
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out


#: Headers of a parked record (topic ``events.invalid``). The original record's
#: own headers follow them, each renamed ``original.<name>``, so a header whose
#: name starts with ``streams.`` is always the pipeline's, whatever the original
#: carried.
H_REASON = "streams.reason"
H_FIELD = "streams.field"
H_SOURCE_TOPIC = "streams.source.topic"
H_SOURCE_PARTITION = "streams.source.partition"
H_SOURCE_OFFSET = "streams.source.offset"
H_PARKED_AT = "streams.parked_at"
H_VALUE_SIZE = "streams.value.size"
H_VALUE_SHA256 = "streams.value.sha256"
H_KEY_SIZE = "streams.key.size"
H_KEY_SHA256 = "streams.key.sha256"
H_ORIGINAL_HEADERS = "streams.original_headers"
H_TRUNCATED = "streams.truncated"
ORIGINAL = "original."

#: Characters of a reason (and of a field path) kept in a parked record's header:
#: a schema error can quote the offending value, which may be most of the event.
MAX_REASON_CHARS = 1000
MAX_FIELD_CHARS = 200
#: Bytes of an original key kept when a parked record has to be cut to fit.
MAX_PARKED_KEY = 1024
#: Bytes a record takes in Kafka beyond its key, value, header names and header
#: values: the record batch's header (61 bytes), the record's own framing (an
#: attribute byte and five varints) and two length varints per header.
RECORD_FRAMING = 96
HEADER_FRAMING = 10
#: The smallest limit :func:`park` works with: room for its own headers and a cut key.
MIN_PARK_LIMIT = 16_384

Header = tuple[str, bytes | None]


def record_size(key: bytes | None, value: bytes | None, headers: Iterable[Header]) -> int:
    """The most bytes a record with this key, value and headers takes in a Kafka batch."""
    size = RECORD_FRAMING + len(key or b"") + len(value or b"")
    for name, data in headers:
        size += HEADER_FRAMING + len(name.encode("utf-8")) + len(data or b"")
    return size


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut (reasons, paths, errors)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _header_pairs(headers: Iterable[Any] | Mapping[Any, Any] | None) -> list[Header]:
    """A record's headers as (name, bytes or None), whatever shape the client gave them."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[Header] = []
    for name, data in items:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "backslashreplace")
        # A name that was not UTF-8 (read leniently, streams.kafka_records) is shown escaped.
        text = str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if data is not None and not isinstance(data, bytes):
            data = str(data).encode("utf-8", "surrogateescape")
        out.append((text, data))
    return out


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A record a stage could not accept, as written to ``events.invalid``.

    The value is the original record's value, byte for byte (``None`` for a
    tombstone), and the key its key: no encoding, so a parked copy is never
    larger than the original plus its headers. Why it was parked and where the
    original was read are in headers (``H_*``). A record too large to be copied
    whole is cut (:func:`park`): ``streams.truncated`` says what was cut, and the
    size and SHA-256 of the original value identify it at its source position
    until that topic's retention removes it.
    """

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]

    def header(self, name: str) -> str | None:
        """The first header of that name, as text (None when absent or null)."""
        for n, data in self.headers:
            if n == name:
                return None if data is None else data.decode("utf-8", "replace")
        return None

    @property
    def reason(self) -> str:
        return self.header(H_REASON) or ""

    @property
    def field(self) -> str:
        return self.header(H_FIELD) or ""

    @property
    def source(self) -> tuple[str, int, int]:
        """Topic, partition and offset of the original record."""
        return (
            self.header(H_SOURCE_TOPIC) or "",
            int(self.header(H_SOURCE_PARTITION) or -1),
            int(self.header(H_SOURCE_OFFSET) or -1),
        )

    @property
    def truncated(self) -> frozenset[str]:
        """What was cut to fit: any of ``headers``, ``key``, ``value``."""
        cut = self.header(H_TRUNCATED)
        return frozenset(cut.split(",")) if cut else frozenset()

    @property
    def original_headers(self) -> list[Header]:
        return [(n[len(ORIGINAL) :], d) for n, d in self.headers if n.startswith(ORIGINAL)]

    @property
    def size(self) -> int:
        return record_size(self.key, self.value, self.headers)


def park(
    value: bytes | None,
    *,
    key: bytes | None,
    headers: Iterable[Any] | Mapping[Any, Any] | None,
    reason: str,
    field: str = "",
    topic: str,
    partition: int,
    offset: int,
    parked_at: float,
    limit: int,
) -> ParkedRecord:
    """The parked copy of one record, at most ``limit`` bytes in Kafka (:func:`record_size`).

    Copied whole when it fits. Otherwise, in this order until it fits: the
    original headers are left out (their count is kept), a key over
    :data:`MAX_PARKED_KEY` bytes is cut to that (its size and SHA-256 kept), and
    the value is cut to the room left (its size and SHA-256 are always kept).
    """
    if limit < MIN_PARK_LIMIT:
        raise ValueError(f"a parked record needs a limit of at least {MIN_PARK_LIMIT} bytes")
    ours: list[Header] = [(H_REASON, bounded(reason, MAX_REASON_CHARS).encode("utf-8", "replace"))]
    if field:
        ours.append((H_FIELD, bounded(field, MAX_FIELD_CHARS).encode("utf-8", "replace")))
    ours += [
        (H_SOURCE_TOPIC, topic.encode("utf-8", "replace")),
        (H_SOURCE_PARTITION, str(partition).encode()),
        (H_SOURCE_OFFSET, str(offset).encode()),
        (H_PARKED_AT, f"{parked_at:.3f}".encode()),
        (H_VALUE_SIZE, b"null" if value is None else str(len(value)).encode()),
    ]
    if value is not None:
        ours.append((H_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()))
    originals = [(ORIGINAL + name, data) for name, data in _header_pairs(headers)]
    if record_size(key, value, [*ours, *originals]) <= limit:
        return ParkedRecord(key, value, (*ours, *originals))
    cut: list[str] = []
    if originals:
        cut.append("headers")
        ours.append((H_ORIGINAL_HEADERS, str(len(originals)).encode()))
    if key is not None and len(key) > MAX_PARKED_KEY:
        cut.append("key")
        ours.append((H_KEY_SIZE, str(len(key)).encode()))
        ours.append((H_KEY_SHA256, hashlib.sha256(key).hexdigest().encode()))
        key = key[:MAX_PARKED_KEY]
    # Sized with the longest marker, so the room left is never overstated.
    longest = (H_TRUNCATED, b"headers,key,value")
    if value is not None and record_size(key, value, [*ours, longest]) > limit:
        cut.append("value")
        value = value[: max(0, limit - record_size(key, b"", [*ours, longest]))]
    ours.append((H_TRUNCATED, ",".join(cut).encode()))
    return ParkedRecord(key, value, tuple(ours))


@dataclass(frozen=True, slots=True)
class EncryptedSecret:
    """A signing secret as stored: Fernet ciphertext, never the clear value."""

    ciphertext: str
    created_at: float
    expires_at: float | None = None  # set on the previous secret during a rotation


@dataclass(frozen=True, slots=True)
class Subscription(Record):
    """A customer endpoint (compacted topic ``subscriptions``, key = ``id``)."""

    id: str
    tenant_id: str
    url: str
    event_types: list[str]
    description: str = ""
    signing: str = "standard"
    secrets: list[dict[str, Any]] = field(default_factory=list)  # EncryptedSecret dicts
    # Custom headers (streams.subscriptions.headers): clear values of those marked not
    # secret, and Fernet ciphertexts of the secret ones. None: a record written before
    # values were encrypted, whose `headers` are all secret. Neither is in the repr.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    secret_headers: dict[str, str] | None = field(default=None, repr=False)
    retry_schedule: list[float] | None = None  # None: the configured default; [0]: none
    ordering: Literal["unordered", "ordered"] = "unordered"
    rate_limit: float | None = None  # requests per second; None: unlimited
    max_in_flight: int = 16
    timeout_s: float | None = None  # None: STREAMS_REQUEST_TIMEOUT
    body_format: Literal["envelope", "keyed", "slack", "discord", "telegram"] = "envelope"
    state: Literal["enabled", "disabled"] = "enabled"
    disabled_reason: str | None = None
    disabled_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 1
    # Telegram (body_format "telegram"): the chat the bot posts to.
    chat_id: str | None = None
    # A URL that carries a credential (a Telegram bot token) is stored encrypted here
    # (EncryptedSecret dict) and ``url`` holds it masked: see streams.subscriptions.services.
    url_secret: dict[str, Any] | None = None
    # {"key", "request"} digests of the Idempotency-Key it was created with (see
    # streams.subscriptions.idempotency); None: created without one.
    idempotency: dict[str, str] | None = None

    _kind: ClassVar[str] = "subscription"
    _required: ClassVar[dict[str, str]] = {
        "id": "str",
        "tenant_id": "str",
        "url": "str",
        "event_types": "list",
    }

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"


def delivery_id_for(event_id: str, subscription_id: str) -> str:
    """The delivery id: stable for (event id, subscription id) across retries and replays.

    It is the ``webhook-id`` receivers use as their idempotency key, so it must
    never depend on time or attempt. 26 base32 characters of a SHA-256 (130 bits).
    """
    digest = hashlib.sha256(f"{event_id}\x00{subscription_id}".encode()).digest()
    # The first 26 characters of the lowercase RFC 4648 base32 of the digest are
    # its first 130 bits, 5 per character; read 10 bits (two characters) at a time.
    # Equal to base64.b32encode(digest)[:26].lower() (tested), at a fifth of its cost.
    bits = int.from_bytes(digest[:17], "big") >> 6
    return "msg_" + "".join([_B32_PAIRS[(bits >> shift) & 0x3FF] for shift in _B32_SHIFTS])


_B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
#: Every two-character lowercase base32 string, indexed by its 10-bit value.
_B32_PAIRS = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)
_B32_SHIFTS = tuple(range(120, -1, -10))


#: Bounds on a delivery record read from Kafka (see ``Delivery._max_chars``).
MAX_ID_CHARS = 200
#: An error text the pipeline writes is cut to MAX_ERROR_CHARS; one read back may be
#: longer (older versions did not cut them) up to this.
MAX_ERROR_CHARS = 2000
MAX_ERROR_READ_CHARS = 8192
#: The largest attempt number or deferral count (retry schedules are tens of steps long).
MAX_ATTEMPT = 1_000_000


@dataclass(frozen=True, slots=True)
class Delivery(Record):
    """One webhook to send (topics ``deliveries`` and ``deliveries.retry.*``).

    ``body`` is the exact request body, rendered once by the fan-out, so every
    attempt, retry and replay signs and sends the same bytes. It is held as a
    ``str`` because the body is always UTF-8 JSON; ``body_bytes`` gives the bytes.
    """

    delivery_id: str
    event_id: str
    event_type: str
    tenant_id: str
    subscription_id: str
    body: str
    attempt: int = 1  # the number of the attempt this record asks for
    due_at: float = 0.0  # unix seconds; 0: at once
    created_at: float = 0.0  # when the fan-out made it
    published_at: float = 0.0  # when the event reached Kafka (its record timestamp)
    first_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    replay_id: str | None = None  # set on replays and redeliveries
    traceparent: str | None = None
    held_by: str | None = None  # ordered subscriptions: waiting behind this head
    deferrals: int = 0  # lane-full deferrals in a row without an attempt (their backoff)
    # Attempts before this run (a redelivery or replay): the log numbers this run's on
    # from there; ``attempt`` counts this run's alone, for the retry schedule.
    prior_attempts: int = 0

    _kind: ClassVar[str] = "delivery"
    _required: ClassVar[dict[str, str]] = {
        "delivery_id": "str",
        "event_id": "str",
        "event_type": "str",
        "tenant_id": "str",
        "subscription_id": "str",
        "body": "str",
        "attempt": "int",
    }
    _optional: ClassVar[dict[str, str]] = {
        "due_at": "float",
        "created_at": "float",
        "published_at": "float",
        "first_attempt_at": "float?",
        "last_status": "int?",
        "last_error": "str?",
        "replay_id": "str?",
        "traceparent": "str?",
        "held_by": "str?",
        "deferrals": "int",
    }
    _ranges: ClassVar[dict[str, tuple[int, int]]] = {
        "attempt": (1, MAX_ATTEMPT),
        "deferrals": (0, MAX_ATTEMPT),
    }
    # The ids are copied into every attempt record and ops event: bounded here, so
    # those are bounded too (the envelope allows 200 characters; the rest are ours).
    _max_chars: ClassVar[dict[str, int]] = {
        "delivery_id": MAX_ID_CHARS,
        "event_id": MAX_ID_CHARS,
        "event_type": MAX_ID_CHARS,
        "tenant_id": MAX_ID_CHARS,
        "subscription_id": MAX_ID_CHARS,
        "replay_id": MAX_ID_CHARS,
        "traceparent": MAX_ID_CHARS,
        "held_by": MAX_ID_CHARS,
        "last_error": MAX_ERROR_READ_CHARS,
    }

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8")

    @property
    def attempt_number(self) -> int:
        """This attempt's number in the delivery's whole history (the log's number)."""
        return self.prior_attempts + self.attempt

    def next_attempt(self, *, due_at: float, status: int | None, error: str | None) -> Delivery:
        return dataclasses.replace(
            self,
            attempt=self.attempt + 1,
            due_at=due_at,
            deferrals=0,
            last_status=status,
            last_error=error,
        )


DeadLetterReason = Literal[
    "exhausted", "not_retryable", "subscription_disabled", "subscription_deleted", "gone"
]


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    """A delivery that was parked (topic ``deliveries.dlq``)."""

    delivery: dict[str, Any]  # a Delivery as a dict
    reason: str
    attempts: int
    dead_lettered_at: float
    last_status: int | None = None
    last_error: str | None = None

    _kind: ClassVar[str] = "dead letter"
    _required: ClassVar[dict[str, str]] = {
        "delivery": "dict",
        "reason": "str",
        "attempts": "int",
        "dead_lettered_at": "float",
    }

    def parked(self) -> Delivery:
        return Delivery.from_dict(self.delivery)


Outcome = Literal["delivered", "retry", "give_up"]


@dataclass(frozen=True, slots=True)
class Attempt(Record):
    """One HTTP attempt, successful or not (topic ``attempts``, the delivery log)."""

    delivery_id: str
    event_id: str
    event_type: str
    tenant_id: str
    subscription_id: str
    attempt: int
    at: float
    duration_ms: float
    outcome: str
    status: int | None = None
    response_snippet: str = ""
    error: str | None = None
    replay_id: str | None = None
    # Where the delivery record of this attempt is (its body is read back from
    # there by redeliver, instead of keeping a second copy).
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    # False when no request went out (the endpoint's circuit breaker was open).
    sent: bool = True
    # True when the answer means the endpoint is gone (410, Slack's no_service, Discord's
    # Unknown Webhook): the subscription is disabled with ``error`` as the reason.
    gone: bool = False

    _kind: ClassVar[str] = "attempt"
    _required: ClassVar[dict[str, str]] = {
        "delivery_id": "str",
        "event_id": "str",
        "subscription_id": "str",
        "attempt": "int",
        "at": "float",
        "outcome": "str",
    }
    _optional: ClassVar[dict[str, str]] = {
        "event_type": "str",
        "tenant_id": "str",
        "duration_ms": "float",
        "status": "int?",
        "response_snippet": "str",
        "error": "str?",
        "replay_id": "str?",
        "source_topic": "str",
        "source_partition": "int",
        "source_offset": "int",
        "sent": "bool",
    }
