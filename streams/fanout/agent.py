"""The fan-out agent: each event joined with its tenant's subscriptions.

Reads ``events`` (keyed by tenant), validates every envelope against
``schemas/``, finds the tenant's enabled subscriptions whose event types match,
and produces one :class:`~streams.records.Delivery` per match to
``deliveries``, keyed by subscription id. A matching subscription that is
disabled gets no delivery; its delivery is parked in ``deliveries.dlq`` with
reason ``subscription_disabled``, so re-enabling can replay it. Any other
record (not JSON, failing its schemas, unknown type, oversized, an integer
beyond 64 bits, no value at all) is parked on ``events.invalid`` with the
reason (:mod:`streams.deadletter.parking`); the agent never stops on one.

The event's offset is acked only after every record it caused is
acknowledged by Kafka, in offset order (see :mod:`streams.kafka.commits`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import mode

from streams.deadletter.parking import park_record
from streams.errors import InvalidEventError
from streams.fanout.bodies import render_body
from streams.kafka.commits import OrderedAcks
from streams.records import (
    DeadLetter,
    Delivery,
    EventEnvelope,
    Subscription,
    delivery_id_for,
)
from streams.tenants import RESERVED_REASON, is_reserved

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Events in flight (sent, awaiting Kafka's acknowledgement) per worker.
MAX_PENDING_EVENTS = 2000


def deliveries_for(
    event: EventEnvelope,
    subscriptions: list[Subscription],
    *,
    body_key: str,
    published_at: float,
    now: float,
    summary: str | None = None,
) -> list[Delivery]:
    """One delivery per subscription, each with the body bytes of its body format
    (and chat id: a Telegram body names its chat). ``summary``: the type's template."""
    bodies: dict[tuple[str, str | None], str] = {}
    out: list[Delivery] = []
    for sub in subscriptions:
        shape = (sub.body_format, sub.chat_id)
        body = bodies.get(shape)
        if body is None:
            body = render_body(
                event, sub.body_format, body_key, summary=summary, chat_id=sub.chat_id
            ).decode("utf-8")
            bodies[shape] = body
        out.append(
            Delivery(
                delivery_id=delivery_id_for(event.id, sub.id),
                event_id=event.id,
                event_type=event.type,
                tenant_id=event.tenant_id,
                subscription_id=sub.id,
                body=body,
                attempt=1,
                created_at=now,
                published_at=published_at,
                traceparent=event.traceparent,
            )
        )
    return out


#: Room left in each delivery record for what a retry or a dead letter adds to it
#: (attempt counters, the last error, the dead letter's own fields).
RECORD_HEADROOM = 16_384


async def _park_invalid(
    pipeline: Pipeline,
    key: bytes | None,
    raw: bytes | None,
    message: Any,
    reason: str,
    field: str = "",
) -> Any:
    return await park_record(pipeline, message, raw, reason, key=key, field=field)


async def fan_out_one(
    pipeline: Pipeline, key: bytes | None, raw: bytes | None, message: Any
) -> list[Any]:
    """Produce what one event causes; return the broker-acknowledgement futures.

    Nothing an event contains stops the agent: an event that fails its checks,
    cannot be rendered, or whose deliveries would not fit in a Kafka record is
    parked in ``events.invalid`` with the reason, before any of its deliveries
    is written (an event is fanned out whole or not at all).
    """
    names = pipeline.names
    try:
        event = pipeline.registry.decode(raw, max_bytes=pipeline.settings.max_payload_bytes)
    except InvalidEventError as exc:
        return [await _park_invalid(pipeline, key, raw, message, str(exc), exc.field)]
    operational = message.topic == names.ops
    if is_reserved(event.tenant_id):
        if not operational:
            # A raw producer's event under the platform's own name (streams.tenants).
            reason = f"envelope field `tenant_id`: `{event.tenant_id}`: {RESERVED_REASON}"
            return [await _park_invalid(pipeline, key, raw, message, reason, "tenant_id")]
        # The platform's own operational event (a replay across tenants): no tenant's.
        pipeline.stats["events"] += 1
        return []
    matched = pipeline.subscriptions.matching(
        event.tenant_id, event.type, operational=operational, include_disabled=True
    )
    enabled = {s.id for s in matched if s.enabled}
    records: list[tuple[str, str, bytes]] = []
    try:
        deliveries = deliveries_for(
            event,
            matched,
            body_key=pipeline.registry.body_key(event.type),
            published_at=float(message.timestamp or 0.0),
            now=time.time(),
            summary=pipeline.registry.summary(event.type),
        )
        for d in deliveries:
            if d.subscription_id in enabled:
                records.append((names.deliveries, d.subscription_id, d.to_bytes()))
            else:
                # Disabled: nothing is sent, nothing is lost; re-enabling can replay it.
                letter = DeadLetter(
                    delivery=d.to_dict(),
                    reason="subscription_disabled",
                    attempts=0,
                    dead_lettered_at=d.created_at,
                )
                records.append((names.dlq, d.subscription_id, letter.to_bytes()))
    except (TypeError, ValueError, RecursionError) as exc:  # orjson's limits, say
        reason = f"event could not be rendered for delivery ({type(exc).__name__}: {exc})"
        return [await _park_invalid(pipeline, key, raw, message, reason)]
    largest = max((len(value) for _t, _k, value in records), default=0)
    limit = pipeline.settings.max_record_bytes - RECORD_HEADROOM
    if largest > limit:
        reason = (
            f"a delivery of this event would be {largest} bytes, over the {limit}-byte record "
            "limit: its body grows when re-encoded (escaped strings, long number forms such "
            "as 9e15); send less data or a reference to it"
        )
        return [await _park_invalid(pipeline, key, raw, message, reason, "data")]
    pipeline.stats["events"] += 1
    futures = []
    for topic, sub_id, value in records:
        pipeline.stats["deliveries" if topic == names.deliveries else "parked"] += 1
        futures.append(await pipeline.send(topic, sub_id, value))
    return futures


def register_fanout(pipeline: Pipeline) -> None:
    app = pipeline.app
    # Domain events and operational events (endpoint.disabled, ...) fan out alike.
    events = app.topic(
        pipeline.names.events,
        pipeline.names.ops,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    crashing: set[asyncio.Future[None]] = set()

    def stop_worker(exc: BaseException) -> None:
        crashing.add(asyncio.ensure_future(app.crash(exc)))

    @app.agent(events, name="fanout", supervisor_strategy=mode.CrashingSupervisor)
    async def fanout(stream: Any) -> None:
        # Never join an event against a partial view of the subscriptions.
        await pipeline.ready()
        acks = OrderedAcks(max_pending=MAX_PENDING_EVENTS, on_fatal=stop_worker)
        metrics = pipeline.extras.get("metrics")
        async for event in stream.noack().events():
            if metrics is not None:
                metrics.observe_wait("fanout", event.message.timestamp)
            ticket = await acks.track(event)
            futures = await fan_out_one(pipeline, event.key, event.value, event.message)
            acks.finish_when(ticket, asyncio.gather(*futures))
