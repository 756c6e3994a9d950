"""An ordered hold ends when its subscription changes, and what it kept is acked.

A hold keeps arrivals un-acked until its cycle ends (streams.delivery.ordering).
The cycle ends when followers leave the tier, which the engine only noticed for
an enabled, ordered subscription: disabling it, or making it unordered, left
the kept arrivals pending forever and stopped every later ack of the partition.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from streams.delivery.engine import DeliveryEngine, SendResult
from streams.kafka.commits import OrderedAcks, Ticket
from tests.unit.test_breaker import SUB, Clock, Event, FakePipeline, Message, Sender, delivery

ORDERED = dataclasses.replace(SUB, ordering="ordered")


@pytest.mark.parametrize(
    "change",
    [
        {"state": "disabled"},
        {"ordering": "unordered", "version": 2},
    ],
)
async def test_a_changed_subscription_releases_its_hold_and_every_record_is_acked(
    change: dict[str, object],
) -> None:
    p = FakePipeline(subscriptions={"sub_1": ORDERED})
    sender = Sender()
    sender.results = [SendResult(status=503)] + [SendResult(status=200)] * 300
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    failed: list[BaseException] = []
    acks = OrderedAcks(max_pending=1000, on_fatal=failed.append)
    tickets: list[Ticket] = []

    async def handle(raw: bytes) -> None:
        message = Message(offset=len(tickets))
        ticket = await acks.track(Event(message))
        tickets.append(ticket)
        await eng.handle(raw, message, ticket, acks)
        for _ in range(20):
            await asyncio.sleep(0)

    await handle(delivery(0))  # the head fails: the subscription is held
    await handle(delivery(1))  # a follower, queued in the tier
    await handle(delivery(2))  # arrives mid-cycle: kept, not acked
    hold = eng.holds.get("sub_1")
    assert hold is not None
    assert len(hold.waiting) == 1
    assert not tickets[2].done

    p.subscriptions["sub_1"] = dataclasses.replace(ORDERED, **change)  # type: ignore[arg-type]
    await handle(delivery(0, attempt=2))  # the head's retry comes out of the tier
    await handle(delivery(1, held_by="held"))  # and the follower
    for n in range(3, 20):
        await handle(delivery(n))

    assert failed == []
    assert eng.holds.get("sub_1") is None
    assert all(t.done for t in tickets)
    # The kept arrival went to the end of the queue, not away: it is in the tier.
    requeued = [
        orjson.loads(v or b"")["delivery_id"]
        for t, v in p.sent
        if t.startswith("p.deliveries.retry.") and orjson.loads(v or b"").get("held_by")
    ]
    assert "msg_2" in requeued
