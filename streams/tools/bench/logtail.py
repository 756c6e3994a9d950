"""What tailing the ``attempts`` topic costs a worker's event loop, per attempt.

Every worker that keeps the delivery log reads every attempt of the cluster
(:mod:`streams.api`). This measures that reader alone: a producer thread writes
attempt records at a steady rate while :class:`CompactedReader` tails the topic,
once with the broker's default fetch (answer as soon as one byte is there) and
once batched (``batch_wait_ms``), and reports the loop thread's CPU time per
attempt read. Both variants run in the same invocation, on the same broker::

    python -m streams.tools.bench.logtail [--rate 1000] [--seconds 20]

The broker is the one at ``STREAMS_KAFKA_BOOTSTRAP`` when it answers, else a
private local broker started (and stopped) for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from pathlib import Path

from streams.config import Settings
from streams.kafka.topics import TopicNames, create_topics
from streams.log.attempts import AttemptLog
from streams.records import Attempt
from streams.subscriptions.store import CompactedReader
from streams.tools.bench.procs import find_broker

#: Seconds a variant may take beyond its producing time before it counts as stuck.
GRACE_S = 30.0


def produce(settings: Settings, topic: str, rate: float, seconds: float) -> int:
    """Write attempt records at ``rate`` per second for ``seconds``; return how many."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 2})
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)
        attempt = Attempt(
            delivery_id=f"msg_{sent:026d}",
            event_id=f"evt_{sent}",
            event_type="alert.fired",
            tenant_id="t1",
            subscription_id=f"sub_{sent % 240}",
            attempt=1,
            at=time.time(),
            duration_ms=3.2,
            outcome="delivered",
            status=200,
            response_snippet="ok",
            source_topic="bench.deliveries",
            source_partition=sent % 6,
            source_offset=sent,
        )
        producer.produce(topic, attempt.to_bytes(), attempt.subscription_id.encode())
        producer.poll(0)
        sent += 1
    producer.flush(30)
    return sent


async def measure(settings: Settings, batch_wait_ms: int, rate: float, seconds: float) -> float:
    """CPU microseconds of the reader's thread per attempt read, on a topic of its own."""
    create_topics(settings)
    topic = TopicNames(settings.topic_prefix).attempts
    log = AttemptLog(1_000_000)
    reader = CompactedReader(
        settings,
        topic,
        log.apply,
        name="attempts",
        since_s=3600,
        gates_readiness=False,
        batch_wait_ms=batch_wait_ms,
    )
    await reader.start()
    await asyncio.sleep(2)  # connected and positioned before the clock starts
    sent: list[int] = []
    writer = threading.Thread(
        target=lambda: sent.append(produce(settings, topic, rate, seconds)), daemon=True
    )
    cpu0 = time.thread_time()
    writer.start()
    deadline = time.monotonic() + seconds + GRACE_S
    # Polls: the condition is a thread and a count, not something an Event could await.
    while (writer.is_alive() or (sent and len(log) < sent[0])) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    cpu = time.thread_time() - cpu0
    await reader.stop()
    if not sent or len(log) < sent[0]:
        raise SystemExit(f"the reader got {len(log)} of {sent or '?'} attempts in time")
    return 1e6 * cpu / len(log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="attempts/s written")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of writing")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 20_000 or not 0 < args.seconds <= 300:
        parser.error("--rate must be in (0, 20000] and --seconds in (0, 300]")
    with tempfile.TemporaryDirectory(prefix="streams-logtail-") as tmp:
        broker = find_broker(Path(tmp), print)
        try:
            for label, wait_ms in (("one fetch per arrival (default)", 0), ("batched", 500)):
                settings = Settings.from_env(
                    {
                        "STREAMS_KAFKA_BOOTSTRAP": broker.bootstrap,
                        "STREAMS_TOPIC_PREFIX": f"logtail.{uuid.uuid4().hex[:8]}.",
                        "STREAMS_PARTITIONS": "6",
                    }
                )
                us = asyncio.run(measure(settings, wait_ms, args.rate, args.seconds))
                print(f"{label:32} {us:8.1f} us of loop CPU per attempt read")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
