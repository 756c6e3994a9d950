"""Commit order, the contract every agent of the pipeline keeps.

An input offset is committed only after everything it caused is
acknowledged by Kafka:

1. the agent reads an event with manual acks (``stream.noack().events()``);
2. it produces its outputs (deliveries, the attempt record, a retry or
   dead letter) and waits for the broker's acknowledgement of each;
3. only then does it mark the event done here; this module acks events to
   Faust **in offset order per partition**, and Faust commits acked offsets.

Why in order: Faust 0.15's commit logic (``Consumer._new_offset``) commits
the end of the first consecutive run of acked offsets and its guard against a
gap at the head is off by one (faust-streaming issue #606, reproduced here on
Kafka 4.4: with offset 20 pending and 21.. acked, it commits past 20). Acking
only the contiguous done prefix makes that path unreachable.

Why a crashing supervisor: an exception escaping an agent acks the message
being processed (the stream's ``finally``), and the default supervisor
restarts the agent at the next message. Agents therefore run under
``mode.CrashingSupervisor`` and report unrecoverable errors (Kafka refused an
output) through :meth:`OrderedAcks.fail`, which stops the worker with the
event un-acked, so it is read again after restart. A crash anywhere, at any
point, therefore loses nothing; it may repeat work, and repeated deliveries
carry the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from streams.kafka.output import OutputClosed

log = logging.getLogger(__name__)


class _Message(Protocol):
    @property
    def tp(self) -> Any: ...

    @property
    def offset(self) -> int: ...


class AckableEvent(Protocol):
    @property
    def message(self) -> _Message: ...

    def ack(self) -> bool: ...


class Ticket:
    """One tracked event; ``done`` once its outputs are confirmed."""

    __slots__ = ("done", "event")

    def __init__(self, event: AckableEvent) -> None:
        self.event = event
        self.done = False


class OrderedAcks:
    """Ack events in offset order per partition, once each is done.

    Two bounds keep memory in check, and :meth:`track` waits for room in both
    (the back-pressure on the agent's loop):

    - ``max_pending``: events tracked and not yet *done* (the work in flight);
    - ``max_unacked``: events tracked and not yet *acked*, done or not.

    They differ because one slow event holds back the acks of every event
    behind it on its partition, done or not. Counting those done-but-unacked
    events against the work bound (as a single bound did) let one endpoint
    that hangs until its timeout fill the whole window with finished work and
    stall every other endpoint on the worker: measured as healthy endpoints
    keeping 39% of their throughput beside dead ones (docs/benchmarks.md,
    ``noisy``). A done event costs only its ticket until it is acked, so the
    second bound is an order of magnitude larger.
    """

    def __init__(
        self,
        *,
        max_pending: int,
        on_fatal: Callable[[BaseException], Any],
        max_unacked: int | None = None,
    ) -> None:
        self._queues: dict[Any, deque[Ticket]] = {}
        self._work = asyncio.Semaphore(max_pending)
        self._unacked = asyncio.Semaphore(max(max_pending, max_unacked or 10 * max_pending))
        self._on_fatal = on_fatal
        self.acked = 0
        self.working = 0
        self.failed: BaseException | None = None

    @property
    def pending(self) -> int:
        """Events tracked and not yet acked."""
        return sum(len(q) for q in self._queues.values())

    async def track(self, event: AckableEvent) -> Ticket:
        await self._unacked.acquire()
        await self._work.acquire()
        ticket = Ticket(event)
        self.working += 1
        self._queues.setdefault(event.message.tp, deque()).append(ticket)
        return ticket

    def done(self, ticket: Ticket) -> None:
        """Mark done; ack the partition's contiguous done prefix."""
        if self.failed is not None:
            return  # after a failure nothing more is acked: the worker is stopping
        if ticket.done:
            return
        ticket.done = True
        self.working -= 1
        self._work.release()
        queue = self._queues[ticket.event.message.tp]
        while queue and queue[0].done:
            head = queue.popleft()
            head.event.ack()
            self.acked += 1
            self._unacked.release()

    def fail(self, exc: BaseException) -> None:
        """Stop acking and stop the worker; un-acked events are read again on restart.

        A record refused because the output is closed means the worker is
        stopping already: the expected end of work in flight, not a fault. It is
        said once at INFO and the worker is not crashed again (that made every
        stop under load exit with status 1). The output is closed only then."""
        if self.failed is None:
            self.failed = exc
            if isinstance(exc, OutputClosed):
                log.info(
                    "the worker is stopping: %d event(s) in flight stay un-acked and are read "
                    "again after the restart",
                    self.pending,
                )
                return
            log.critical("stopping the worker without committing in-flight events: %s", exc)
            self._on_fatal(exc)

    def finish_when(self, ticket: Ticket, work: Awaitable[Any]) -> asyncio.Future[Any]:
        """Mark ``ticket`` done when ``work`` succeeds; :meth:`fail` if it raises."""
        future = asyncio.ensure_future(work)

        def settle(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                self.fail(asyncio.CancelledError("output confirmation was cancelled"))
            elif f.exception() is not None:
                self.fail(f.exception())  # type: ignore[arg-type]
            else:
                self.done(ticket)

        future.add_done_callback(settle)
        return future
