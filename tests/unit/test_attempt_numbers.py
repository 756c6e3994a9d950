"""Redeliveries and replays number their attempts on, so a delivery's history reads in order.

A replayed or redelivered delivery starts a fresh run of the retry schedule
(``attempt`` 1 for the schedule) but its attempt records carry the number in the
whole history (``prior_attempts + attempt``).
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson

from streams.deadletter.replay import redelivery, replayed
from streams.delivery.transport import SendResult
from streams.records import DeadLetter, Delivery
from tests.unit.test_breaker import Event, Message, attempts, engine


def parked(**fields: object) -> Delivery:
    return Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id="sub_1",
        body="{}",
        **fields,  # type: ignore[arg-type]
    )


def test_a_replay_numbers_on_after_the_parked_run() -> None:
    again = replayed(parked(attempt=3, last_status=500, due_at=5.0), 3, "rpl_1")
    assert (again.attempt, again.prior_attempts, again.attempt_number) == (1, 3, 4)
    assert (again.replay_id, again.due_at, again.last_status) == ("rpl_1", 0.0, None)
    # A replay of a replay: after both runs (3, then 2 more).
    twice = replayed(dataclasses.replace(again, attempt=2), 2, "rpl_2")
    assert (twice.attempt, twice.attempt_number) == (1, 6)


def test_a_redelivery_numbers_on_after_the_history() -> None:
    again = redelivery(parked(attempt=2), attempts_before=7)
    assert (again.attempt, again.prior_attempts, again.attempt_number) == (1, 7, 8)
    assert again.replay_id is not None
    assert again.replay_id.startswith("rdl_")


def test_a_dead_letter_keeps_the_count_of_its_own_run() -> None:
    letter = DeadLetter(
        delivery=parked(attempt=2, prior_attempts=4).to_dict(),
        reason="exhausted",
        attempts=2,
        dead_lettered_at=1.0,
    )
    again = replayed(letter.parked(), letter.attempts, "rpl_3")
    assert again.attempt_number == 7


async def test_the_engine_records_the_number_in_the_history_and_retries_by_the_run() -> None:
    p, sender, _clock, eng, acks = engine()
    sender.results = [SendResult(status=503)]
    record = parked(attempt=1, prior_attempts=3, replay_id="rdl_1").to_bytes()
    message = Message(offset=0)
    ticket = await acks.track(Event(message))
    await eng.handle(record, message, ticket, acks)
    for _ in range(50):
        if ticket.done:
            break
        await asyncio.sleep(0)
    (made,) = attempts(p)
    assert (made.attempt, made.outcome, made.replay_id) == (4, "retry", "rdl_1")
    (retry,) = [orjson.loads(v or b"") for t, v in p.sent if t.startswith("p.deliveries.retry.")]
    # The schedule's second step (1s tier), as for any first failure; numbered 5 next.
    assert (retry["attempt"], retry["prior_attempts"]) == (2, 3)
    assert [t for t, _ in p.sent if t.startswith("p.deliveries.retry.")] == [
        "p.deliveries.retry.1s"
    ]
