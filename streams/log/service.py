"""The delivery log of one worker: its indexer and its reader, or why there is none.

A log node (``STREAMS_DELIVERY_LOG=on``, the default, or ``streams worker --role
log``) runs :class:`~streams.log.indexer.LogIndexer` in a thread and answers the
log and stats API from its own store through :class:`~streams.log.store.LogReader`.
A delivery-only worker builds a :class:`DeliveryLog` that is off: it never reads
the attempts topic, and :meth:`DeliveryLog.reader` says where the log is instead.

Scaling: every log node indexes the whole topic into a store of its own, so
any of them answers any query; put several behind a load balancer for reads.
Each costs one read of the attempts topic and the disk of the store (see
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode

from streams.config import Settings
from streams.errors import UnavailableError
from streams.log.indexer import ConsumerFactory, LogIndexer
from streams.log.store import LogReader

log = logging.getLogger(__name__)

OFF = (
    "this worker does not serve the delivery log (STREAMS_DELIVERY_LOG=off, or `streams "
    "worker --role delivery`): ask a log node, a worker started with STREAMS_DELIVERY_LOG=on "
    "or `streams worker --role log`"
)


class DeliveryLog:
    """What the API reads the delivery log through on this worker."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        enabled: bool,
        consumer_factory: ConsumerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.enabled = enabled
        self.path = settings.log_path
        self.indexer: LogIndexer | None = None
        self._reader: LogReader | None = None
        if enabled:
            kwargs: dict[str, Any] = {}
            if consumer_factory is not None:
                kwargs["consumer_factory"] = consumer_factory
            self.indexer = LogIndexer(settings, topic, self.path, **kwargs)
            self._reader = LogReader(self.path)

    def reader(self) -> LogReader:
        """The store's reader; :class:`UnavailableError` (503) with the reason when this
        worker keeps no log or its store cannot be used."""
        if self._reader is None or self.indexer is None:
            raise UnavailableError(OFF)
        problem = self.indexer.problem()
        if problem is not None:
            raise UnavailableError(problem)
        return self._reader

    def status(self) -> dict[str, Any]:
        """The operator's view of this node's log: where, how far, what is wrong."""
        if self.indexer is None:
            return {"enabled": False}
        stats = self.indexer.stats
        return {
            "enabled": True,
            "store": str(self.path),
            "fault": self.indexer.fault,
            "waiting": self.indexer.waiting,
            "caught_up": self.indexer.caught_up.is_set(),
            "lag": stats.lag,
            "indexed": stats.attempts,
            "skipped": stats.skipped,
            "pruned": stats.pruned,
        }

    def start(self) -> None:
        if self.indexer is not None:
            self.indexer.start()

    def stop(self) -> None:
        if self.indexer is not None:
            self.indexer.stop()
        if self._reader is not None:
            self._reader.close()


class DeliveryLogService(mode.Service):
    """Starts and stops the delivery log with the worker's app."""

    def __init__(self, delivery_log: DeliveryLog) -> None:
        super().__init__()
        self.delivery_log = delivery_log

    async def on_start(self) -> None:
        self.delivery_log.start()

    async def on_stop(self) -> None:
        # The indexer's thread finishes its batch (a transaction) and exits.
        await asyncio.to_thread(self.delivery_log.stop)
