"""Test harness: a real `streams worker` process, an API client, topic readers."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from streams.config import Settings
from streams.errors import LocalKafkaError
from streams.kafka.local import LocalKafka

#: A valid `alert.fired` event body: what most integration tests publish.
ALERT = {
    "organization_id": "o",
    "alert_id": "a",
    "watcher_id": "w",
    "platform": "reddit",
    "fired_at": "2026-01-01T00:00:00Z",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports on 127.0.0.1 that nothing holds.

    Chosen below the kernel's ephemeral range: a port from that range can be
    taken as the local port of any outgoing connection between this check and
    the broker's bind (it happened in CI: "Address already in use").
    """
    low, high = 20000, max(20000 + count + 1, _ephemeral_low() - count)
    for _ in range(50):
        base = random.randrange(low, high)
        if all(_can_bind(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found in 50 tries")


def start_private_broker(
    make: Callable[[int], LocalKafka], count: int, tries: int = 3
) -> LocalKafka:
    """Start ``make(base)``, a broker on ``count`` ports from ``base``; new ports if one was
    taken between the check and the broker's bind (bounded: ``tries`` runs of ports)."""
    for attempt in range(1, tries + 1):
        broker = make(free_port_run(count))
        try:
            broker.start()
        except LocalKafkaError as exc:
            with contextlib.suppress(Exception):
                broker.stop()
            if "Address already in use" not in str(exc) or attempt == tries:
                raise
            continue
        return broker
    raise AssertionError("unreachable")


def module_worker_settings(
    kafka_bootstrap: str, state: Path, extra: dict[str, str] | None = None
) -> Settings:
    """Settings of a module's worker: own topics, own API port, own state (``extra`` wins)."""
    import uuid

    return Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "STREAMS_TOPIC_PREFIX": f"w{uuid.uuid4().hex[:10]}.",
            "STREAMS_PARTITIONS": "3",
            "STREAMS_STATE_DIR": str(state),
            "STREAMS_ENV": "development",
            # Only 127.0.0.1 itself: other loopback, private and metadata addresses stay refused.
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32",
            "STREAMS_API_PORT": str(free_port()),
            "STREAMS_APP_ID": f"streams-{uuid.uuid4().hex[:8]}",
            "STREAMS_RETRY_SCHEDULE": "1s,2s",
            "STREAMS_DISABLE_AFTER_FAILURES": "5",
            # Below the auto-disable count, so a test can see skips not counting towards it.
            "STREAMS_BREAKER_FAILURES": "3",
            "STREAMS_BREAKER_OPEN": "30s",
            # Empty: the default; set in the environment to run every module's worker with it.
            "STREAMS_DELIVERY_CONSUMER": os.environ.get("STREAMS_DELIVERY_CONSUMER", ""),
            **(extra or {}),
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process."""
    return {
        "STREAMS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAMS_TOPIC_PREFIX": settings.topic_prefix,
        "STREAMS_PARTITIONS": str(settings.partitions),
        "STREAMS_STATE_DIR": str(settings.state_dir),
        "STREAMS_ENV": settings.env,
        "STREAMS_DESTINATION_ALLOWLIST": ",".join(str(n) for n in settings.destination_allowlist),
        "STREAMS_API_PORT": str(settings.api_port),
        "STREAMS_APP_ID": settings.app_id,
        "STREAMS_RETRY_SCHEDULE": settings.retry_schedule,
        "STREAMS_DISABLE_AFTER_FAILURES": str(settings.disable_after_failures),
        "STREAMS_BREAKER_FAILURES": str(settings.breaker_failures),
        "STREAMS_BREAKER_OPEN": f"{settings.breaker_open_s:g}s",
        "STREAMS_BREAKER_MAX_OPEN": f"{settings.breaker_max_open_s:g}s",
        "STREAMS_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "STREAMS_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "STREAMS_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "STREAMS_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.reveal(),
        "STREAMS_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "STREAMS_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "STREAMS_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
        "STREAMS_KAFKA_SSL_KEY_PASSWORD": settings.kafka_ssl_key_password.reveal(),
        # Only when not the default, so a STREAMS_DELIVERY_CONSUMER in the test run's
        # environment still reaches workers whose settings were built without it.
        **(
            {"STREAMS_DELIVERY_CONSUMER": settings.delivery_consumer}
            if settings.delivery_consumer != "faust"
            else {}
        ),
    }


class WorkerProcess:
    """`streams worker` in a subprocess; its log goes to ``log_path``."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        *,
        role: str = "all",
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.role = role
        self.env = {**os.environ, **settings_env(settings), **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{settings.api_port}"

    def start(self, timeout_s: float = 90.0) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--role", self.role],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"worker not healthy within {timeout_s}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Api:
    """A thin client of the management API for tests."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=20
        )

    def as_token(self, token: str) -> Api:
        return Api(str(self.http.base_url), token)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, params=params or None)

    def create(self, **body: Any) -> dict[str, Any]:
        resp = self.call("POST", "/v1/subscriptions", body)
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expected: int,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
    where: Any = None,
) -> list[Any]:
    """Records of ``topic`` from the start until ``expected`` arrived, then ``settle_s`` more."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.3):
                assert msg.error() is None, msg.error()
                if where is None or where(msg):
                    out.append(msg)
            if len(out) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle_s
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return out


class ReceiverProcess:
    """`streams receiver` in a subprocess, with helpers for its control API."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=10)

    def start(self, timeout_s: float = 20.0) -> ReceiverProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "receiver", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.http.get("/_stats")
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("receiver did not start")

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def configure(self, name: str, **behaviour: Any) -> None:
        resp = self.http.post(f"/_control/endpoints/{name}", json=behaviour)
        assert resp.status_code == 200, resp.text

    def ledger(self, name: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint": name} if name else None
        entries: list[dict[str, Any]] = self.http.get("/_ledger", params=params).json()["entries"]
        return entries

    def wait_for(self, name: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        entries = self.ledger(name)
        while len(entries) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            entries = self.ledger(name)
        return entries

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
