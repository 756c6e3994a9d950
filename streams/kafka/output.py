"""What the worker writes to Kafka: one confluent-kafka producer with asyncio confirmations.

Every record a stage produces (deliveries, attempt records, retries, dead
letters, ops events, subscription writes) goes through
:meth:`KafkaOutput.send`, which returns an ``asyncio.Future`` that resolves
when Kafka has acknowledged the record (``acks=all``, idempotent) or fails
with :class:`OutputError`. The commit contract (:mod:`streams.kafka.commits`)
waits on those futures.

Why not Faust's producer (``Topic.send``): profiled under the throughput
benchmark, Faust's send path plus aiokafka's pure-Python producer (record
batches, murmur2, one future per message, the sender task) took about a
fifth of the worker's event loop. librdkafka batches and talks to the broker
on its own C threads; the loop only calls ``produce``. The numbers are in
docs/benchmarks.md.

How confirmations reach the loop: librdkafka reports deliveries through
``poll``. A daemon thread polls; the callbacks only append to a list, and
after each poll the whole batch is handed to the loop with one
``call_soon_threadsafe``, so a busy worker pays one loop wake-up per batch,
not per record.

Optionally two producers: attempt records (the delivery log) are off the
latency path (nothing waits for them but the offset commit, made once a
second), so with ``STREAMS_KAFKA_ATTEMPTS_LINGER_MS`` set they go through a
producer of their own that lingers that long. librdkafka sends one produce
request per partition batch, so at a paced load a short linger means one
request per few records for every partition written: measured with `ss` at
1,000 deliveries/s, each worker's producer sent 217-279 requests/s of 2-3
records. With attempts lingering 100 ms the broker's requests fell by 5-28%
and its CPU per delivery by 11%, but the workers' rose by about as much (a
second producer's threads), so it is off by default (docs/benchmarks.md,
issue 22).

Partitioning is ``murmur2_random`` (:func:`producer_config`),
the Java client's and aiokafka's hash, so a key lands on the same partition
whichever client wrote it: a subscription's deliveries and retries stay on
the partition number its worker owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from typing import Any

from streams.config import Settings
from streams.errors import StreamsError

log = logging.getLogger(__name__)

#: How long ``send`` keeps trying while librdkafka's local queue is full.
QUEUE_FULL_TIMEOUT_S = 30.0
#: Poll timeout of the confirmation thread (also how quickly it notices a stop).
POLL_S = 0.05
#: How long librdkafka keeps retrying a record before failing it (which stops the
#: worker with its input un-acked). The publisher's 30 s was measured too short
#: here: a broker SIGKILLed and restarted (5 s down, 13 s to start) timed records
#: out and crashed the worker (`streams bench kill-broker`, docs/benchmarks.md).
#: 5 minutes (librdkafka's own default) rides out a broker restart or a leader
#: election; a longer outage still stops the worker rather than hiding it.
DELIVERY_TIMEOUT_MS = 300_000
#: Reconnect quickly once a restarted broker is back (librdkafka's default is 10 s).
RECONNECT_BACKOFF_MAX_MS = 1_000


def producer_config(settings: Settings) -> dict[str, Any]:
    """The durable producer settings every confluent-kafka producer of ours uses."""
    from streams.kafka.security import librdkafka_config

    return {
        **librdkafka_config(settings),
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,  # implies acks=all, retries, max.in.flight <= 5
        "acks": "all",
        # Java/aiokafka-compatible key hashing: Faust tables are co-partitioned by it.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        # A send that cannot be confirmed within this time fails loudly.
        "message.timeout.ms": 30_000,
        "message.max.bytes": settings.max_record_bytes,
    }


class OutputError(StreamsError):
    """Kafka did not take or did not acknowledge a record."""


class OutputClosed(OutputError):
    """A record offered after :meth:`KafkaOutput.close`: the worker is stopping.

    Its input stays un-acked and is read again after the restart, as a stop
    means (:meth:`streams.kafka.commits.OrderedAcks.fail`); not a fault.
    """


class KafkaOutput:
    """An idempotent confluent-kafka producer whose confirmations are asyncio futures."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        from streams.kafka.topics import TopicNames, parked_record_bytes

        config = producer_config(settings)
        # What the worker writes includes parked records and dead letters, which may
        # be larger than any record it reads (streams.kafka.topics.parked_record_bytes).
        config["message.max.bytes"] = parked_record_bytes(settings)
        self.linger_ms = settings.kafka_linger_ms
        config["linger.ms"] = self.linger_ms
        config["message.timeout.ms"] = DELIVERY_TIMEOUT_MS
        config["reconnect.backoff.max.ms"] = RECONNECT_BACKOFF_MAX_MS
        config["client.id"] = f"{settings.app_id}-output"
        self._producer = Producer(config)
        self._producers = [self._producer]
        # topic -> the index of the producer that writes it, when not the main one (0).
        self._routes: dict[str, int] = {}
        self.attempts_linger_ms = settings.kafka_attempts_linger_ms
        if self.attempts_linger_ms not in (-1, self.linger_ms):
            slow = Producer(
                {
                    **config,
                    "linger.ms": self.attempts_linger_ms,
                    "client.id": f"{settings.app_id}-output-attempts",
                }
            )
            self._producers.append(slow)
            self._routes[TopicNames(settings.topic_prefix).attempts] = len(self._producers) - 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Confirmations per producer, each appended and handed over by that producer's
        # own poll thread only (a list shared by two threads could be handed to the
        # loop while the other thread still appends to it, and lose that confirmation).
        self._reports: list[list[tuple[asyncio.Future[Any], Any, Any]]] = [
            [] for _ in self._producers
        ]
        self._closed = False
        self.sent = 0

    # -- sending ----------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> asyncio.Future[Any]:
        """Enqueue one record; the future resolves to (partition, offset) once acknowledged."""
        if self._closed:
            raise OutputClosed("the worker's Kafka producer is closed (the worker is stopping)")
        if self._thread is None:
            self._start(asyncio.get_running_loop())
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        index = self._routes.get(topic, 0)
        producer = self._producers[index]
        report = functools.partial(self._report, index, future)
        deadline = 0.0
        while True:
            try:
                if headers:
                    producer.produce(
                        topic,
                        value,
                        key,
                        headers=headers,  # type: ignore[arg-type]  # the stub's list type is wider
                        on_delivery=report,
                    )
                else:
                    producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                # librdkafka's local queue is full: the broker is slow or away. Wait.
                now = time.monotonic()
                deadline = deadline or now + QUEUE_FULL_TIMEOUT_S
                if now > deadline:
                    raise OutputError(
                        f"Kafka's producer queue stayed full for {QUEUE_FULL_TIMEOUT_S:g}s "
                        f"writing to {topic}: is the broker reachable?"
                    ) from None
                await asyncio.sleep(0.01)
            except Exception as exc:  # KafkaException: e.g. a record over the size limit
                future.set_exception(OutputError(f"Kafka refused a record for {topic}: {exc}"))
                return future
        self.sent += 1
        return future

    async def check_reachable(self, topic: str, timeout_s: float) -> None:
        """Raise :class:`KafkaUnavailableError` unless a broker answers for ``topic`` in time.

        For writes a caller must not leave behind half-done: librdkafka queues a record
        while the broker is away and writes it whenever it comes back (up to
        :data:`DELIVERY_TIMEOUT_MS`), long after the caller was told it failed. One
        metadata request to the same producer asks first (a few ms when it answers).
        """
        from streams.errors import KafkaUnavailableError

        def ask() -> Any:
            return self._producer.list_topics(topic, timeout=timeout_s)

        try:
            metadata = await asyncio.to_thread(ask)
        except Exception as exc:  # KafkaException: no broker answered in time
            raise KafkaUnavailableError(
                f"Kafka did not answer within {timeout_s:g}s ({exc}); nothing was written"
            ) from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise KafkaUnavailableError(
                f"Kafka does not serve the topic {topic} "
                f"({found.error if found is not None else 'not listed'}); nothing was written"
            )

    # -- confirmations ------------------------------------------------------------------

    def _report(self, index: int, future: asyncio.Future[Any], err: Any, msg: Any) -> None:
        # Runs inside poll()/flush() of producer ``index``, on the thread that called
        # it: only append.
        self._reports[index].append((future, err, msg))

    def _hand_over(self, index: int) -> None:
        if self._reports[index]:
            batch, self._reports[index] = self._reports[index], []
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(_settle, batch)

    def _poll_forever(self, index: int) -> None:
        producer = self._producers[index]
        while not self._stop.is_set():
            try:
                producer.poll(POLL_S)
            except Exception:  # never let the confirmation thread die silently
                log.exception("Kafka producer poll failed")
            self._hand_over(index)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for i in range(len(self._producers)):
            thread = threading.Thread(
                target=self._poll_forever,
                args=(i,),
                name="kafka-output" + (f"-{i}" if i else ""),
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._thread = self._threads[0]

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking records, wait for the outstanding confirmations (bounded)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, POLL_S * 20)
        remaining = 0
        for producer in self._producers:
            remaining += await asyncio.to_thread(producer.flush, timeout_s)
        self._hand_over_now()
        if remaining:
            log.error(
                "%d record(s) unconfirmed by Kafka at shutdown; their input is re-read", remaining
            )

    def _hand_over_now(self) -> None:
        # After the poll threads stopped and every producer was flushed.
        for index, batch in enumerate(self._reports):
            self._reports[index] = []
            _settle(batch)

    @property
    def outstanding(self) -> int:
        """Records handed to librdkafka and not yet confirmed."""
        return sum(len(producer) for producer in self._producers)


def _settle(batch: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    for future, err, msg in batch:
        if future.done():
            continue
        if err is not None:
            future.set_exception(
                OutputError(f"Kafka did not acknowledge a record for {msg.topic()}: {err.str()}")
            )
        else:
            future.set_result((msg.partition(), msg.offset()))
