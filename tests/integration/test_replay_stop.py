"""Replays on a real broker: per-letter progress, stop where asked, resume, the summary topic.

No worker runs here: the replayed deliveries stay on the test's own
``deliveries`` topic, where they can be counted (a resume must not send one
twice). The worker's side (shutdown, cancel through the API) is in
test_replay_shutdown.py and test_replay.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.deadletter.replay import (
    DlqFilter,
    ReplaySummary,
    find,
    load_summary,
    replay,
)
from streams.deadletter.scan import Stop, Stopped
from streams.kafka.output import producer_config
from streams.kafka.topics import TopicNames, create_topics
from streams.records import DeadLetter, Delivery
from tests.integration.harness import read_topic

pytestmark = pytest.mark.integration


def park(settings: Settings, count: int, sub_id: str = "sub_1") -> None:
    """``count`` dead letters of ``sub_id`` on the DLQ, written raw, partitioned like the
    worker writes them (murmur2 of the subscription id)."""
    names = TopicNames(settings.topic_prefix)
    producer = Producer(producer_config(settings))
    for n in range(count):
        delivery = Delivery(
            delivery_id=f"msg_{sub_id}_{n}",
            event_id=f"evt_{n}",
            event_type="alert.fired",
            tenant_id="acme",
            subscription_id=sub_id,
            body="{}",
            attempt=3,
        )
        letter = DeadLetter(
            delivery=delivery.to_dict(),
            reason="exhausted",
            attempts=3,
            dead_lettered_at=time.time(),
        )
        producer.produce(names.dlq, key=sub_id.encode(), value=letter.to_bytes())
    assert producer.flush(10) == 0


def replayed_records(settings: Settings, replay_id: str, expected: int) -> Counter[str]:
    """How many times each delivery id was written to ``deliveries`` by ``replay_id``."""
    names = TopicNames(settings.topic_prefix)
    found = read_topic(settings, names.deliveries, expected=expected, settle_s=1.0, timeout_s=15)
    ids = [Delivery.from_bytes(m.value()) for m in found]
    return Counter(d.delivery_id for d in ids if d.replay_id == replay_id)


def test_progress_moves_with_every_letter_towards_the_counted_total(settings: Settings) -> None:
    create_topics(settings)
    park(settings, 7)
    flt = DlqFilter(subscription_id="sub_1")
    counted = replay(settings, flt, dry_run=True)
    assert (counted.total, counted.to_send) == (7, 7)
    calls: list[tuple[int, int]] = []
    done = replay(settings, flt, counted=counted, progress=lambda d, t: calls.append((d, t)))
    # Was one call per batch of up to 1,000 records read: a bar at 0/1, then 7/7.
    assert calls == [(n, 7) for n in range(1, 8)]
    assert (done.status, done.replayed, done.total, done.to_send) == ("finished", 7, 7, 7)
    stored = load_summary(settings, done.replay_id)
    assert stored is not None
    assert (stored.status, stored.replayed, stored.position) == ("finished", 7, done.position)


def test_a_stopped_replay_says_where_and_a_resume_sends_only_the_rest(settings: Settings) -> None:
    create_topics(settings)
    park(settings, 12)
    flt = DlqFilter(subscription_id="sub_1")
    stop = Stop()
    positions: list[str] = []

    def progress(done: int, total: int) -> None:
        if done == 3:
            stop.set("cancelled")  # as DELETE /v1/dlq/replays/{id} does, from another thread

    counted = replay(settings, flt, dry_run=True, force=True)
    first = replay(settings, flt, force=True, counted=counted, progress=progress, stop=stop)
    positions.extend(f"{found.partition}:{found.offset}" for found, _ in find(settings, flt))
    assert (first.status, first.replayed) == ("cancelled", 3)
    assert first.stopped_at == positions[2]
    assert first.message().startswith(f"cancelled at {positions[2]} (partition:offset), 3 of 12")
    stored = load_summary(settings, first.replay_id)
    assert stored is not None
    assert (stored.status, stored.stopped_at, stored.replayed) == ("cancelled", positions[2], 3)

    # Resumed from what Kafka holds (as another process would): with force, yet no letter twice.
    again = replay(
        settings,
        stored.filter(),
        dry_run=True,
        force=True,
        replay_id=stored.replay_id,
        resume=True,
    )
    assert (again.replayed, again.to_send) == (3, 12)  # 3 sent before, of 12
    done = replay(settings, stored.filter(), force=True, summary=stored, resume=True, counted=again)
    assert (done.status, done.replayed, done.resumes) == ("finished", 12, 0)
    sent = replayed_records(settings, first.replay_id, expected=12)
    assert len(sent) == 12
    assert set(sent.values()) == {1}


def test_a_stop_ends_a_scan_within_a_fetch(settings: Settings) -> None:
    create_topics(settings)
    park(settings, 5)
    stop = Stop()
    stop.set("interrupted")
    started = time.monotonic()
    with pytest.raises(Stopped):
        list(find(settings, DlqFilter(), stop=stop))
    assert time.monotonic() - started < 5


def test_a_rate_limited_replay_stops_during_its_wait(settings: Settings) -> None:
    create_topics(settings)
    park(settings, 4)
    stop = Stop()
    result: list[ReplaySummary] = []
    worker = threading.Thread(
        target=lambda: result.append(replay(settings, DlqFilter(), rate=0.01, stop=stop))
    )
    worker.start()
    time.sleep(2.0)  # the first letter goes at once; the second would wait 100 s
    started = time.monotonic()
    stop.set("interrupted")
    worker.join(15)
    assert not worker.is_alive()
    assert time.monotonic() - started < 2.0
    (summary,) = result
    assert (summary.status, summary.replayed) == ("interrupted", 1)
