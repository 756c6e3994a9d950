"""The Kafka floor of a paced row: what the broker spends per delivery when the
clients do nothing but move records through the product's topics (issue 22).

The product's shape fixes the Kafka traffic of a delivery: the event is written to
an events topic and read by the fan-out stage, which writes one record per matching
subscription to a deliveries topic; the delivery stage reads it and writes an
attempt record, which the log node reads. This tool runs exactly that traffic with
minimal clients (confluent-kafka, one thread per stage, no Faust, no HTTP, no
signing, nothing decoded) at a paced rate and measures, over a window after a warm-up:

- the broker's CPU per delivery (JIT compiling apart), the part of the issue's
  "pipeline CPU per delivery" that no worker design can remove;
- the clients' own CPU per delivery (a lower bound of the Kafka work in a worker);
- the latency from the event's hand-over to the publisher to its deliveries being
  read by the delivery stage (Kafka's share of the end-to-end latency).

The settings are the ones a paced row may use at most without breaking its latency
target: producers linger ``--linger-ms`` (the product's default, 8), the attempt
records ``--attempts-linger-ms`` (nothing waits for them), consumers commit once a
second. Results go to stdout; the analysis is in docs/benchmarks.md ("The Kafka floor
of a paced row").

    python -m streams.tools.bench.floor --rate 1000 --fanout 10 --warm 20 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

#: Record sizes of the product's records at these rows (bytes, measured from the topics of
#: a `streams bench paced` run: an event ~480, a delivery ~700, an attempt ~420).
EVENT_BYTES, DELIVERY_BYTES, ATTEMPT_BYTES = 480, 700, 420
#: Consumers' offset commits: once a second, as the product's workers.
COMMIT_EVERY_S = 1.0


@dataclass
class Counters:
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    logged: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    measuring: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


#: The latest librdkafka statistics of each client (requests sent, by type).
_STATS: dict[str, dict[str, int]] = {}
_STATS_LOCK = threading.Lock()


def _stats_of(name: str) -> dict[str, Any]:
    """librdkafka statistics every second, kept as requests sent by type (all brokers)."""

    def keep(raw: str) -> None:
        by_type: dict[str, int] = {}
        for broker in orjson.loads(raw).get("brokers", {}).values():
            for kind, count in broker.get("req", {}).items():
                by_type[kind] = by_type.get(kind, 0) + int(count)
        with _STATS_LOCK:
            _STATS[name] = by_type

    return {"statistics.interval.ms": 1000, "stats_cb": keep}


def _requests() -> dict[str, int]:
    total: dict[str, int] = {}
    with _STATS_LOCK:
        for by_type in _STATS.values():
            for kind, count in by_type.items():
                total[kind] = total.get(kind, 0) + count
    return total


def _consumer(
    bootstrap: str,
    group: str,
    topic: str,
    ready: threading.Event,
    wait_ms: int = 0,
    min_bytes: int = 1_048_576,
) -> Any:
    """A consumer of ``topic``; ``wait_ms`` > 0: each fetch is held that long for up to
    ``min_bytes`` (fewer, fuller fetches), else it is answered at the first record."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            **_stats_of(group),
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": int(COMMIT_EVERY_S * 1000),
            "fetch.min.bytes": min_bytes if wait_ms else 1,
            "fetch.wait.max.ms": wait_ms or 100,
            "enable.partition.eof": False,
        }
    )

    def assigned(_c: Any, parts: list[Any]) -> None:
        if parts:
            ready.set()

    c.subscribe([topic], on_assign=assigned)
    return c


def _take(c: Any, n: int, wait_s: float) -> list[Any]:
    """What is there, else the first record within ``wait_s`` and what came with it:
    ``consume(n, t)`` alone would wait ``t`` for a full batch (the product's batched
    consumer reads the same way)."""
    got: list[Any] = c.consume(n, 0)
    if not got:
        got = c.consume(1, wait_s)
        if got:
            got += c.consume(n - 1, 0)
    return got


def _producer(bootstrap: str, linger_ms: int, name: str) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            **_stats_of(name),
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "acks": "all",
        }
    )


