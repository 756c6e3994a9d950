"""At-least-once, proven by killing the worker: nothing lost, duplicates keep their webhook-id.

A run of thousands of deliveries is interrupted by SIGKILL twice; the worker
is restarted each time. A receiver-side ledger then must hold every
(event, subscription) pair with a valid signature, or, for pairs whose
endpoint kept failing, a dead letter. Retries (1 s, 2 s) are in the mix.
Run with each delivery consumer (``STREAMS_DELIVERY_CONSUMER``: the Faust
agent and the librdkafka one), each with a worker and topics of its own.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from streams.config import Settings
from streams.publish import EventPublisher
from streams.records import DeadLetter
from tests.integration.harness import (
    Api,
    ReceiverProcess,
    WorkerProcess,
    module_worker_settings,
    read_topic,
)

pytestmark = pytest.mark.integration

EVENTS = 1500
CRAWL = {
    "organization_id": "o",
    "run_id": "r",
    "watcher_id": "w",
    "platform": "reddit",
    "status": "ok",
    "errored": False,
    "started_at": "2026-01-01T00:00:00Z",
}


@pytest.fixture(scope="module", params=["faust", "librdkafka"])
def delivery_consumer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def worker_settings(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, delivery_consumer: str
) -> Settings:
    return module_worker_settings(
        kafka_bootstrap,
        tmp_path_factory.mktemp(f"worker-state-{delivery_consumer}"),
        {"STREAMS_DELIVERY_CONSUMER": delivery_consumer},
    )


def test_sigkill_twice_mid_run_loses_no_delivery_and_duplicates_share_the_webhook_id(
    admin: Api,
    receiver: ReceiverProcess,
    worker: WorkerProcess,
    worker_settings: Settings,
    delivery_consumer: str,
) -> None:
    assert worker_settings.delivery_consumer == delivery_consumer
    subs = {}
    # Endpoint names of this run's own: the receiver (and its ledger) serves both runs.
    steady, second, flaky = (f"{delivery_consumer}-{n}" for n in ("steady", "second", "flaky"))
    for name, behaviour in (
        (steady, {}),
        (second, {}),
        (flaky, {"fail_rate": 0.3, "fail_status": 503}),
    ):
        sub = admin.create(tenant_id="crash", url=receiver.url(name), event_types=["crawl.*"])
        receiver.configure(name, secret=sub["signing_secret"], **behaviour)
        subs[name] = sub["id"]
    with EventPublisher(worker_settings) as pub:
        pub.publish_many(
            [
                pub.build("crawl.run.completed", "crash", CRAWL, event_id=f"k{i}")
                for i in range(EVENTS)
            ]
        )
    expected = {(f"k{i}", name) for i in range(EVENTS) for name in subs}

    def delivered() -> dict[tuple[str, str], list[dict[str, object]]]:
        got: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
        for entry in receiver.ledger():
            if entry["endpoint"] in subs and entry["event_id"]:
                got[(str(entry["event_id"]), str(entry["endpoint"]))].append(entry)
        return got

    for fraction in (0.25, 0.6):
        deadline = time.monotonic() + 120
        while len(delivered()) < fraction * len(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.kill()  # SIGKILL: no shutdown, no commit
        worker.start()

    by_sub = {v: k for k, v in subs.items()}
    deadline = time.monotonic() + 180
    missing: set[tuple[str, str]] = set()
    parked: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        got = delivered()
        ok = {pair for pair, entries in got.items() if any(e["status"] == 200 for e in entries)}
        missing = expected - ok
        if missing:
            # The flaky endpoint may exhaust its retries, or be auto-disabled (the
            # module's worker disables after 5 consecutive failures) and park the rest.
            letters = [
                DeadLetter.from_bytes(m.value())
                for m in read_topic(
                    worker_settings,
                    worker_settings.topic_prefix + "deliveries.dlq",
                    expected=10**9,
                    timeout_s=3,
                    where=lambda m: m.key() == subs[flaky].encode(),
                )
            ]
            parked = {
                (d.delivery["event_id"], by_sub.get(d.delivery["subscription_id"], ""))
                for d in letters
            }
            missing -= parked
        if not missing:
            break
        time.sleep(1)
    if missing:
        per_endpoint: dict[str, int] = defaultdict(int)
        for _event, name in missing:
            per_endpoint[name] += 1
        got = delivered()
        sample = sorted(missing)[:3]
        detail = {pair: got.get(pair) for pair in sample}
        raise AssertionError(f"{len(missing)} pairs lost {dict(per_endpoint)}: {detail}")

    got = delivered()
    duplicates = 0
    for entries in got.values():
        assert len({e["webhook_id"] for e in entries}) == 1
        assert all(e["valid"] is True for e in entries)
        duplicates += sum(1 for e in entries if e["status"] == 200) - 1
    print(
        f"pairs={len(expected)} delivered={len(expected) - len(parked & expected)} "
        f"dead_lettered={len(parked & expected)} duplicates_after_kills={duplicates}"
    )
