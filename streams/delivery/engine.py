"""The delivery engine: one attempt per delivery record, and what follows it.

Agents (``deliveries`` and every retry tier) hand each record to
:meth:`DeliveryEngine.handle` together with its ack ticket. The engine:

1. decodes it: a record that is not a delivery (no value, not JSON, a field of
   the wrong type or out of bounds, too large for its follow-ups to fit) is
   parked on ``events.invalid`` with the reason (:mod:`streams.deadletter.parking`);
2. looks up the subscription: deleted → dead letter ``subscription_deleted``,
   disabled → dead letter ``subscription_disabled`` (parked, replayable);
3. submits it to the subscription's lane (:mod:`streams.delivery.lanes`),
   where it waits for its tenant's turn and share of the worker's requests
   (``STREAMS_TENANT_MAX_IN_FLIGHT``); a full lane, or a tenant already holding
   its share of waiting work, defers it to the first retry tier without an
   attempt; while
   the endpoint's circuit breaker is open (:mod:`streams.delivery.breaker`)
   it is skipped at once: an attempt that sent nothing, scheduled like a failure
   (unless it is a replay asked after the breaker opened: that one probes);
4. in the lane: signs with the secrets valid *now*, sends, classifies
   (:mod:`streams.delivery.outcome`), and produces the follow-ups: the
   attempt record always, plus a retry (next tier) or a dead letter;
5. acks the record only after Kafka acknowledged every follow-up
   (:mod:`streams.kafka.commits`). A follow-up Kafka refuses stops the worker with
   the record un-acked.

Nothing in this module blocks the agent loop: ``handle`` only submits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from streams.deadletter.parking import park_record
from streams.delivery import chat
from streams.delivery.breaker import TRIPPING, Breaker, Decision
from streams.delivery.lanes import Dispatcher
from streams.delivery.ordering import Holds
from streams.delivery.outcome import Delivered, ErrorKind, GiveUp, Retry, classify
from streams.delivery.request import PreparedRequest, build_request
from streams.errors import DecodeError, SigningError, StreamsError
from streams.health import ops_event
from streams.kafka.commits import OrderedAcks, Ticket
from streams.kafka.output import OutputClosed
from streams.kafka.topics import parked_record_bytes, retry_tiers
from streams.ops.logs import log_ids
from streams.records import (
    MAX_ERROR_CHARS,
    RECORD_FRAMING,
    Attempt,
    DeadLetter,
    Delivery,
    Subscription,
    bounded,
)
from streams.retry.schedule import (
    deferral_delay,
    next_retry,
    parse_retry_after,
    parse_schedule,
    tier_for_delay,
)
from streams.subscriptions import secrets as secret_store
from streams.subscriptions.headers import reveal as reveal_headers
from streams.subscriptions.model import reserved_headers

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Bounds on a receiver's Retry-After (RFC 9110 §10.2.3), in seconds.
RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 24 * 3600.0
#: Webhook requests in flight on one worker, shared between tenants in turn: the
#: transport's connection limit (``transport.MAX_CONNECTIONS``, checked equal by a
#: test), so requests beyond it wait their turn in the lanes, not in aiohttp's queue.
MAX_IN_FLIGHT = 1024
#: Deliveries one tenant may hold waiting in its lanes, beyond which its deliveries
#: are deferred: a quarter of an agent's window of unfinished records
#: (``agent.MAX_PENDING``, checked by a test), so a flooding tenant leaves at least
#: three quarters of it to the others. Waiting in memory costs nothing but that share;
#: each deferral costs a record written and read again, so the bound is not smaller.
TENANT_QUEUE = 1250
#: Characters of the response body kept in the attempt log.
SNIPPET_CHARS = 4096
#: A replay waiting for a probe's verdict waits this much past the probe's own timeout.
VERDICT_SLACK_S = 1.0


#: Bytes a delivery record must leave below the record limit for what its follow-ups
#: add: re-encoding writes every optional field (their names and longest number forms
#: add under 700 bytes); the error text they carry is shortened to fit (:func:`fitted`).
#: The fan-out leaves far more (``streams.fanout.agent.RECORD_HEADROOM``), so only a
#: record written by another producer can come this close.
FOLLOW_UP_ROOM = 2048


def unacceptable(raw: bytes | None, max_record_bytes: int) -> str | None:
    """Why a delivery record cannot be handled before it is decoded, or None."""
    if raw is None:
        return "the record has no value (a tombstone): a delivery record is a JSON object"
    if len(raw) > max_record_bytes - FOLLOW_UP_ROOM:
        return (
            f"delivery record of {len(raw)} bytes, over the {max_record_bytes - FOLLOW_UP_ROOM} "
            f"bytes a delivery may have: its retry or dead letter could exceed the "
            f"{max_record_bytes}-byte record limit"
        )
    return None


def fitted(make: Callable[[str | None], bytes], error: str | None, limit: int) -> bytes:
    """``make(error)``, with ``error`` shortened until the record is at most ``limit`` bytes.

    Every character cut removes at least one byte, so each round cuts the excess
    and the loop ends within ``len(error)`` rounds (in practice one).
    """
    data = make(error)
    while len(data) > limit and error:
        keep = len(error) - (len(data) - limit) - 1
        error = error[: max(0, keep - 1)] + "\u2026" if keep > 1 else None
        data = make(error)
    return data


def all_of(futures: list[Any]) -> Any:
    """What resolves when every one of ``futures`` has: the future itself when there is
    one (a delivered attempt's only follow-up is its attempt record), saving a
    ``gather`` per delivery."""
    if len(futures) == 1:
        return futures[0]
    return asyncio.gather(*futures)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one HTTP attempt produced. ``detail`` never contains secrets."""

    status: int | None
    body: bytes = b""
    error: ErrorKind | None = None
    detail: str | None = None
    duration_ms: float = 0.0
    retry_after: str | None = None
    gone: str | None = None  # the endpoint no longer exists: why (streams.delivery.chat)


class Sender(Protocol):
    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult: ...


@dataclass(slots=True)
class Job:
    delivery: Delivery
    sub: Subscription
    ticket: Ticket
    acks: OrderedAcks
    source: tuple[str, int, int] = ("", -1, -1)  # topic, partition, offset of the record
    asked_at: float | None = None  # a replay's first attempt: when the operator asked for it


#: The result of an attempt the circuit breaker skipped.
SKIPPED = SendResult(status=None, error=ErrorKind.CIRCUIT_OPEN)


class DeliveryEngine:
    def __init__(
        self,
        pipeline: Pipeline,
        sender: Sender,
        *,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.p = pipeline
        self.sender = sender
        self.jitter = jitter
        self.clock = clock
        self.tiers = retry_tiers(pipeline.settings)
        self.default_schedule = parse_schedule(pipeline.settings.retry_schedule)
        self.reserved = reserved_headers()
        self.dispatcher = Dispatcher(
            self._run_job,
            on_error=self._job_failed,
            tenant_limit=pipeline.settings.tenant_max_in_flight or None,  # 0: off
            capacity=MAX_IN_FLIGHT,
            tenant_queue=TENANT_QUEUE,
        )
        self.lane_wait_s = pipeline.settings.lane_wait_ms / 1000.0
        self.holds = Holds()
        self._defer_locks: dict[str, asyncio.Lock] = {}
        self._secrets: dict[tuple[str, int], tuple[tuple[str, float | None], ...]] = {}
        self._headers: dict[tuple[str, int], dict[str, str]] = {}
        settings = pipeline.settings
        self.breaker_failures = settings.breaker_failures
        self.breaker_open_s = settings.breaker_open_s
        self.breaker_max_open_s = max(settings.breaker_max_open_s, settings.breaker_open_s)
        # Only endpoints that are failing have one (closed idle breakers are dropped).
        self.breakers: dict[str, Breaker] = {}
        # Set when a breaker's probe has its verdict: replays waiting on it (see breaker).
        self._verdicts: dict[str, asyncio.Event] = {}
        # Hooks for the stages that react to outcomes (auto-disable, metrics).
        self.on_outcome: list[Callable[[Subscription, Attempt], Any]] = []
        # streams.ops.metrics.Metrics when STREAMS_METRICS is on: observe(delivery, attempt).
        self.metrics: Any = None

    # -- entry point from the agents ---------------------------------------------

    async def handle(
        self, raw: bytes | None, message: Any, ticket: Ticket, acks: OrderedAcks
    ) -> None:
        reason = unacceptable(raw, self.p.settings.max_record_bytes)
        if reason is None:
            assert raw is not None
            try:
                delivery = Delivery.from_bytes(raw)
            except DecodeError as exc:
                reason = f"not a delivery record: {exc}"
        if reason is not None:
            fut = await park_record(self.p, message, raw, reason, stat="invalid.deliveries")
            acks.finish_when(ticket, fut)
            return
        follower = delivery.held_by is not None
        if follower:
            # An ordered subscription's follower left its tier.
            delivery = dataclasses.replace(delivery, held_by=None)
        sub = self.p.subscriptions.get(delivery.subscription_id)
        if sub is None or not sub.enabled:
            self._forget_breaker(delivery.subscription_id)
        if (sub is None or not sub.enabled or sub.ordering != "ordered") and len(self.holds):
            # A hold outlives no change of these: release what it kept (not acked yet).
            await self._release_hold(delivery.subscription_id)
        if sub is None:
            acks.finish_when(
                ticket, await self._dead_letter(delivery, "subscription_deleted", None, None)
            )
            return
        if not sub.enabled:
            acks.finish_when(
                ticket, await self._dead_letter(delivery, "subscription_disabled", None, None)
            )
            return
        ordered = sub.ordering == "ordered"
        if ordered and await self._ordered_gate(delivery, sub.id, follower, ticket, acks):
            return
        job = Job(
            delivery,
            sub,
            ticket,
            acks,
            (message.topic, message.partition, message.offset),
            self._asked_at(delivery, message),
        )
        breaker = self.breakers.get(sub.id)
        if (
            breaker is not None
            and breaker.blocks(self.clock())
            and not breaker.predates(job.asked_at)
        ):
            # The endpoint is down: skip now rather than queue behind its lane.
            await self._attempt(job)
            return
        # An ordered lane never sheds load (that would reorder): it back-pressures,
        # as every lane does when there is no retry tier to defer to.
        may_shed = not ordered and bool(self.tiers)
        if may_shed and self.dispatcher.tenant_full(sub.tenant_id):
            # The tenant already holds its share of waiting work (its burst must not
            # take the worker's window from other tenants): deferred like a full lane's.
            self.p.stats["deferred.tenant"] += 1
            submitted = False
        else:
            submitted = self.dispatcher.submit(
                sub.id,
                job,
                max_in_flight=1 if ordered else sub.max_in_flight,
                rate=sub.rate_limit,
                queue_cap=None if may_shed else 10**9,
                tenant=sub.tenant_id,
            )
            if not submitted and may_shed and self.lane_wait_s > 0 and sub.rate_limit is None:
                # A burst for an endpoint that answers fast: wait for room (back-pressure)
                # rather than add a tier's delay to it (streams.delivery.lanes). Never for
                # a rate-limited lane: it drains at its rate, and waiting would pace the
                # agent (every other subscription it reads) to one endpoint's limit.
                submitted = await self.dispatcher.submit_or_wait(
                    sub.id,
                    job,
                    max_in_flight=sub.max_in_flight,
                    rate=None,
                    wait_s=self.lane_wait_s,
                    tenant=sub.tenant_id,
                )
        if not submitted:
            # The endpoint is backed up: park this one in a tier, no attempt made, and
            # wait longer each time it finds the lane full again (deferral_delay).
            self.p.stats["deferred"] += 1
            deferrals = delivery.deferrals + 1
            delay = deferral_delay(self.tiers[0], deferrals, jitter=self.jitter())
            tier = tier_for_delay(self.tiers, delay)
            later = dataclasses.replace(delivery, due_at=self.clock() + delay, deferrals=deferrals)
            fut = await self.p.send(self.p.names.retry(tier), sub.id, later.to_bytes())
            acks.finish_when(ticket, fut)

    def _asked_at(self, delivery: Delivery, message: Any) -> float | None:
        """When the operator asked for this delivery, if it is a replay's (or a redelivery's)
        first attempt: its record's Kafka timestamp, the moment the replay wrote it."""
        if delivery.replay_id is None or delivery.attempt != 1:
            return None
        stamp = getattr(message, "timestamp", None)
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp > 0:
            return float(stamp)
        return self.clock()

    def _forget_breaker(self, sub_id: str) -> None:
        """Drop a subscription's breaker (deleted, disabled); release replays waiting on it."""
        self.breakers.pop(sub_id, None)
        verdict = self._verdicts.pop(sub_id, None)
        if verdict is not None:
            verdict.set()

    async def _after_verdict(
        self, sub_id: str, asked_at: float | None, request_timeout_s: float
    ) -> tuple[Decision, Breaker | None]:
        """A replay found the endpoint's probe out: wait for its verdict (bounded by the
        probe's timeout), then decide again. A failed probe is news from after the
        replay was asked, so the delivery is skipped like any other."""
        breaker = self.breakers.get(sub_id)
        if breaker is not None and breaker.probe_out:
            verdict = self._verdicts.setdefault(sub_id, asyncio.Event())
            wait_s = max(0.0, breaker.probe_until - self.clock()) + VERDICT_SLACK_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(verdict.wait(), wait_s)
        breaker = self.breakers.get(sub_id)
        if breaker is None:
            return "send", None
        decision = breaker.admit(self.clock(), request_timeout_s, asked_at=asked_at)
        return ("skip" if decision == "wait" else decision), breaker

    def _defer_lock(self, sub_id: str) -> asyncio.Lock:
        lock = self._defer_locks.get(sub_id)
        if lock is None:
            if len(self._defer_locks) > 10_000:
                self._defer_locks = {k: v for k, v in self._defer_locks.items() if v.locked()}
            lock = self._defer_locks[sub_id] = asyncio.Lock()
        return lock

    async def _ordered_gate(
        self, delivery: Delivery, sub_id: str, follower: bool, ticket: Ticket, acks: OrderedAcks
    ) -> bool:
        """Apply an ordered subscription's hold (:mod:`streams.delivery.ordering`).

        True when the delivery was queued or kept (not sent now). Every decision
        for one subscription is taken under its lock, so tier appends keep order.
        """
        async with self._defer_lock(sub_id):
            hold = self.holds.get(sub_id)
            if hold is None:
                return False
            if follower:
                if self.holds.follower_out(sub_id) == "send":
                    await self._flush_waiting(sub_id)
                    return False
                acks.finish_when(ticket, await self._to_queue(delivery, sub_id))
                await self._flush_waiting(sub_id)
                return True
            if hold.head == delivery.delivery_id:
                return False  # the head's own retry
            verdict = self.holds.arrival(sub_id)
            if verdict == "send":
                return False
            if verdict == "wait":
                hold.waiting.append((delivery, ticket, acks))
                return True
            self.holds.queued(sub_id)
            acks.finish_when(ticket, await self._to_queue(delivery, sub_id))
            return True

    async def _release_hold(self, sub_id: str) -> None:
        """End an ordered hold early: the arrivals it kept join the end of the queue.

        They come back out of the tier like any record and are handled by the
        subscription's state then. Without this, a kept arrival was never acked
        once the subscription stopped being ordered and enabled, and acks of its
        partition stopped behind it until the worker restarted.
        """
        if self.holds.get(sub_id) is None:
            return
        async with self._defer_lock(sub_id):
            hold = self.holds.drop(sub_id)
            if hold is None:
                return
            log.info("ordered hold of %s released: the subscription changed", sub_id)
            for delivery, ticket, acks in hold.waiting:
                acks.finish_when(ticket, await self._to_queue(delivery, sub_id))

    async def _to_queue(self, delivery: Delivery, sub_id: str) -> Any:
        """Append a follower to the end of the hold's queue in the first tier (no attempt)."""
        self.p.stats["held"] += 1
        tier = self.tiers[0]
        later = dataclasses.replace(delivery, held_by="held", due_at=self.clock() + tier)
        return await self.p.send(self.p.names.retry(tier), sub_id, later.to_bytes())

    async def _flush_waiting(self, sub_id: str) -> None:
        """At a cycle boundary: arrivals kept during the cycle join the end of the queue."""
        for delivery, ticket, acks in self.holds.take_waiting(sub_id):
            self.holds.queued(sub_id)
            acks.finish_when(ticket, await self._to_queue(delivery, sub_id))

    # -- one attempt ---------------------------------------------------------------

    def _secrets_now(self, sub: Subscription, now: float) -> tuple[str, ...]:
        key = (sub.id, sub.version)
        cached = self._secrets.get(key)
        if cached is None:
            if len(self._secrets) > 100_000:
                self._secrets.clear()
            cached = tuple(
                (self.p.box.decrypt(s), s.get("expires_at"))
                for s in secret_store.active(sub.secrets, now)
            )
            self._secrets[key] = cached
        return tuple(clear for clear, expires in cached if expires is None or expires > now)

    def _headers_now(self, sub: Subscription) -> dict[str, str]:
        """The custom headers to send, secret values decrypted once per subscription version."""
        if not sub.secret_headers:
            return sub.headers  # the common case: nothing encrypted (or a pre-encryption record)
        key = (sub.id, sub.version)
        cached = self._headers.get(key)
        if cached is None:
            if len(self._headers) > 100_000:
                self._headers.clear()
            cached = self._headers[key] = reveal_headers(sub, self.p.box)
        return cached

    async def _attempt(self, job: Job) -> None:
        delivery, sub = job.delivery, job.sub
        # The subscription may have changed while this waited in its lane.
        current = self.p.subscriptions.get(sub.id)
        if current is None or not current.enabled:
            # A breaker outlives neither: re-enabling (after a fix) starts closed.
            self._forget_breaker(sub.id)
            reason = "subscription_deleted" if current is None else "subscription_disabled"
            job.acks.finish_when(job.ticket, await self._dead_letter(delivery, reason, None, None))
            return
        sub = current
        now = self.clock()
        timeout = sub.timeout_s or self.p.settings.request_timeout_s
        breaker = self.breakers.get(sub.id)
        decision = "send" if breaker is None else breaker.admit(now, timeout, asked_at=job.asked_at)
        if decision == "wait":
            decision, breaker = await self._after_verdict(sub.id, job.asked_at, timeout)
            now = self.clock()
        if decision == "probe" and job.asked_at is not None:
            self.p.stats["breaker.replay_probes"] += 1
            log.info(
                "replay sent through an open circuit as its probe: the breaker opened before "
                "the replay was asked",
                extra=log_ids(delivery),
            )
        if decision == "skip":
            assert breaker is not None
            self.p.stats["breaker.skipped"] += 1
            futures = await self._follow_up(
                delivery,
                sub,
                SKIPPED,
                started=now,
                source=job.source,
                sent=False,
                not_before=breaker.reopens_in(now),
            )
            job.acks.finish_when(job.ticket, all_of(futures))
            return
        try:
            request = build_request(
                delivery,
                sub,
                secrets=self._secrets_now(sub, now),
                timestamp=int(now),
                user_agent=self.p.settings.user_agent,
                reserved=self.reserved,
                custom_headers=self._headers_now(sub),
                url=None
                if sub.url_secret is None
                else secret_store.destination_url(self.p.box, sub),
            )
        except SigningError as exc:
            result = SendResult(status=None, error=ErrorKind.INVALID_URL, detail=f"signing: {exc}")
        except StreamsError as exc:
            # A secret or header value the configured keys cannot decrypt: an attempt that
            # failed with the reason (parked as not_retryable, replayable once the key is
            # back), not a stopped worker.
            result = SendResult(status=None, error=ErrorKind.INVALID_URL, detail=str(exc))
        else:
            result = chat.interpret(
                sub.body_format, await self.sender.send(request, timeout_s=timeout)
            )
        # Always recorded, so a probe that could not even be signed releases the breaker.
        self._breaker_record(sub.id, result, probe=decision == "probe", delivery=delivery)
        futures = await self._follow_up(delivery, sub, result, started=now, source=job.source)
        job.acks.finish_when(job.ticket, all_of(futures))

    def _breaker_record(
        self, sub_id: str, result: SendResult, *, probe: bool, delivery: Delivery
    ) -> None:
        if self.breaker_failures == 0:
            return
        tripping = result.status is None and result.error in TRIPPING
        breaker = self.breakers.get(sub_id)
        if breaker is None:
            if not tripping:
                return  # the hot path: a healthy endpoint has no breaker
            breaker = self.breakers[sub_id] = Breaker(
                self.breaker_failures, self.breaker_open_s, self.breaker_max_open_s
            )
        was_open = not breaker.closed
        opened = breaker.record(self.clock(), tripping=tripping, probe=probe)
        if probe or breaker.closed:
            verdict = self._verdicts.pop(sub_id, None)
            if verdict is not None:
                verdict.set()  # replays waiting on this probe decide again
        if opened:
            self.p.stats["breaker.opened"] += 1
            log.warning(
                "endpoint circuit opened for %.0f s after %s (%s); deliveries are skipped "
                "to their next retry meanwhile",
                breaker.open_for(breaker.trips),
                "a failed probe" if breaker.trips > 1 else f"{breaker.failures} failures",
                result.error,
                extra=log_ids(delivery),
            )
        elif was_open and breaker.closed:
            self.p.stats["breaker.closed"] += 1
            log.info("endpoint circuit closed: the endpoint answered", extra=log_ids(delivery))
        if breaker.idle:
            del self.breakers[sub_id]

    async def _follow_up(
        self,
        delivery: Delivery,
        sub: Subscription,
        result: SendResult,
        *,
        started: float,
        source: tuple[str, int, int] = ("", -1, -1),
        sent: bool = True,
        not_before: float | None = None,
    ) -> list[Any]:
        now = self.clock()
        retry_after = parse_retry_after(
            result.retry_after, now, minimum=RETRY_AFTER_MIN_S, maximum=RETRY_AFTER_MAX_S
        )
        outcome = classify(result.status, result.error, retry_after, gone=result.gone)
        error = (
            None
            if isinstance(outcome, Delivered)
            else (result.detail or getattr(outcome, "reason", None))
        )
        if error is not None:
            error = bounded(error, MAX_ERROR_CHARS)
        futures: list[Any] = []
        label = "delivered"
        if isinstance(outcome, Retry):
            schedule = (
                tuple(sub.retry_schedule)
                if sub.retry_schedule is not None
                else self.default_schedule
            )
            delay = next_retry(schedule, delivery.attempt, jitter=self.jitter())
            if not self.tiers:
                delay = None  # no retry tier to wait in (STREAMS_RETRY_SCHEDULE=none)
            if delay is None:
                label = "give_up"
                futures.append(await self._dead_letter(delivery, "exhausted", result.status, error))
                futures.extend(await self._exhausted(delivery, result.status, error))
            else:
                label = "retry"
                planned = next_retry(schedule, delivery.attempt, jitter=0.0) or delay
                if outcome.retry_after is not None and outcome.retry_after > delay:
                    delay = planned = outcome.retry_after
                if not_before is not None and not_before > delay:
                    # Skipped by an open breaker: not back before it lets a probe through,
                    # or the skip would repeat without a request (one produce per round).
                    delay = planned = not_before
                tier = tier_for_delay(self.tiers, planned)
                retry = delivery.next_attempt(due_at=now + delay, status=result.status, error=error)
                if retry.first_attempt_at is None:
                    retry = dataclasses.replace(retry, first_attempt_at=started)
                value = fitted(
                    lambda e: dataclasses.replace(retry, last_error=e).to_bytes(),
                    error,
                    self._room(self.p.settings.max_record_bytes, sub.id),
                )
                futures.append(await self.p.send(self.p.names.retry(tier), sub.id, value))
                if sub.ordering == "ordered":
                    await self._hold_queue(sub.id, delivery.delivery_id)
        if sub.ordering == "ordered" and label != "retry":
            await self._resolve_hold(sub.id, delivery.delivery_id)
        if isinstance(outcome, GiveUp):
            label = "give_up"
            reason = "gone" if outcome.disable else "not_retryable"
            futures.append(await self._dead_letter(delivery, reason, result.status, error))
        attempt = Attempt(
            delivery_id=delivery.delivery_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            tenant_id=delivery.tenant_id,
            subscription_id=sub.id,
            attempt=delivery.attempt_number,  # numbered on after a redelivery or replay
            at=started,
            duration_ms=round(result.duration_ms, 3),
            outcome=label,
            status=result.status,
            response_snippet=result.body[:SNIPPET_CHARS].decode("utf-8", "replace")[:SNIPPET_CHARS],
            error=error,
            replay_id=delivery.replay_id,
            source_topic=source[0],
            source_partition=source[1],
            source_offset=source[2],
            sent=sent,
            gone=isinstance(outcome, GiveUp) and outcome.disable,
        )
        futures.append(
            await self.p.send(self.p.names.attempts, delivery.delivery_id, attempt.to_bytes())
        )
        self.p.stats[f"attempts.{label}"] += 1
        if self.metrics is not None:
            self.metrics.observe(delivery, attempt)
        for hook in self.on_outcome:
            extra = hook(sub, attempt)
            if extra is not None:
                futures.extend(await extra)
        return futures

    async def _hold_queue(self, sub_id: str, head: str) -> None:
        """An ordered subscription's head failed: hold, and queue its lane's followers."""
        async with self._defer_lock(sub_id):
            hold = self.holds.head_failed(sub_id, head)
            # Followers still in the tier (a failure while draining) are newer than
            # those in the lane: the lane's go first, into the next cycle.
            next_cycle = hold.current > 0
            for job in self.dispatcher.take_queued(sub_id):
                self.holds.queued(sub_id, next_cycle=next_cycle)
                job.acks.finish_when(job.ticket, await self._to_queue(job.delivery, sub_id))

    async def _resolve_hold(self, sub_id: str, head: str) -> None:
        async with self._defer_lock(sub_id):
            self.holds.resolved(sub_id, head)
            await self._flush_waiting(sub_id)

    def _room(self, limit: int, key: str) -> int:
        """Bytes a record's value may take under a topic's ``limit`` with this key."""
        return limit - len(key.encode("utf-8")) - RECORD_FRAMING

    async def _dead_letter(
        self, delivery: Delivery, reason: str, status: int | None, error: str | None
    ) -> Any:
        letter = DeadLetter(
            delivery=delivery.to_dict(),
            reason=reason,
            attempts=delivery.attempt
            if reason in ("exhausted", "not_retryable", "gone")
            else delivery.attempt - 1,
            dead_lettered_at=self.clock(),
            last_status=status if status is not None else delivery.last_status,
            last_error=error if error is not None else delivery.last_error,
        )
        value = fitted(
            lambda e: dataclasses.replace(letter, last_error=e).to_bytes(),
            letter.last_error,
            self._room(parked_record_bytes(self.p.settings), delivery.subscription_id),
        )
        self.p.stats[f"dlq.{reason}"] += 1
        log.log(
            logging.WARNING if reason in ("exhausted", "not_retryable", "gone") else logging.INFO,
            "delivery dead-lettered (%s) after %d attempt(s)",
            reason,
            letter.attempts,
            extra=log_ids(delivery),
        )
        return await self.p.send(self.p.names.dlq, delivery.subscription_id, value)

    async def _exhausted(
        self, delivery: Delivery, status: int | None, error: str | None
    ) -> list[Any]:
        """``delivery.exhausted`` on ``ops`` under the delivery's tenant (none about itself)."""
        if delivery.event_type == "delivery.exhausted":
            return []  # an exhausted delivery of this ops event must not beget another one
        event = ops_event(
            "delivery.exhausted",
            delivery.tenant_id,
            {
                "subscription_id": delivery.subscription_id,
                "delivery_id": delivery.delivery_id,
                "event_id": delivery.event_id,
                "event_type": delivery.event_type,
                "attempts": delivery.attempt,
                "reason": "exhausted",
                "last_status": status,
                "last_error": error,
            },
        )
        return [await self.p.send(self.p.names.ops, delivery.tenant_id, event.to_bytes())]

    async def _run_job(self, job: Job) -> None:
        """A lane's job: one attempt. Once the worker is stopping, the output refuses its
        follow-ups: the record stays un-acked and is read again after the restart."""
        try:
            await self._attempt(job)
        except OutputClosed as exc:
            job.acks.fail(exc)

    def _job_failed(self, job: Job, exc: BaseException) -> None:
        log.error("delivery attempt failed: %r", exc, extra=log_ids(job.delivery))
        job.acks.fail(exc)
