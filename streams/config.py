"""The one settings object, read from the environment once at start.

Every setting is a field of :class:`Settings`, documented where it is declared,
with its environment variable and default. Agents and commands receive a
``Settings``; nothing else in the package reads ``os.environ``.

Secret settings are held in :class:`Secret`, whose ``repr`` and ``str`` never
show the value, so a settings object can be logged or printed safely.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from streams.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: What STREAMS_KAFKA_SECURITY_PROTOCOL and STREAMS_KAFKA_SASL_MECHANISM accept
#: (translated for each client library by :mod:`streams.kafka.security`).
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
T = TypeVar("T")


class Secret:
    """A secret string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


#: Settings removed, and what replaces each (an old deployment is told, not ignored).
RETIRED = {
    "STREAMS_ATTEMPT_LOG_MEMORY": (
        "the delivery log is a store on disk now (STREAMS_LOG_DIR), not attempts in memory; "
        "for a delivery-only worker (was 0) set STREAMS_DELIVERY_LOG=off, else remove it"
    ),
    "STREAMS_ATTEMPT_LOG_WINDOW": (
        "the delivery log keeps STREAMS_LOG_RETENTION of attempts on disk; remove it"
    ),
}


def _env(var: str, default: str, help: str) -> Any:
    """Declare a field read from ``var`` (``default`` when unset or empty)."""
    return field(metadata={"env": var, "default": default, "help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the product. Build it with :meth:`from_env`."""

    env: Literal["production", "development"] = _env(
        "STREAMS_ENV",
        "production",
        "`development` allows plain-http destinations and self-signed TLS; anything else "
        "is production.",
    )
    kafka_bootstrap: str = _env(
        "STREAMS_KAFKA_BOOTSTRAP",
        "127.0.0.1:9092",
        "Kafka bootstrap servers, host:port separated by commas. The local broker "
        "(`streams kafka start`) listens on 127.0.0.1:9092.",
    )
    kafka_security_protocol: str = _env(
        "STREAMS_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "How every client connects to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL "
        "(managed clusters usually want SASL_SSL).",
    )
    kafka_sasl_mechanism: str = _env(
        "STREAMS_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism with SASL_PLAINTEXT/SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str = _env(
        "STREAMS_KAFKA_SASL_USERNAME", "", "SASL user name; required with SASL_*."
    )
    kafka_sasl_password: Secret = _env(
        "STREAMS_KAFKA_SASL_PASSWORD", "", "SASL password; required with SASL_*. Never shown."
    )
    kafka_ssl_cafile: str = _env(
        "STREAMS_KAFKA_SSL_CAFILE",
        "",
        "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); "
        "empty: the system's CAs. Broker certificates are always verified.",
    )
    kafka_ssl_certfile: str = _env(
        "STREAMS_KAFKA_SSL_CERTFILE",
        "",
        "PEM certificate (chain) the clients present to brokers that require client "
        "certificates (mutual TLS); needs STREAMS_KAFKA_SSL_KEYFILE.",
    )
    kafka_ssl_keyfile: str = _env(
        "STREAMS_KAFKA_SSL_KEYFILE",
        "",
        "PEM private key of STREAMS_KAFKA_SSL_CERTFILE.",
    )
    kafka_ssl_key_password: Secret = _env(
        "STREAMS_KAFKA_SSL_KEY_PASSWORD",
        "",
        "Password of an encrypted STREAMS_KAFKA_SSL_KEYFILE. Never shown.",
    )
    topic_prefix: str = _env(
        "STREAMS_TOPIC_PREFIX",
        "",
        "Prefix of every topic name, to run several pipelines on one cluster.",
    )
    app_id: str = _env(
        "STREAMS_APP_ID",
        "streams",
        "Faust application id: names the consumer group and the table changelogs.",
    )
    partitions: int = _env(
        "STREAMS_PARTITIONS",
        "6",
        "Partitions of every partitioned topic (events, deliveries, retry tiers, ...).",
    )
    replication_factor: int = _env(
        "STREAMS_REPLICATION_FACTOR",
        "1",
        "Replication factor of created topics: 1 for the local broker, 3 in production.",
    )
    retention_s: float = _env(
        "STREAMS_RETENTION",
        "7d",
        "Retention of events, deliveries, retry tiers and events.invalid.",
    )
    log_retention_s: float = _env(
        "STREAMS_LOG_RETENTION",
        "30d",
        "Retention of the delivery log (attempts), the dead-letter topic and ops: "
        "replay and redeliver reach back this far.",
    )
    replay_slots: int = _env(
        "STREAMS_REPLAY_SLOTS",
        "4",
        "DLQ replays one worker runs at once (2-64), each in a thread of its own; tenants' "
        "replays may take all but one, which is kept for the admin.",
    )
    replays_per_tenant: int = _env(
        "STREAMS_REPLAYS_PER_TENANT",
        "1",
        "Replays one tenant may run at once on one worker (less than STREAMS_REPLAY_SLOTS).",
    )
    max_payload_bytes: int = _env(
        "STREAMS_MAX_PAYLOAD_BYTES",
        "262144",
        "Largest encoded event accepted by the publisher and the fan-out, in bytes.",
    )
    retry_schedule: str = _env(
        "STREAMS_RETRY_SCHEDULE",
        "5s,5m,30m,2h,5h,10h,14h,20h,24h",
        "Delays before each retry, separated by commas (the first attempt is immediate); "
        "`none` for a single attempt.",
    )
    disable_after_failures: int = _env(
        "STREAMS_DISABLE_AFTER_FAILURES",
        "1000",
        "Consecutive failed attempts after which a subscription is disabled automatically.",
    )
    disable_after_s: float = _env(
        "STREAMS_DISABLE_AFTER",
        "5d",
        "A subscription failing continuously for longer than this is disabled automatically.",
    )
    tenant_max_subscriptions: int = _env(
        "STREAMS_TENANT_MAX_SUBSCRIPTIONS",
        "100",
        "Subscriptions one tenant may have (enabled or not); the API refuses one more with "
        "409 `quota_exceeded`. It also bounds how many deliveries one event can make. "
        "0: no limit.",
    )
    tenant_max_in_flight: int = _env(
        "STREAMS_TENANT_MAX_IN_FLIGHT",
        "64",
        "Webhook requests of one tenant in flight at once on each worker (4 subscriptions at "
        "the default max_in_flight). Its further deliveries wait their turn, taken round robin "
        "with the other tenants', and beyond 1,250 waiting are deferred to the first retry tier "
        "like a full lane's. 0: no per-tenant limit or turns (each subscription's lane alone).",
    )
    delivery_log: bool = _env(
        "STREAMS_DELIVERY_LOG",
        "on",
        "`on`: this worker is a log node: it indexes the attempts topic into its own "
        "delivery-log store (STREAMS_LOG_DIR) and serves the log and stats API. `off`: a "
        "delivery-only worker, which never reads the attempts topic; its log and stats "
        "routes answer 503. (`streams worker --role` sets it too.)",
    )
    log_dir: str = _env(
        "STREAMS_LOG_DIR",
        "",
        "Directory of this log node's delivery-log store (SQLite, rebuilt from the attempts "
        "topic when deleted); empty: <STREAMS_STATE_DIR>/log. One store per node: two "
        "processes never share one.",
    )
    kafka_linger_ms: int = _env(
        "STREAMS_KAFKA_LINGER_MS",
        "8",
        "How long the worker's Kafka producer waits to fill a batch (0-1000 ms). Longer means "
        "fewer, larger produce requests (less broker and worker CPU per record) and that much "
        "more latency on each hop through Kafka.",
    )
    kafka_attempts_linger_ms: int = _env(
        "STREAMS_KAFKA_ATTEMPTS_LINGER_MS",
        "-1",
        "How long a producer of its own for attempt records (the delivery log) waits to fill "
        "a batch (0-1000 ms): nothing waits for them but the offset commit, so they may batch "
        "longer than deliveries (fewer broker requests; measured in docs/benchmarks.md). -1, "
        "or the value of STREAMS_KAFKA_LINGER_MS: one producer writes everything.",
    )
    kafka_fetch_max_wait_ms: int = _env(
        "STREAMS_KAFKA_FETCH_MAX_WAIT_MS",
        "100",
        "How long the broker may hold a fetch of the worker's stage consumer open while it "
        "has less than STREAMS_KAFKA_FETCH_MIN_BYTES to return (1-1500 ms). It bounds the "
        "added latency per stage; once idle (and with STREAMS_KAFKA_FETCH_MIN_BYTES=1) the "
        "worker asks every "
        "STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS instead.",
    )
    kafka_fetch_min_bytes: int = _env(
        "STREAMS_KAFKA_FETCH_MIN_BYTES",
        "1",
        "Bytes the broker gathers before it answers a fetch of the worker's stage consumer "
        "(1 B-1 MiB). 1 answers as soon as anything arrives (lowest latency, one fetch per "
        "few records at a paced load); more means fewer, fuller fetches, each up to "
        "STREAMS_KAFKA_FETCH_MAX_WAIT_MS later.",
    )
    delivery_consumer: str = _env(
        "STREAMS_DELIVERY_CONSUMER",
        "faust",
        "What reads the deliveries topic: `faust` (a Faust agent, in the worker's consumer "
        "group) or `librdkafka` (a confluent-kafka consumer in the group <STREAMS_APP_ID>-deliver, "
        "batched consume() on a thread of its own; docs/design.md). Every worker of one app "
        "must use the same; switching re-reads from the furthest offset either group committed.",
    )
    kafka_reader_fetch_max_wait_ms: int = _env(
        "STREAMS_KAFKA_READER_FETCH_MAX_WAIT_MS",
        "500",
        "How long the broker may hold a fetch of the worker's readers of compacted topics "
        "(subscriptions, tokens, health) when nothing is new (1-10000 ms). A change is read "
        "as soon as it is written whatever this is; it is how often an idle reader asks "
        "until STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS, if longer, takes over.",
    )
    kafka_idle_fetch_max_wait_ms: int = _env(
        "STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS",
        "2000",
        "How long the broker may hold a fetch of the worker's aiokafka consumers (the stage "
        "consumer, the retry tiers, the compacted readers) while they are idle: after a few "
        "empty fetches, and only for a fetch that names every partition the consumer reads "
        "(0-30000 ms; 0, or no more than the consumer's own wait, keeps its own wait). A "
        "record is returned as soon as it is written whatever this is; it is how often an "
        "idle worker asks (streams/kafka/fetch_wait.py).",
    )
    lane_wait_ms: int = _env(
        "STREAMS_LANE_WAIT_MS",
        "0",
        "How long a delivery waits for room in its endpoint's full lane while that endpoint "
        "answers fast (0-5000 ms) before it is deferred to the first retry tier. The wait "
        "holds the agent (back-pressure on Kafka); 0 defers at once.",
    )
    gc_threshold: int = _env(
        "STREAMS_GC_THRESHOLD",
        "10000",
        "New container objects between two collections of the garbage collector's youngest "
        "generation (700-1,000,000; CPython's default is 700): higher collects less often, "
        "each collection walking what is alive then (streams.ops.gc_tuning).",
    )
    event_schemas: str = _env(
        "STREAMS_EVENT_SCHEMAS",
        "",
        "A directory of extra event-type schemas (`<type>.json`), added to the built-in ones.",
    )
    state_dir: Path = _env(
        "STREAMS_STATE_DIR",
        ".streams",
        "Local state: the development broker's data and logs, table stores, dev keys.",
    )
    api_bind: str = _env("STREAMS_API_BIND", "127.0.0.1", "Address the management API binds.")
    api_port: int = _env("STREAMS_API_PORT", "8080", "Port of the management API.")
    admin_token: Secret = _env(
        "STREAMS_ADMIN_TOKEN",
        "",
        "Bearer token of the administrator. Required in production; generated and "
        "printed once in development.",
    )
    api_url: str = _env(
        "STREAMS_API_URL",
        "http://127.0.0.1:8080",
        "Base URL of the management API that `streams subscriptions` and `streams tokens` "
        "call (a running `streams worker`).",
    )
    api_token: Secret = _env(
        "STREAMS_API_TOKEN",
        "",
        "The bearer token the CLI sends to the management API (admin or tenant); falls back "
        "to STREAMS_ADMIN_TOKEN, then the development token file under STREAMS_STATE_DIR.",
    )
    secrets_key: Secret = _env(
        "STREAMS_SECRETS_KEY",
        "",
        "Fernet key (urlsafe base64 of 32 bytes) encrypting signing secrets at rest. "
        "Required in production; a development key is generated under STREAMS_STATE_DIR.",
    )
    console_session_s: float = _env(
        "STREAMS_CONSOLE_SESSION",
        "12h",
        "How long a web console session lasts after its sign-in link is opened.",
    )
    console_frame_ancestors: str = _env(
        "STREAMS_CONSOLE_FRAME_ANCESTORS",
        "'none'",
        "Who may frame the web console: the CSP frame-ancestors sources, separated by "
        "spaces (e.g. `https://app.example.com`); `'none'` forbids every frame.",
    )
    destination_allowlist: tuple[Network, ...] = _env(
        "STREAMS_DESTINATION_ALLOWLIST",
        "",
        "CIDRs, separated by commas, that destinations may resolve to even though they are "
        "loopback/private (e.g. `127.0.0.0/8,::1/128` for local receivers).",
    )
    connect_timeout_s: float = _env(
        "STREAMS_CONNECT_TIMEOUT", "5s", "Connect timeout of a webhook request."
    )
    request_timeout_s: float = _env(
        "STREAMS_REQUEST_TIMEOUT",
        "10s",
        "Default whole-request timeout of a webhook request (a subscription may ask for up "
        "to 30s).",
    )
    breaker_failures: int = _env(
        "STREAMS_BREAKER_FAILURES",
        "5",
        "Consecutive timeouts or connection failures that open an endpoint's circuit breaker "
        "(no requests, deliveries skipped to their next retry); 0 turns the breaker off.",
    )
    breaker_open_s: float = _env(
        "STREAMS_BREAKER_OPEN",
        "5s",
        "How long a breaker stays open before one probe request; doubled at each failed probe.",
    )
    breaker_max_open_s: float = _env(
        "STREAMS_BREAKER_MAX_OPEN", "1m", "The longest a breaker stays open between probes."
    )
    user_agent: str = _env(
        "STREAMS_USER_AGENT", "streams-webhooks/0.1", "User-Agent of every webhook request."
    )
    egress_proxy: Secret = _env(
        "STREAMS_EGRESS_PROXY",
        "",
        "http://host:port of an HTTP CONNECT proxy that every delivery goes through, so "
        "receivers can allowlist its fixed addresses (http://user:password@host:port with "
        "credentials; never shown). TLS stays end to end; destinations are still resolved "
        "and checked here first. Empty: deliveries connect directly.",
    )
    log_level: str = _env("STREAMS_LOG_LEVEL", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")
    metrics: bool = _env(
        "STREAMS_METRICS",
        "on",
        "`on`: record Prometheus metrics and serve them at /metrics on the API port; "
        "`off`: record nothing (near-zero cost) and /metrics answers 404.",
    )
    kafka_heap: str = _env(
        "STREAMS_KAFKA_HEAP", "512m", "Java heap of the local development broker."
    )
    kafka_java_opts: tuple[str, ...] = _env(
        "STREAMS_KAFKA_JAVA_OPTS",
        "",
        "Extra JVM options of the local development broker, separated by spaces, after its "
        "own (a later option wins), e.g. -XX:StartFlightRecording=filename=kafka.jfr.",
    )
    kafka_broker_config: tuple[tuple[str, str], ...] = _env(
        "STREAMS_KAFKA_BROKER_CONFIG",
        "",
        "Extra server.properties of the local development broker: KEY=VALUE pairs separated "
        "by commas, replacing its own values of those keys, e.g. num.io.threads=8.",
    )

    def __post_init__(self) -> None:
        if self.replays_per_tenant >= self.replay_slots:
            raise ConfigError(
                f"STREAMS_REPLAYS_PER_TENANT={self.replays_per_tenant} must be less than "
                f"STREAMS_REPLAY_SLOTS={self.replay_slots}: one slot is kept for the admin"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError(
                "a client certificate needs both STREAMS_KAFKA_SSL_CERTFILE and "
                "STREAMS_KAFKA_SSL_KEYFILE (PEM files); set both or neither"
            )
        if self.kafka_ssl_certfile and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError(
                "STREAMS_KAFKA_SSL_CERTFILE is set but STREAMS_KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not use TLS: set it to SSL or SASL_SSL"
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ConfigError(
                f"STREAMS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "STREAMS_KAFKA_SASL_USERNAME and STREAMS_KAFKA_SASL_PASSWORD"
            )

    @property
    def log_path(self) -> Path:
        """The delivery-log store of this node (STREAMS_LOG_DIR)."""
        return (Path(self.log_dir) if self.log_dir else self.state_dir / "log") / "attempts.sqlite3"

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def max_record_bytes(self) -> int:
        """Largest Kafka record the pipeline writes or reads (topics, producers).

        A delivery carries its event's body re-encoded as a JSON string, so a
        little over twice the payload limit; the fan-out parks an event whose
        deliveries would not fit (:mod:`streams.fanout.agent`).
        """
        return max(1_048_576, self.max_payload_bytes * 2 + 65_536)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``).

        Raises :class:`ConfigError` naming the variable and the accepted form.
        ``overrides`` (field name → already-parsed value) win over the environment.
        """
        environ = os.environ if environ is None else environ
        for var, instead in RETIRED.items():
            if environ.get(var, "").strip():
                raise ConfigError(f"{var} is no longer read: {instead}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            var = f.metadata["env"]
            raw = environ.get(var, "").strip() or f.metadata["default"]
            values[f.name] = _parse(f.name, var, raw)
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, help) of every setting, for docs and `streams config`."""
        return [(f.metadata["env"], f.metadata["default"], f.metadata["help"]) for f in fields(cls)]

    def public_view(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print or log.

        Durations are written as they are set (``7d``, ``1h30m``), not as seconds
        (``604800.0``): every duration field is a float named ``*_s``.
        """
        from streams.retry.schedule import format_duration

        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                out[f.metadata["env"]] = "(set)" if value else "(unset)"
            elif f.name.endswith("_s") and isinstance(value, float):
                out[f.metadata["env"]] = format_duration(value)
            elif f.name == "kafka_java_opts":
                out[f.metadata["env"]] = " ".join(value)
            elif f.name == "kafka_broker_config":
                out[f.metadata["env"]] = ",".join(f"{k}={v}" for k, v in value)
            elif isinstance(value, tuple):
                out[f.metadata["env"]] = ",".join(str(v) for v in value)
            else:
                out[f.metadata["env"]] = str(value)
        return out


def _parse(name: str, var: str, raw: str) -> Any:
    parser = _PARSERS.get(name, _as_str)
    # A secret setting's value never appears in an error (it may hold a password).
    shown = f"{var} (value hidden)" if parser is Secret or name in _HIDDEN else f"{var}={raw!r}"
    try:
        return parser(raw)
    except ConfigError as exc:
        raise ConfigError(f"{shown} is not valid: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{shown} is not valid: {exc}") from None


def _as_str(raw: str) -> str:
    return raw


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 0:
        raise ValueError("expected a number of at least 0")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 1:
        raise ValueError("expected a number of at least 1")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = _non_negative_int(raw)
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def _linger_or_same(raw: str) -> int:
    """-1 (the main producer's linger: one producer) or 0-1000 ms."""
    return -1 if raw.strip() == "-1" else _int_between(0, 1000)(raw)


def _port(raw: str) -> int:
    value = _positive_int(raw)
    if value > 65535:
        raise ValueError("expected a port from 1 to 65535")
    return value


def _duration(raw: str) -> float:
    from streams.retry.schedule import parse_duration

    return parse_duration(raw)


def _env_name(raw: str) -> str:
    value = raw.lower()
    if value not in ("production", "development"):
        raise ValueError("expected `production` or `development`")
    return value


def _topic_prefix(raw: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not set(raw) <= allowed or len(raw) > 100:
        raise ValueError("use at most 100 of the characters a-z A-Z 0-9 . _ -")
    return raw


def _schedule(raw: str) -> str:
    from streams.retry.schedule import parse_schedule

    parse_schedule(raw)
    return raw


def _allowlist(raw: str) -> tuple[Network, ...]:
    from streams.destinations import parse_allowlist

    return parse_allowlist(raw)


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value


def _on_off(raw: str) -> bool:
    value = raw.lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected `on` or `off`")


def _timeout(limit: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = _duration(raw)
        if not 0 < value <= limit:
            raise ValueError(f"expected a duration above 0 and at most {limit:g}s")
        return value

    return parse


def _api_url(raw: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL such as http://127.0.0.1:8080")
    if parts.query or parts.fragment:
        raise ValueError("expected a base URL without query or fragment")
    return raw.rstrip("/")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


#: What STREAMS_DELIVERY_CONSUMER accepts.
DELIVERY_CONSUMERS = ("faust", "librdkafka")


def _delivery_consumer(raw: str) -> str:
    value = raw.lower()
    if value not in DELIVERY_CONSUMERS:
        raise ValueError(f"expected one of {', '.join(DELIVERY_CONSUMERS)}")
    return value


def _readable_file(raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ValueError("no such file: give the path of a PEM file, or leave it empty")
    return raw


def _egress_proxy(raw: str) -> Secret:
    from streams.destinations import EgressProxy

    if raw:
        EgressProxy.parse(raw)  # ValueError saying what to fix, without the value
    return Secret(raw)


def _heap(raw: str) -> str:
    if not raw[:-1].isdigit() or raw[-1].lower() not in "mg":
        raise ValueError("expected a Java heap size such as 512m or 1g")
    return raw


def _java_opts(raw: str) -> tuple[str, ...]:
    words = tuple(raw.split())
    for word in words:
        if not word.startswith("-") or not word.isprintable():
            raise ValueError(f"{word!r} is not a JVM option: each starts with '-'")
    return words


_PROPERTY_KEY = re.compile(r"[a-z][a-z0-9._-]*")


def _broker_config(raw: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _PROPERTY_KEY.fullmatch(key) or not value.isprintable():
            raise ValueError(
                f"{item.strip()!r} is not KEY=VALUE with a Kafka property name "
                "(e.g. num.io.threads=2)"
            )
        pairs.append((key, value))
    return tuple(pairs)


def _frame_ancestors(raw: str) -> str:
    """CSP sources separated by spaces; nothing that could end the directive or the header."""
    words = raw.split()
    keywords = ("'none'", "'self'")
    for word in words:
        if word in keywords:
            continue
        if not word.isascii() or not word.isprintable() or any(c in word for c in ";,'\""):
            raise ValueError(
                f"{word!r} is not a CSP source: use sources such as https://app.example.com "
                "or 'self', separated by spaces, or 'none'"
            )
    if "'none'" in words and len(words) > 1:
        raise ValueError("'none' stands alone: remove it or the other sources")
    return " ".join(words)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "env": _env_name,
    "kafka_security_protocol": _one_of(*KAFKA_PROTOCOLS),
    "kafka_sasl_mechanism": _one_of(*KAFKA_SASL_MECHANISMS),
    "kafka_sasl_password": Secret,
    "kafka_ssl_cafile": _readable_file,
    "kafka_ssl_certfile": _readable_file,
    "kafka_ssl_keyfile": _readable_file,
    "kafka_ssl_key_password": Secret,
    "topic_prefix": _topic_prefix,
    "partitions": _positive_int,
    "replication_factor": _positive_int,
    "retention_s": _duration,
    "log_retention_s": _duration,
    "replay_slots": _int_between(2, 64),
    "replays_per_tenant": _int_between(1, 63),
    "max_payload_bytes": _positive_int,
    "retry_schedule": _schedule,
    "disable_after_failures": _positive_int,
    "delivery_log": _on_off,
    "tenant_max_subscriptions": _non_negative_int,
    "tenant_max_in_flight": _non_negative_int,
    "kafka_linger_ms": _int_between(0, 1000),
    "kafka_attempts_linger_ms": _linger_or_same,
    "lane_wait_ms": _int_between(0, 5000),
    "gc_threshold": _int_between(700, 1_000_000),
    "delivery_consumer": _delivery_consumer,
    "kafka_fetch_max_wait_ms": _int_between(1, 1500),
    "kafka_fetch_min_bytes": _int_between(1, 1_048_576),
    "kafka_reader_fetch_max_wait_ms": _int_between(1, 10_000),
    "kafka_idle_fetch_max_wait_ms": _int_between(0, 30_000),
    "disable_after_s": _duration,
    "state_dir": Path,
    "api_port": _port,
    "admin_token": Secret,
    "api_url": _api_url,
    "api_token": Secret,
    "secrets_key": Secret,
    "destination_allowlist": _allowlist,
    "console_session_s": _duration,
    "console_frame_ancestors": _frame_ancestors,
    "breaker_failures": _non_negative_int,
    "breaker_open_s": _timeout(3600),
    "breaker_max_open_s": _timeout(3600),
    "connect_timeout_s": _timeout(30),
    "request_timeout_s": _timeout(30),
    "log_level": _log_level,
    "metrics": _on_off,
    "kafka_heap": _heap,
    "kafka_java_opts": _java_opts,
    "kafka_broker_config": _broker_config,
    "egress_proxy": _egress_proxy,
}
#: Settings whose parser is not ``Secret`` itself but whose value is secret all the same.
_HIDDEN = frozenset({"egress_proxy"})
