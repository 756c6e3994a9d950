"""The worker's garbage collector: rare, short pauses on a large heap.

CPython frees most objects by reference counting; its cyclic collector runs
on top, in three generations, and a collection of generation 2 walks every
tracked object of the process while the event loop waits. A worker holds a
large, long-lived heap (Faust and every module, the subscriptions, the
delivery log's window), so with CPython's default thresholds (700, 10, 10)
a busy worker spent 6-13% of its CPU in the collector, and each full
collection paused deliveries for 110-184 ms of CPU
(docs/benchmarks.md, "The garbage collector"): on its own enough to miss a
p99 of 100 ms.

What the worker does about it (:func:`tune` at start, :func:`settle` once the
state topics are read):

- ``gc.collect()`` then ``gc.freeze()``: what exists then (modules, the app,
  the subscriptions read at start) moves to the permanent generation, which no
  collection walks again. Frozen objects are still freed by reference
  counting. One that later ends up in a reference cycle is never collected
  (nor is the rest of that cycle); that can only happen to what existed at a
  freeze, so it is bounded, and the collection just before removes the cycles
  that exist by then.
- generation 0 collects after :data:`THRESHOLDS` ``[0]`` net new container
  objects instead of 700. Objects that live a few milliseconds (a request in
  flight, its futures) then die before a collection instead of being promoted
  into older generations, which is what made full collections frequent and
  large. A collection of generation 0 then walks at most that many objects
  (a few milliseconds; at most 17 ms in the benchmark runs).

The delivery log lives on disk (:mod:`streams.log.store`), not in objects the
collector would walk. :class:`PauseRecorder` exports every collection's pause
(``streams_gc_pause_seconds``), so the effect stays visible.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import mode

log = logging.getLogger(__name__)

#: Thresholds of generations 0, 1 and 2 (CPython's defaults: 700, 10, 10).
THRESHOLDS = (10_000, 10, 10)


def settle() -> int:
    """Collect once, then exclude every object alive now from future collections.

    Returns how many objects are frozen in all (a full collection: call it at
    start and at other quiet moments, not per request).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def tune(gen0: int | None = None) -> None:
    """Apply the worker's collector settings (once, before the app starts); ``gen0``
    replaces the first threshold (``STREAMS_GC_THRESHOLD``)."""
    frozen = settle()
    thresholds = THRESHOLDS if gen0 is None else (gen0, *THRESHOLDS[1:])
    gc.set_threshold(*thresholds)
    log.info("gc: %d objects frozen at start; thresholds %s", frozen, thresholds)


class PauseRecorder:
    """A ``gc.callbacks`` hook that times each collection, by generation.

    ``observe(generation, seconds)`` is called after each collection. The
    callback runs in the thread that triggered the collection; collections
    never overlap, so the observer is never called twice at once.
    """

    def __init__(self, observe: Any, clock: Any = time.perf_counter) -> None:
        self.observe = observe
        self.clock = clock
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
        else:
            self.observe(info["generation"], self.clock() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class SettleWhenReady(mode.Service):
    """Freeze once more when the worker has read its state topics (:func:`settle`)."""

    def __init__(self, ready: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.ready = ready

    async def on_started(self) -> None:
        self.add_future(self._settle())

    async def _settle(self) -> None:
        await self.ready()
        started = time.perf_counter()
        frozen = settle()
        log.info(
            "gc: %d objects frozen once the state topics were read (%.0f ms)",
            frozen,
            (time.perf_counter() - started) * 1000,
        )
