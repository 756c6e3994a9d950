"""The worker's Faust app, with one change to how its Kafka consumer fetches.

faust-streaming 0.15 builds its aiokafka consumer with ``fetch_max_wait_ms=1500``
and no setting to change it. With aiokafka's fetcher that number is not only the
idle poll interval: it bounds how long *busy* partitions can go unfetched.

- aiokafka sends at most one fetch request per broker at a time, and leaves out
  of it every partition whose earlier records the application has not taken yet.
- Faust stops taking a partition's records while the agent's buffer for it is
  under pressure (``Consumer.on_buffer_full``).
- So when the worker is busy, the next fetch may name only partitions with no
  new data (the ``ops`` topic, a quiet partition). The broker then holds it for
  the full wait, and the partitions that were drained meanwhile cannot be
  fetched until it returns: up to 1.5 s of added latency per stage, twice on
  the way from ``events`` to a receiver.

Measured with ``streams bench latency --rate 1000`` (docs/benchmarks.md): with
1500 ms, runs fell into a state where both stages lagged by 1.5-2 s (the
records' Kafka timestamp to the agent) while the machine was a third idle.
:data:`FETCH_MAX_WAIT_MS` caps that lag; the price is an idle worker's fetch
requests: ten per second instead of two-thirds of one.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

#: How long the broker may hold a fetch of the worker's consumer open without data.
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose consumer uses :data:`FETCH_MAX_WAIT_MS`."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
