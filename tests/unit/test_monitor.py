"""`streams monitor`: the sample arithmetic and a renderer that fits 80x24."""

from __future__ import annotations

import io
from typing import Any

import pytest

from streams.config import Settings
from streams.errors import StreamsError
from streams.kafka.offsets import PartitionOffsets
from streams.monitor import Monitor, Snapshot, StageRow, api_view, human, render, run

#: The default schedule: nine retry tiers, the most stages a view shows.
SETTINGS = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p.", "STREAMS_APP_ID": "grp"})
LONG = "connection refused " * 20


class Reader:
    def __init__(self, samples: list[list[PartitionOffsets] | Exception]) -> None:
        self.samples = samples
        self.calls: list[tuple[list[str], tuple[str, ...]]] = []

    def read(self, topics: list[str], groups: tuple[str, ...]) -> list[PartitionOffsets]:
        self.calls.append((list(topics), tuple(groups)))
        sample = self.samples.pop(0)
        if isinstance(sample, Exception):
            raise sample
        return sample

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def offsets(events: int, committed: int, attempts: int, dlq: int) -> list[PartitionOffsets]:
    return [
        PartitionOffsets("p.events", 0, 0, events, committed),
        PartitionOffsets("p.deliveries", 0, 0, events * 2, events * 2),
        PartitionOffsets("p.deliveries.retry.5s", 0, 0, 7, 4),
        PartitionOffsets("p.attempts", 0, 0, attempts, None),
        PartitionOffsets("p.deliveries.dlq", 0, 0, dlq, None),
        PartitionOffsets("p.events.invalid", 0, 0, 1, None),
    ]


STATS = {
    "tenant_id": None,
    "windows": {"5m": {"attempts": 40, "success_rate": 0.95, "latency_ms": {"p50": 3, "p99": 80}}},
    "failing_window": "1h",
    "failing": [
        {
            "subscription_id": "sub_1",
            "tenant_id": "t",
            "url": "https://hooks.example.com/in",
            "state": "enabled",
            "attempts": 10,
            "failures": 4,
            "success_rate": 0.6,
            "consecutive_failures": 2,
            "last_error": {"at": 1.0, "status": 503, "error": "HTTP 503"},
        }
    ],
}


def test_two_samples_give_rates_lag_and_depths() -> None:
    clock = Clock()
    reader = Reader([offsets(100, 100, 300, 2), offsets(150, 120, 400, 5)])
    monitor = Monitor(SETTINGS, reader=reader, fetch_stats=lambda: STATS, clock=clock)
    first = monitor.sample()
    assert first.events_in_per_s is None  # one sample: no rate yet
    clock.t += 2.0
    snap = monitor.sample()
    assert reader.calls[0][1] == ("grp", "grp-retry-tiers", "grp-deliver")
    assert snap.events_in_per_s == 25.0
    assert snap.fanout_per_s == 50.0
    assert snap.deliveries_out_per_s == 50.0  # attempts: webhook requests made
    assert snap.dlq_depth == 5
    assert snap.dlq_per_s == 1.5
    assert snap.invalid_events == 1
    by_name = {s.name: s for s in snap.stages}
    assert by_name["events"].lag == 30
    assert by_name["retry 5s"].lag == 3
    assert by_name["ops"].lag is None  # not on the cluster: unknown, not zero
    assert len(snap.stages) == 3 + 9
    assert snap.api["reachable"] is True
    assert snap.api["success_rate_5m"] == 0.95
    assert snap.api["failing"][0]["last_error"] == "HTTP 503"


def test_without_kafka_or_api_the_snapshot_says_why() -> None:
    def unreachable() -> dict[str, Any]:
        raise StreamsError("no API answered at http://127.0.0.1:8080")

    monitor = Monitor(SETTINGS, reader=Reader([RuntimeError("timed out")]), fetch_stats=unreachable)
    snap = monitor.sample()
    assert snap.kafka_error is not None
    assert "timed out" in snap.kafka_error
    assert snap.api == {
        "reachable": False,
        "error": "no API answered at http://127.0.0.1:8080",
        "failing": [],
    }
    lines = render(snap)
    assert any("API unavailable: no API answered" in line for line in lines)
    assert any("timed out" in line for line in lines)


def test_no_api_asks_nothing() -> None:
    def never() -> dict[str, Any]:
        raise AssertionError("asked")

    monitor = Monitor(SETTINGS, use_api=False, reader=Reader([[]]), fetch_stats=never)
    assert monitor.sample().api["reachable"] is False


