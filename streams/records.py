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
events.invalid         tenant id or none  InvalidEvent
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

import base64
import dataclasses
import hashlib
import time
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


class Record:
    """Shared encode/decode for the dataclass records below.

    Subclasses declare ``_required`` (field → JSON type name) for the
    structural check; optional fields take their dataclass default when absent.
    """

    _required: ClassVar[dict[str, str]] = {}
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


@dataclass(frozen=True, slots=True)
class InvalidEvent(Record):
    """An event that could not be accepted (topic ``events.invalid``).

    ``raw_b64`` holds the exact bytes read, base64-encoded because they need not
    be UTF-8; ``field`` is the JSON path at fault when known.
    """

    reason: str
    raw_b64: str
    field: str = ""
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    received_at: float = 0.0

    _kind: ClassVar[str] = "invalid event"
    _required: ClassVar[dict[str, str]] = {"reason": "str", "raw_b64": "str"}

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)

    @classmethod
    def of(
        cls,
        raw: bytes,
        reason: str,
        *,
        field: str = "",
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
    ) -> InvalidEvent:
        return cls(
            reason=reason,
            raw_b64=base64.b64encode(raw).decode("ascii"),
            field=field,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            received_at=time.time(),
        )


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
    headers: dict[str, str] = field(default_factory=dict)
    retry_schedule: list[float] | None = None  # None: the configured default; [0]: none
    ordering: Literal["unordered", "ordered"] = "unordered"
    rate_limit: float | None = None  # requests per second; None: unlimited
    max_in_flight: int = 16
    timeout_s: float | None = None  # None: STREAMS_REQUEST_TIMEOUT
    body_format: Literal["envelope", "keyed"] = "envelope"
    state: Literal["enabled", "disabled"] = "enabled"
    disabled_reason: str | None = None
    disabled_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 1

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

    _kind: ClassVar[str] = "attempt"
    _required: ClassVar[dict[str, str]] = {
        "delivery_id": "str",
        "event_id": "str",
        "subscription_id": "str",
        "attempt": "int",
        "at": "float",
        "outcome": "str",
    }
