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
:data:`FETCH_MAX_WAIT_MS` caps that lag. Its price, ten fetches a second from an
idle worker, is not paid while the consumer is idle: after a few empty fetches,
a fetch that names every assigned partition (so none is held back behind it)
waits ``STREAMS_KAFKA_IDLE_FETCH_MAX_WAIT_MS`` instead (2 s; Kafka answers it as
soon as any of them has a record), :mod:`streams.kafka.fetch_wait`.

A second change: how each fetched record is handed to the agents. Faust's
drain loop passes every record through ``Service.wait_first(callback(record),
suspend_flow.wait())``, which wraps four awaitables in tasks, waits for the
first, and cancels three: about 7% of a busy worker's CPU in a ``py-spy``
profile, for a callback that almost always finishes without waiting (it puts
the record on an agent's queue). :meth:`_Consumer.wait_first` first runs the
callback inline; only when it has to wait (an agent's queue is full) does it
fall back to Faust's race, with the rest of the callback running as a task, so
a rebalance (``suspend_flow``) still interrupts it exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service
from mode.services import WaitResults

from streams.kafka.fetch_wait import adapt_fetch_wait

#: How long the broker may hold a fetch of the worker's consumer open without data
#: (the default of ``STREAMS_KAFKA_FETCH_MAX_WAIT_MS``).
FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = getattr(transport.app, "fetch_max_wait_ms", FETCH_MAX_WAIT_MS)
        consumer._fetch_min_bytes = getattr(transport.app, "fetch_min_bytes", 1)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        # Once started (the fetcher exists): the longer wait while idle (streams.kafka.fetch_wait).
        idle_ms = getattr(self.consumer.app, "idle_fetch_max_wait_ms", 0)
        if self._consumer is not None and idle_ms:
            adapt_fetch_wait(self._consumer, idle_ms)


async def finish(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Finish, as a task, a coroutine that was run inline until it first waited.

    ``waiting_on`` is what it yielded: a future (or ``None`` for a bare yield,
    as ``asyncio.sleep(0)`` does). Like ``asyncio.Task``, resume it once that
    is done; it reads the future's result or exception itself. Cancelling this
    task cancels the future it waits on, which the coroutine then sees.
    """
    try:
        while True:
            if waiting_on is None:
                await asyncio.sleep(0)
            elif asyncio.isfuture(waiting_on):
                waiting_on._asyncio_future_blocking = False
                with contextlib.suppress(BaseException):  # the coroutine reads the outcome
                    await waiting_on
            else:
                waiting_on = coro.throw(
                    RuntimeError(f"coroutine yielded {waiting_on!r}, not a future")
                )
                continue
            waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value


def thread_loop_like(parent: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop | None:
    """A new loop for the consumer's thread, of the parent loop's kind.

    mode's ``ServiceThread`` otherwise calls ``asyncio.new_event_loop()``, which
    gives the pure-Python selector loop unless uvloop's policy is installed
    process-wide; the worker runs uvloop in its main thread only (cli.py).
    ``None`` keeps mode's default.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return None
    return uvloop.new_event_loop() if isinstance(parent, uvloop.Loop) else None


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        thread_loop = thread_loop_like(self.loop)
        thread = _ConsumerThread(self, loop=self.loop, thread_loop=thread_loop, beacon=self.beacon)
        # mode closes only loops it made itself; this one is the thread's alone too.
        thread._close_thread_loop_on_stop = True
        return thread

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109
        """Faust's drain loop calls this per record: run the callback inline first.

        Same result as ``Service.wait_first`` when the callback finishes
        without waiting (it is then the first to finish; the other awaitable,
        ``suspend_flow.wait()``, is closed unstarted). Otherwise the rest of
        the callback becomes a task raced as before.
        """
        blocked = self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()
        if timeout is not None or len(coros) != 2 or blocked or not asyncio.iscoroutine(coros[0]):
            return await super().wait_first(*coros, timeout=timeout)
        callback, other = coros
        try:
            waiting_on = callback.send(None)
        except StopIteration as done:
            if asyncio.iscoroutine(other):
                other.close()
            return WaitResults([callback], [done.value], False)
        except BaseException:
            if asyncio.iscoroutine(other):
                other.close()
            raise
        return await super().wait_first(finish(callback, waiting_on), other)

    async def verify_all_partitions_active(self) -> None:
        """Faust's livelock check (every 2.5 commit intervals), without a ``sleep(0)``
        before each assigned partition.

        Each of those sleeps is a ``wait_for`` (a task, a timer and five callbacks)
        only to yield between checks that take microseconds: with 18 partitions
        assigned, 36 of an idle worker's 90 main-loop callbacks a second
        (docs/benchmarks.md, issue 22). The checks and what they log are Faust's.
        """
        now = time.monotonic()
        for tp in self.assignment():
            if self.should_stop:
                return
            self.verify_event_path(now, tp)


class QuietMonitor(Monitor):
    """Faust's monitor without its once-a-second sampler.

    The sampler only turns the monitor's counters into rates and medians
    (``events_s``, ``commit_latency_avg``, ...) for Faust's own stats pages and
    sensors, none of which this worker serves or reads (its metrics are
    :mod:`streams.ops.metrics`). The counters and the per-record hooks stay:
    Faust's livelock check reads ``stream_inbound_time``.
    """

    @Service.task
    async def _sampler(self) -> None:
        return None


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose consumer fetches with the wait and size set on the app, and
    that closes what the stages write through only after every stage has stopped
    (:attr:`closers`).

    ``build_app`` sets the fetch wait and size from ``STREAMS_KAFKA_FETCH_MAX_WAIT_MS``
    and ``STREAMS_KAFKA_FETCH_MIN_BYTES``; Faust has no setting for either.
    """

    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    fetch_min_bytes: int = 1
    #: The fetch wait while the consumer is idle (0: always ``fetch_max_wait_ms``).
    idle_fetch_max_wait_ms: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Run in order once every child service (agents, retry tiers, consumer, web) has
        #: stopped. The worker's Kafka output was closed by a service of its own, which
        #: Faust stops *before* the agents and the tiers: records they still wrote were
        #: refused, the tier consumer crashed, and a stop under load exited with status 1.
        self.closers: list[Callable[[], Awaitable[Any]]] = []

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for close in self.closers:
            try:
                await close()
            except Exception:
                self.log.exception("closing %r at shutdown failed", close)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