def worst_case() -> Snapshot:
    snap = Snapshot(
        at=1_800_000_000.0,
        bootstrap="kafka-0.kafka-headless.streams.svc.cluster.local:9092," * 3,
        group="streams-production-eu-west-1-very-long-group",
        prefix="tenant-group-with-a-long-prefix.",
        kafka_error="Kafka at somewhere: " + LONG,
        events_in_per_s=123456.78,
        deliveries_out_per_s=9_876_543.2,
        fanout_per_s=1e12,
        dlq_depth=123_456_789,
        dlq_per_s=12345.6,
        invalid_events=10**10,
        stages=[
            StageRow(f"retry {d}" if i > 2 else d, f"t{i}", "retry", 10**i, 10**i, 10.0**i)
            for i, d in enumerate(
                [
                    "events",
                    "ops",
                    "deliveries",
                    "5s",
                    "5m",
                    "30m",
                    "2h",
                    "5h",
                    "10h",
                    "14h",
                    "20h",
                    "1d",
                ]
            )
        ],
        api=api_view(
            {
                "tenant_id": "t" * 60,
                "windows": {"5m": {"attempts": 10**9, "success_rate": 0.123456}},
                "failing_window": "1h",
                "failing": [
                    {
                        "subscription_id": f"sub_{i:032d}",
                        "url": "https://" + "very-long-host-name." * 5 + f"example.com/{i}",
                        "failures": 10**i,
                        "success_rate": 0.0,
                        "consecutive_failures": 10**i,
                        "last_error": {"error": LONG},
                    }
                    for i in range(10)
                ],
            }
        ),
    )
    return snap


@pytest.mark.parametrize("api_up", [True, False])
def test_the_view_fits_an_80_by_24_terminal_in_the_worst_case(api_up: bool) -> None:
    snap = worst_case()
    if not api_up:
        snap.api = {"reachable": False, "error": LONG, "failing": []}
    lines = render(snap, width=80, height=24)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    text = "\n".join(lines)
    for stage in ("events", "deliveries", "retry 5s", "retry 1d"):
        assert stage in text  # every stage is shown, the failing rows give way
    if api_up:
        assert "failing endpoints" in text


def test_a_normal_view_shows_the_numbers() -> None:
    clock = Clock()
    reader = Reader([offsets(100, 100, 300, 2), offsets(150, 120, 400, 5)])
    monitor = Monitor(SETTINGS, reader=reader, fetch_stats=lambda: STATS, clock=clock)
    monitor.sample()
    clock.t += 2.0
    lines = render(monitor.sample(), width=80, height=24)
    text = "\n".join(lines)
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert "events in/s      25.0" in text
    assert "95.0%" in text
    assert "hooks.example.com/in" in text
    assert "HTTP 503" in text


def test_a_larger_terminal_shows_more_failing_rows() -> None:
    snap = worst_case()
    snap.kafka_error = None
    small = render(snap, width=80, height=18)
    large = render(snap, width=120, height=40)
    assert len(small) == 18
    assert len(large) > len(small)
    assert all(len(line) <= 120 for line in large)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0"),
        (950, "950"),
        (9999, "9999"),
        (12345, "12.3k"),
        (4.5e6, "4.5M"),
        (2.5, "2.5"),
    ],
)
def test_numbers_are_short(n: float | None, text: str) -> None:
    assert human(n) == text


def test_once_json_prints_one_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson

    import streams.monitor as mod

    reader = Reader([offsets(100, 100, 300, 2), offsets(110, 110, 330, 2)])
    original = mod.Monitor

    def fake(settings: Settings, *, use_api: bool) -> Monitor:
        return original(settings, use_api=use_api, reader=reader, fetch_stats=lambda: STATS)

    monkeypatch.setattr(mod, "Monitor", fake)
    out = io.StringIO()
    status = run(SETTINGS, once=True, as_json=True, interval=0.2, count=0, use_api=True, out=out)
    assert status == 0
    doc = orjson.loads(out.getvalue())
    assert doc["dlq_depth"] == 2
    assert doc["events_in_per_s"] > 0
    assert doc["api"]["failing"][0]["subscription_id"] == "sub_1"


def test_the_loop_is_bounded_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.monitor as mod

    reader = Reader([offsets(1, 1, 1, 1) for _ in range(3)])
    original = mod.Monitor
    monkeypatch.setattr(
        mod,
        "Monitor",
        lambda settings, *, use_api: original(settings, use_api=False, reader=reader),
    )
    out = io.StringIO()
    run(SETTINGS, once=False, as_json=True, interval=0.2, count=3, use_api=False, out=out)
    assert len(out.getvalue().splitlines()) == 3
