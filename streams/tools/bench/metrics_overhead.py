#!/usr/bin/env python3
"""Cost of metrics on the delivery hot path: STREAMS_METRICS on vs off.

Drives the real :class:`streams.delivery.engine.DeliveryEngine` through its
entry point (``handle``: decode, lanes, signing, request building, the
sender, classification, follow-up records, and, when on, the one
``Metrics.observe`` call per attempt), with Kafka replaced by futures that
resolve at once, so only the worker's own CPU work is measured.

Senders (``--sender``):

  null   a sender that answers 200 at once: the engine's CPU cost alone. The
         smallest denominator, so the worst case for the relative overhead.
  http   the worker's real HttpSender (aiohttp) posting to a `streams receiver`
         subprocess on 127.0.0.1: what a worker pays per webhook request.

Runs alternate off/on (``--runs`` of each) to spread drift evenly; each run
stops after ``--attempts`` attempts or ``--seconds`` seconds, whichever comes
first, so it is always bounded. Reports attempts/s (wall) and CPU microseconds
per attempt (process time; the less noisy number), medians, and the overhead.

Example:
  python -m streams.tools.bench.metrics_overhead --sender null --attempts 20000 --runs 5
  python -m streams.tools.bench.metrics_overhead --sender http --attempts 5000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from streams.config import Settings  # noqa: E402
from streams.delivery.engine import DeliveryEngine, SendResult  # noqa: E402
from streams.kafka.topics import TopicNames  # noqa: E402
from streams.ops.metrics import Metrics  # noqa: E402
from streams.records import Delivery, Subscription  # noqa: E402
from streams.subscriptions.secrets import SecretBox  # noqa: E402

SUBSCRIPTIONS = 64
WINDOW = 512  # deliveries submitted before waiting for them (8 per subscription lane)


class FakePipeline:
    """What the engine needs of a Pipeline, with Kafka sends that succeed at once."""

    def __init__(self, settings: Settings, subs: dict[str, Subscription], box: SecretBox) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.stats: Counter[str] = Counter()
        self.extras: dict[str, Any] = {}
        self.subscriptions = subs
        self.box = box
        self.sent = 0

    async def send(self, topic: str, key: str | bytes, value: bytes | None) -> Any:
        self.sent += 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class NullSender:
    async def send(self, request: Any, *, timeout_s: float) -> SendResult:
        await asyncio.sleep(0)
        return SendResult(status=200, body=b"ok", duration_ms=0.5)


class Acks:
    def __init__(self) -> None:
        self.done = 0
        self.event = asyncio.Event()
        self.target = 0

    def finish_when(self, ticket: Any, fut: Any) -> None:
        self.done += 1
        if self.done >= self.target:
            self.event.set()

    def fail(self, exc: BaseException) -> None:
        raise exc


class Message:
    __slots__ = ("offset", "partition", "topic")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def one_run(
    settings: Settings, *, metrics_on: bool, sender: Any, url: str, attempts: int, seconds: float
) -> dict[str, float]:
    box = SecretBox([_fernet_key()])
    secret = box.encrypt("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=", now=0.0)
    subs = {
        f"sub_{i}": Subscription(
            id=f"sub_{i}",
            tenant_id=f"t{i % 8}",
            url=url,
            event_types=["*"],
            secrets=[secret],
            max_in_flight=16,
        )
        for i in range(SUBSCRIPTIONS)
    }
    pipeline = FakePipeline(settings, subs, box)
    engine = DeliveryEngine(pipeline, sender)  # type: ignore[arg-type]
    if metrics_on:
        metrics = Metrics(settings)
        metrics.engine = engine
        engine.metrics = metrics
    body = json.dumps({"type": "alert.fired", "data": {"x": "y" * 900}})
    now = time.time()
    raws = [
        Delivery(
            delivery_id=f"msg_{i}",
            event_id=f"evt_{i}",
            event_type="alert.fired",
            tenant_id=f"t{i % 8}",
            subscription_id=f"sub_{i % SUBSCRIPTIONS}",
            body=body,
            created_at=now,
            published_at=now,
        ).to_bytes()
        for i in range(WINDOW)
    ]
    topic = pipeline.names.deliveries
    done = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    while done < attempts and time.perf_counter() < deadline:
        acks = Acks()
        batch = min(WINDOW, attempts - done)
        acks.target = batch
        for i in range(batch):
            await engine.handle(raws[i], Message(topic, i % 6, done + i), None, acks)  # type: ignore[arg-type]
        await asyncio.wait_for(acks.event.wait(), timeout=max(1.0, deadline - time.perf_counter()))
        done += batch
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    if pipeline.stats.get("deferred"):
        raise SystemExit("lanes deferred deliveries: lower WINDOW")
    if metrics_on:
        got = engine.metrics.registry.get_sample_value(
            "streams_deliveries_total", {"outcome": "delivered", "status_class": "2xx"}
        )
        assert got == done, (got, done)
    return {"attempts": done, "per_s": done / wall, "cpu_us": cpu / done * 1e6}


def observe_cost_us(settings: Settings, n: int = 200_000) -> float:
    """Microseconds of one ``Metrics.observe`` call (a mix of outcomes), best of 5."""
    import timeit

    from streams.records import Attempt

    metrics = Metrics(settings)
    now = time.time()
    delivery = Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="t",
        subscription_id="sub_1",
        body="{}",
        published_at=now,
    )
    attempts = [
        Attempt(
            delivery_id="msg_1",
            event_id="evt_1",
            event_type="alert.fired",
            tenant_id="t",
            subscription_id="sub_1",
            attempt=n,
            at=now,
            duration_ms=12.5,
            outcome=outcome,
            status=status,
            source_topic=settings.topic_prefix + "deliveries",
        )
        for n, outcome, status in ((1, "delivered", 200), (2, "retry", 503), (1, "delivered", 200))
    ]
    calls = [(delivery, a) for a in attempts]
    best = min(
        timeit.repeat(
            lambda: [metrics.observe(d, a) for d, a in calls],  # type: ignore[func-returns-value]
            number=n // len(calls),
            repeat=5,
        )
    )
    return best / (n // len(calls) * len(calls)) * 1e6


_KEY: str | None = None


def _fernet_key() -> str:
    global _KEY
    if _KEY is None:
        from cryptography.fernet import Fernet

        _KEY = Fernet.generate_key().decode()
    return _KEY


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "receiver", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the receiver did not start")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    state = tempfile.mkdtemp(prefix="metrics-overhead-")
    settings = Settings.from_env(
        {
            "STREAMS_ENV": "development",
            "STREAMS_STATE_DIR": state,
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32",
            "STREAMS_TOPIC_PREFIX": "bench.",
        }
    )
    receiver = None
    url = "https://hooks.example.invalid/in"
    if args.sender == "http":
        from streams.delivery.transport import HttpSender

        port = free_port()
        receiver = start_receiver(port)
        url = f"http://127.0.0.1:{port}/hooks/bench"
        sender: Any = HttpSender(settings)
    else:
        sender = NullSender()
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        # One short warm-up run of each (imports, connection pool, caches).
        for on in (False, True):
            await one_run(
                settings, metrics_on=on, sender=sender, url=url, attempts=WINDOW * 2, seconds=10
            )
        for _ in range(args.runs):
            for name, on in (("off", False), ("on", True)):
                results[name].append(
                    await one_run(
                        settings,
                        metrics_on=on,
                        sender=sender,
                        url=url,
                        attempts=args.attempts,
                        seconds=args.seconds,
                    )
                )
    finally:
        if args.sender == "http":
            await sender.close()
        if receiver is not None:
            receiver.send_signal(signal.SIGTERM)
            try:
                receiver.wait(10)
            except subprocess.TimeoutExpired:
                receiver.kill()
    summary: dict[str, Any] = {"sender": args.sender, "runs": args.runs}
    for name, rows in results.items():
        summary[name] = {
            "attempts_per_run": statistics.median(r["attempts"] for r in rows),
            "per_s_median": round(statistics.median(r["per_s"] for r in rows), 1),
            "cpu_us_per_attempt_median": round(statistics.median(r["cpu_us"] for r in rows), 2),
            "per_s_all": [round(r["per_s"], 1) for r in rows],
            "cpu_us_all": [round(r["cpu_us"], 2) for r in rows],
        }
    summary["observe_us"] = round(observe_cost_us(settings), 3)
    off, on = summary["off"], summary["on"]
    summary["throughput_change_pct"] = round(
        (on["per_s_median"] - off["per_s_median"]) / off["per_s_median"] * 100, 2
    )
    summary["observe_share_of_off_cpu_pct"] = round(
        summary["observe_us"] / off["cpu_us_per_attempt_median"] * 100, 2
    )
    summary["cpu_overhead_pct"] = round(
        (on["cpu_us_per_attempt_median"] - off["cpu_us_per_attempt_median"])
        / off["cpu_us_per_attempt_median"]
        * 100,
        2,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sender", choices=["null", "http"], default="null")
    parser.add_argument("--attempts", type=int, default=20_000, help="attempts per run (max)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per run (max)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant")
    args = parser.parse_args()
    if not (1 <= args.runs <= 50 and 1 <= args.attempts <= 1_000_000 and 0 < args.seconds <= 600):
        parser.error("--runs 1-50, --attempts 1-1000000, --seconds up to 600")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
