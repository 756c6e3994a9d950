"""The one exception tree of the package.

Every error a user can cause says what to fix. Errors never carry secret
material: messages name fields and reasons, never secret values.

    StreamsError
    ├── ConfigError                 bad or missing configuration
    ├── LocalKafkaError             the embedded development broker
    ├── KafkaUnavailableError       a bootstrap server that does not answer
    ├── PublishError                a record Kafka did not confirm
    ├── DecodeError                 bytes that are not a valid record (keeps them)
    ├── InvalidEventError           an event that fails its schema
    │   ├── UnknownEventTypeError
    │   └── PayloadTooLargeError
    ├── DestinationRefusedError     a URL or address the destination policy refuses
    ├── SigningError                a secret or profile that cannot sign
    ├── InvalidRequestError         a management API request with a bad field
    ├── AuthError                   a missing, unknown or out-of-scope token
    └── NotFoundError / ConflictError   resources of the management API
        └── QuotaExceededError      a tenant at one of its quotas (names the setting)
"""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error raised on purpose by this package."""


class ConfigError(StreamsError):
    """A setting is missing or malformed. The message names the variable."""


class LocalKafkaError(StreamsError):
    """The embedded development broker could not be resolved, started or stopped."""


class KafkaUnavailableError(StreamsError):
    """No broker answered at the configured bootstrap address."""


class PublishError(StreamsError):
    """Kafka did not confirm a record. Nothing was silently dropped: the caller must act."""


class DecodeError(StreamsError):
    """Bytes read from a topic are not a valid record.

    The raw bytes are kept so the record can be parked (``events.invalid``)
    instead of lost.
    """

    def __init__(self, message: str, raw: bytes, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.topic = topic


class InvalidEventError(StreamsError):
    """An event fails the envelope schema or its type's schema.

    ``field`` is the JSON path of the first offending field (``data.email``),
    or ``""`` when the document as a whole is at fault.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownEventTypeError(InvalidEventError):
    """The event's ``type`` has no schema in ``schemas/events/``."""


class PayloadTooLargeError(InvalidEventError):
    """The encoded event is larger than the configured limit."""


class DestinationRefusedError(StreamsError):
    """A webhook URL, or the address it resolves to, is not allowed.

    ``field`` names the request field at fault (usually ``url``).
    """

    def __init__(self, message: str, *, field: str = "url") -> None:
        super().__init__(message)
        self.field = field


class SigningError(StreamsError):
    """A signing profile cannot sign with the given secret."""


class InvalidRequestError(StreamsError):
    """A request to the management API (or the CLI) has a bad field.

    ``field`` names it (``url``, ``event_types[2]``, ``headers.X-Foo``); the
    API answers 422 with both.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class AuthError(StreamsError):
    """No token, an unknown token, or a token without the right to act."""


class NotFoundError(StreamsError):
    """A resource of the management API does not exist (or is not the caller's)."""


class ConflictError(StreamsError):
    """A write conflicts with the current state of a resource."""


class QuotaExceededError(ConflictError):
    """A tenant is at one of its quotas; ``setting`` is the variable that sets it."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class UnavailableError(StreamsError):
    """This worker does not serve the resource by configuration (the API answers 503)."""
