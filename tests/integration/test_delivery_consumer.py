"""The librdkafka delivery consumer (``STREAMS_DELIVERY_CONSUMER=librdkafka``) on a real broker.

End to end through the new consumer, and two workers sharing the ``deliveries``
partitions through its consumer group: a second worker joins mid-run, then the
first stops mid-run; every (event, subscription) pair arrives with a valid
signature and repeated deliveries keep their ``webhook-id``. The SIGKILL runs
are ``test_crash.py`` (parametrized over both consumers); the rest of the
delivery tests run with the setting by exporting it (the harness passes it on).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.kafka.offsets import OffsetReader
from streams.kafka.topics import create_topics
from streams.publish import EventPublisher
from tests.integration.harness import (
    ALERT,
    Api,
    ReceiverProcess,
    WorkerProcess,
    free_port,
    module_worker_settings,
)

pytestmark = pytest.mark.integration

SUBSCRIPTIONS = 6
PER_PHASE = 150


def publish(settings: Settings, tenant: str, prefix: str, n: int) -> set[str]:
    with EventPublisher(settings) as pub:
        events = [
            pub.build("alert.fired", tenant, ALERT, event_id=f"{prefix}-{i}") for i in range(n)
        ]
        pub.publish_many(events)
    return {e.id for e in events}


def assignments(log: Path) -> list[str]:
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "delivery consumer: assigned partitions" in line
    ]


def test_two_workers_share_deliveries_and_a_join_and_a_stop_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path, receiver: ReceiverProcess
) -> None:
    settings = module_worker_settings(
        kafka_bootstrap,
        tmp_path / "one",
        {"STREAMS_DELIVERY_CONSUMER": "librdkafka", "STREAMS_PARTITIONS": "4"},
    )
    create_topics(settings)
    one = WorkerProcess(settings, tmp_path / "one.log").start()
    other_state = tmp_path / "two"
    other_state.mkdir()
    # The same development keys: the second worker decrypts the signing secrets too.
    for name in ("dev-secrets.key", "dev-admin-token"):
        shutil.copy(settings.state_dir / name, other_state / name)
    two_settings = dataclasses.replace(settings, state_dir=other_state, api_port=free_port())
    two = WorkerProcess(two_settings, tmp_path / "two.log")
    try:
        token = (settings.state_dir / "dev-admin-token").read_text().strip()
        admin = Api(one.base_url, token)
        names = [f"rb-{i}" for i in range(SUBSCRIPTIONS)]
        for name in names:
            sub = admin.create(tenant_id="rb", url=receiver.url(name), event_types=["*"])
            receiver.configure(name, secret=sub["signing_secret"], profile=sub["signing"])
        expected: set[tuple[str, str]] = set()

        def delivered() -> dict[tuple[str, str], list[dict[str, Any]]]:
            got: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for entry in receiver.ledger():
                if entry["endpoint"] in names and entry["event_id"]:
                    got[(str(entry["event_id"]), str(entry["endpoint"]))].append(entry)
            return got

        def wait_for_all(timeout_s: float) -> set[tuple[str, str]]:
            deadline = time.monotonic() + timeout_s
            missing = set(expected)
            while time.monotonic() < deadline:
                missing = expected - set(delivered())
                if not missing:
                    break
                time.sleep(0.3)
            return missing

        # Phase 1: one worker owns every partition.
        expected |= {(e, n) for e in publish(settings, "rb", "one", PER_PHASE) for n in names}
        assert not wait_for_all(90)
        assert "[0, 1, 2, 3]" in assignments(tmp_path / "one.log")[-1]

        # Phase 2: a second worker joins while records are in flight.
        expected |= {(e, n) for e in publish(settings, "rb", "join", PER_PHASE) for n in names}
        two.start()
        expected |= {(e, n) for e in publish(settings, "rb", "both", PER_PHASE) for n in names}
        assert not wait_for_all(120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not assignments(tmp_path / "two.log"):
            time.sleep(0.3)
        shared = [assignments(tmp_path / "one.log")[-1], assignments(tmp_path / "two.log")[-1]]
        assert all("[0, 1, 2, 3]" not in line for line in shared), shared

        # Phase 3: the first worker stops while records are in flight; the second takes all.
        expected |= {(e, n) for e in publish(settings, "rb", "stop", PER_PHASE) for n in names}
        one.stop()
        expected |= {(e, n) for e in publish(settings, "rb", "after", PER_PHASE) for n in names}
        missing = wait_for_all(120)
        assert not missing, f"{len(missing)} pairs lost, e.g. {sorted(missing)[:3]}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "[0, 1, 2, 3]" in assignments(tmp_path / "two.log")[-1]:
                break
            time.sleep(0.3)
        assert "[0, 1, 2, 3]" in assignments(tmp_path / "two.log")[-1]

        got = delivered()
        for entries in got.values():
            assert len({e["webhook_id"] for e in entries}) == 1
            assert all(e["valid"] is True for e in entries)
        # The group committed the deliveries topic to its end (lag 0 once settled).
        deadline = time.monotonic() + 20
        lag = -1
        reader = OffsetReader(settings)
        try:
            while time.monotonic() < deadline:
                rows = reader.read(
                    [settings.topic_prefix + "deliveries"], [settings.app_id + "-deliver"]
                )
                lag = sum(p.lag for p in rows)
                if lag == 0:
                    break
                time.sleep(1)
        finally:
            reader.close()
        assert lag == 0
        text = (tmp_path / "one.log").read_text(errors="replace")
        assert "Traceback" not in text
        assert "Traceback" not in (tmp_path / "two.log").read_text(errors="replace")
    finally:
        two.stop()
        one.stop()
