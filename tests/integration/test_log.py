"""The delivery-log store on the real broker: a log node killed while indexing resumes
without gaps or double rows, and a deleted store is rebuilt to the same answers.

Attempt records are produced straight to the run's own ``attempts`` topic (no
delivery needed: the log node indexes whatever the topic holds), with retries,
redeliveries and undecodable records among them.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.kafka.topics import TopicNames, create_topics
from streams.log.indexer import rebuild
from streams.log.store import Cursor, DeliveryQuery, LogReader, store_files
from streams.records import Attempt, delivery_id_for
from tests.integration.harness import Api, WorkerProcess, free_port

pytestmark = pytest.mark.integration

RECORDS = 120_000  # more than one batch of the indexer (at most 50,000 records)
SPACING_S = 0.5
#: The attempts span the last 15 hours: within the retention (nothing is pruned) and
#: within the day the minute buckets are kept, so every window has data at run time.
T0 = time.time() - 15 * 3600


def produce(settings: Settings, start: int, count: int) -> list[Attempt]:
    """``count`` attempts of deliveries ``start``..: one in four retried, one in ten
    redelivered with a later attempt; one undecodable record in every 5,000."""
    rnd = random.Random(start)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    topic = TopicNames(settings.topic_prefix).attempts
    made: list[Attempt] = []
    n = start
    while len(made) < count:
        tenant = f"t{n % 4}"
        sub = f"sub_{tenant}_{n % 7}"
        did = delivery_id_for(f"evt_{n}", sub)
        at = T0 + n * SPACING_S
        first = Attempt(
            delivery_id=did,
            event_id=f"evt_{n}",
            event_type=("order.created", "order.paid")[n % 2],
            tenant_id=tenant,
            subscription_id=sub,
            attempt=1,
            at=at,
            duration_ms=rnd.uniform(1, 200),
            outcome="delivered",
            status=200,
            response_snippet="ok",
            source_topic=TopicNames(settings.topic_prefix).deliveries,
            source_partition=0,
            source_offset=n,
        )
        history = [first]
        if n % 4 == 0:
            history = [
                dataclasses.replace(first, outcome="retry", status=503, error="HTTP 503"),
                dataclasses.replace(first, attempt=2, at=at + 1, outcome="give_up", status=404),
            ]
            if n % 10 == 0:
                history.append(dataclasses.replace(first, attempt=3, at=at + 50, replay_id="r"))
        for a in history:
            producer.produce(topic, a.to_bytes(), did.encode())
            made.append(a)
        if n % 5000 == 0:
            producer.produce(topic, b"\xffnot an attempt", did.encode())
        n += 1
        producer.poll(0)
    assert producer.flush(60) == 0
    return made


def answers(path: Path, now: float) -> dict[str, Any]:
    """What the log answers, for a comparison: pages of several filters, histories,
    statistics and figures."""
    reader = LogReader(path)
    try:
        pages: dict[str, list[str]] = {}
        for name, q in {
            "all": DeliveryQuery(limit=500),
            "tenant": DeliveryQuery(tenant_id="t1", limit=333),
            "failed": DeliveryQuery(tenant_id="t0", status="failed", limit=100),
            "404": DeliveryQuery(subscription_id="sub_t0_0", status="404", limit=50),
            "type": DeliveryQuery(tenant_id="t2", event_type="order.paid", limit=77),
        }.items():
            seen: list[str] = []
            cursor = None
            for _ in range(1000):
                page = reader.page(q, cursor)
                seen.extend(r["delivery_id"] for r in page.data)
                if page.next_cursor is None:
                    break
                cursor = Cursor.decode(page.next_cursor)
            pages[name] = seen
        sample = pages["all"][::997]
        return {
            "pages": pages,
            "histories": {d: reader.delivery(d) for d in sample},
            "windows": reader.windows("tenant", "t0", now),
            "failing": reader.failing(None, now, 10),
            "figures": [reader.figures(t) for t in (None, "t0", "t3")],
        }
    finally:
        reader.close()


def log_figures(api: Api) -> dict[str, Any]:
    try:
        resp = api.call("GET", "/v1/stats")
    except httpx.HTTPError:
        return {}
    return dict(resp.json().get("attempt_log") or {}) if resp.status_code == 200 else {}


def test_a_killed_log_node_resumes_without_gaps_or_duplicates_and_a_rebuild_answers_the_same(
    settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, api_port=free_port())
    create_topics(settings)
    made = produce(settings, 0, RECORDS)
    node = WorkerProcess(settings, tmp_path / "log-node.log", role="log").start()
    api = Api(node.base_url, (settings.state_dir / "dev-admin-token").read_text().strip())
    try:
        # Kill it in the middle of indexing: mid-batch, without a clean stop.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and log_figures(api).get("attempts", 0) < RECORDS // 4:
            time.sleep(0.05)
        partial = log_figures(api).get("attempts", 0)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        assert 0 < partial < RECORDS, f"killed after {partial} attempts: not mid-way"

        made += produce(settings, 100_000, 5_000)  # more arrive while it is down
        node = WorkerProcess(settings, tmp_path / "log-node.log", role="log").start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and log_figures(api).get("attempts", 0) < len(made):
            time.sleep(0.2)
        time.sleep(2)  # anything beyond would be a double row
        figures = log_figures(api)
        stats = api.call("GET", "/v1/stats").json()
        node.stop()
    finally:
        node.kill()

    by_delivery: dict[str, int] = {}
    for a in made:
        by_delivery[a.delivery_id] = by_delivery.get(a.delivery_id, 0) + 1
    assert figures["attempts"] == len(made)
    assert figures["deliveries"] == len(by_delivery)
    assert stats["log_node"]["skipped"] >= 1  # the undecodable records, after the restart
    reader = LogReader(settings.log_path)
    try:
        stored = reader._all("SELECT delivery_id, attempts FROM deliveries")
        rows = reader._all("SELECT count(*), count(DISTINCT pos) FROM attempts")[0]
        skipped = reader.skipped(limit=100)
    finally:
        reader.close()
    assert dict(stored) == by_delivery  # every delivery, each with all its attempts once
    assert rows == (len(made), len(made))
    assert len({(s["partition"], s["offset"]) for s in skipped}) == len(skipped) >= 6

    # The kill left no key filter saved, so the restarted node built its own; its clean
    # stop saved it, and the next start takes it back. Retries of deliveries stored
    # before still join them (a filter missing their keys would make second rows).
    opened = (tmp_path / "log-node.log").read_text().count("store open; its key filter")
    assert opened == 2
    assert "its key filter loaded" not in (tmp_path / "log-node.log").read_text()
    retried = [a for a in made if a.attempt == 1][:: RECORDS // 50]
    more = [dataclasses.replace(a, attempt=9, at=a.at + 3600) for a in retried]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    topic = TopicNames(settings.topic_prefix).attempts
    for a in more:
        producer.produce(topic, a.to_bytes(), a.delivery_id.encode())
    assert producer.flush(60) == 0
    made += more
    node = WorkerProcess(settings, tmp_path / "log-node.log", role="log").start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and log_figures(api).get("attempts", 0) < len(made):
            time.sleep(0.2)
        time.sleep(2)
        figures = log_figures(api)
        node.stop()
    finally:
        node.kill()
    assert (
        "its key filter loaded as the last log node saved it"
        in (tmp_path / "log-node.log").read_text()
    )
    assert figures["attempts"] == len(made)
    assert figures["deliveries"] == len(by_delivery)  # no second row for a retried one

    # Deleted, then rebuilt from the topic: the same answers.
    now = time.time()
    before = answers(settings.log_path, now)
    assert before["failing"]
    assert before["windows"]["1h"]["attempts"] > 0
    assert len(before["pages"]["all"]) == len(by_delivery)
    for f in store_files(settings.log_path):
        f.unlink(missing_ok=True)
    steps: list[tuple[int, int]] = []
    result = rebuild(
        settings,
        TopicNames(settings.topic_prefix).attempts,
        settings.log_path,
        progress=lambda done, total: steps.append((done, total)),
    )
    assert result.attempts == len(made)
    assert steps[-1][0] == steps[-1][1] > len(made)  # the undecodable records count too
    assert answers(settings.log_path, now) == before
