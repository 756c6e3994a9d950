"""The fan-out agent: each event joined with its tenant's subscriptions.

Reads ``events`` (keyed by tenant), validates every envelope against
``schemas/``, finds the tenant's enabled subscriptions whose event types match,
and produces one :class:`~streams.records.Delivery` per match to
``deliveries``, keyed by subscription id. A matching subscription that is
disabled gets no delivery; its delivery is parked in ``deliveries.dlq`` with
reason ``subscription_disabled``, so re-enabling can replay it. An invalid event (not JSON, failing
its schemas, unknown type, oversized) goes to ``events.invalid`` with the
reason and its raw bytes; the agent never stops on one.

The event's offset is acked only after every record it caused is
acknowledged by Kafka, in offset order (see :mod:`streams.kafka.commits`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import mode

from streams.errors import InvalidEventError
from streams.fanout.bodies import render_body
from streams.kafka.commits import OrderedAcks
from streams.records import (
    DeadLetter,
    Delivery,
    EventEnvelope,
    InvalidEvent,
    Subscription,
    delivery_id_for,
)

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
) -> list[Delivery]:
    """One delivery per subscription, each with the body bytes of its body format."""
    bodies: dict[str, str] = {}
    out: list[Delivery] = []
    for sub in subscriptions:
        body = bodies.get(sub.body_format)
        if body is None:
            body = render_body(event, sub.body_format, body_key).decode("utf-8")
            bodies[sub.body_format] = body
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
    pipeline: Pipeline, key: bytes | None, raw: bytes, message: Any, reason: str, field: str = ""
) -> Any:
    invalid = InvalidEvent.of(
        raw,
        reason,
        field=field,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
    log.warning(
        "invalid event at %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
    )
    pipeline.stats["invalid"] += 1
    return await pipeline.send(pipeline.names.events_invalid, key or b"", invalid.to_bytes())


async def fan_out_one(pipeline: Pipeline, key: bytes | None, raw: bytes, message: Any) -> list[Any]:
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