def run(
    bootstrap: str,
    *,
    rate: float,
    fanout: int,
    warm_s: float,
    seconds: float,
    partitions: int,
    linger_ms: int,
    attempts_linger_ms: int,
    fetch_wait_ms: int,
    broker_pid: int | None,
) -> dict[str, float]:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from streams.tools.bench.procs import cpu_seconds, jit_cpu_seconds

    prefix = f"floor.{uuid.uuid4().hex[:8]}."
    events_t, deliveries_t, attempts_t = (prefix + n for n in ("events", "deliveries", "attempts"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(t, partitions, 1) for t in (events_t, deliveries_t, attempts_t)]
    ).values():
        f.result(30)
    stop = threading.Event()
    ready = [threading.Event() for _ in range(3)]
    n = Counters()
    subs = [f"sub_{i:04d}".encode() for i in range(fanout)]
    delivery_pad = b"d" * (DELIVERY_BYTES - 24)
    attempt_pad = b"a" * (ATTEMPT_BYTES - 24)

    def fan_out() -> None:
        c = _consumer(bootstrap, prefix + "fanout", events_t, ready[0], fetch_wait_ms)
        p = _producer(bootstrap, linger_ms, "fanout-out")
        while not stop.is_set():
            for m in _take(c, 500, 0.1):
                if m.error():
                    continue
                sent_at = m.value()[:24]
                for s in subs:
                    p.produce(deliveries_t, sent_at + delivery_pad, s)
                with n.lock:
                    n.events += 1
            p.poll(0)
        p.flush(10)
        c.close()

    def deliver() -> None:
        c = _consumer(bootstrap, prefix + "deliver", deliveries_t, ready[1], fetch_wait_ms)
        p = _producer(bootstrap, attempts_linger_ms, "attempts-out")
        while not stop.is_set():
            got = _take(c, 500, 0.1)
            now = time.time()
            lat = []
            for m in got:
                if m.error():
                    continue
                v = m.value()
                lat.append(1000 * (now - float(v[:24])))
                p.produce(attempts_t, v[:24] + attempt_pad, m.key())
            p.poll(0)
            with n.lock:
                n.deliveries += len(lat)
                n.attempts += len(lat)
                if n.measuring:
                    n.latencies_ms.extend(lat)
        p.flush(10)
        c.close()

    def log() -> None:
        # The log node's reader, as the product's: fetches held 500 ms for 256 KiB.
        c = _consumer(bootstrap, prefix + "log", attempts_t, ready[2], 500, 256 * 1024)
        while not stop.is_set():
            got = _take(c, 5000, 0.5)
            with n.lock:
                n.logged += len(got)
        c.close()

    threads = [threading.Thread(target=f, daemon=True) for f in (fan_out, deliver, log)]
    for t in threads:
        t.start()
    for r in ready:  # joined and assigned before the publisher starts
        if not r.wait(60):
            raise SystemExit("a consumer was not assigned its partitions within 60 s")
    publisher = _producer(bootstrap, linger_ms, "publisher")
    event_pad = b"e" * (EVENT_BYTES - 24)
    events_per_s = rate / fanout
    start = time.perf_counter()
    published = 0
    marks: dict[str, tuple[float, float, float, float, int]] = {}

    def mark(name: str) -> None:
        broker_cpu = cpu_seconds(broker_pid) if broker_pid else 0.0
        jit = jit_cpu_seconds(broker_pid) if broker_pid else 0.0
        t = os.times()
        with n.lock:
            marks[name] = (
                time.monotonic(),
                float(broker_cpu or 0.0),
                float(jit or 0.0),
                t.user + t.system,
                n.deliveries,
            )

    total_s = warm_s + seconds
    while (now := time.perf_counter()) - start < total_s:
        if "a" not in marks and now - start >= warm_s:
            mark("a")
            requests_a = _requests()
            with n.lock:
                n.measuring = True
        due = start + published / events_per_s
        if due > now:
            time.sleep(min(due - now, 0.05))
            continue
        publisher.produce(events_t, f"{time.time():<24.6f}".encode() + event_pad, b"tenant")
        published += 1
        publisher.poll(0)
    requests_b = _requests()
    mark("b")
    with n.lock:
        n.measuring = False
    publisher.flush(10)
    deadline = time.monotonic() + 30
    while n.deliveries < published * fanout and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(15)
    (w0, b0, j0, c0, d0), (w1, b1, j1, c1, d1) = marks["a"], marks["b"]
    done = max(d1 - d0, 1)
    lat = sorted(n.latencies_ms) or [0.0]
    admin.delete_topics([events_t, deliveries_t, attempts_t])
    sent = {k: requests_b.get(k, 0) - requests_a.get(k, 0) for k in requests_b}
    return {
        "requests_per_delivery": sum(sent.values()) / done,
        "produce_per_delivery": sent.get("Produce", 0) / done,
        "fetch_per_delivery": sent.get("Fetch", 0) / done,
        "deliveries_per_s": done / (w1 - w0),
        "broker_us": 1e6 * ((b1 - b0) - (j1 - j0)) / done,
        "broker_jit_us": 1e6 * (j1 - j0) / done,
        "clients_us": 1e6 * (c1 - c0) / done,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "published": float(published),
        "delivered": float(n.deliveries),
        "logged": float(n.logged),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m streams.tools.bench.floor", description=__doc__)
    p.add_argument(
        "--rows", default="1000x10,500x1", help="RATExFANOUT rows (deliveries/s), one broker"
    )
    p.add_argument("--warm", type=float, default=20.0, help="seconds run before measuring")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds measured")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--linger-ms", type=int, default=8)
    p.add_argument("--attempts-linger-ms", type=int, default=8)
    p.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=0,
        help="stage consumers hold each fetch this long for 1 MiB (0: answered at once)",
    )
    args = p.parse_args(argv)
    from streams.tools.bench.procs import find_broker

    rows = [tuple(float(x) for x in row.split("x")) for row in args.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="streams-floor-") as tmp:
        broker = find_broker(Path(tmp), print, private=True)
        try:
            broker.refresh_pid()
            for rate, fanout in rows:
                r = run(
                    broker.bootstrap,
                    rate=rate,
                    fanout=int(fanout),
                    warm_s=args.warm,
                    seconds=args.seconds,
                    partitions=args.partitions,
                    linger_ms=args.linger_ms,
                    attempts_linger_ms=args.attempts_linger_ms,
                    fetch_wait_ms=args.fetch_wait_ms,
                    broker_pid=broker.pid,
                )
                print(
                    f"floor {rate:,.0f}/s x {fanout:.0f} ({args.partitions} partitions, "
                    f"linger {args.linger_ms} ms, attempts {args.attempts_linger_ms} ms, "
                    f"fetch wait {args.fetch_wait_ms} ms): "
                    f"{r['deliveries_per_s']:,.0f} deliveries/s; broker {r['broker_us']:,.0f} "
                    f"us per delivery (+{r['broker_jit_us']:,.0f} JIT); clients "
                    f"{r['clients_us']:,.0f} us; Kafka latency p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms; {r['delivered']:,.0f} of "
                    f"{r['published'] * fanout:,.0f} read, {r['logged']:,.0f} attempts logged; "
                    f"requests per delivery {r['requests_per_delivery']:.2f} (produce "
                    f"{r['produce_per_delivery']:.2f}, fetch {r['fetch_per_delivery']:.2f})",
                    flush=True,
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
