"""Metrics: bounded labels, what one attempt records, what a scrape reads."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from streams.config import Settings
from streams.kafka.offsets import PartitionOffsets
from streams.log.indexer import IndexerStats
from streams.ops.metrics import Metrics, OffsetSampler, attempt_bucket
from streams.records import Attempt, Delivery

SETTINGS = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p.", "STREAMS_RETRY_SCHEDULE": "5s,5m"})
#: Every label a metric may carry: none names an event, delivery, subscription, tenant or URL.
BOUNDED_LABELS = {
    "generation",
    "reader",
    "outcome",
    "status_class",
    "tier",
    "attempt",
    "reason",
    "state",
    "topic",
    "partition",
    "le",
}


def delivery(**changes: Any) -> Delivery:
    base = Delivery(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="t",
        subscription_id="sub_1",
        body="{}",
        published_at=time.time() - 2.0,
    )
    return Delivery.from_dict({**base.to_dict(), **changes})


def attempt(
    outcome: str, status: int | None, *, n: int = 1, source: str = "p.deliveries", ms: float = 20.0
) -> Attempt:
    return Attempt(
        delivery_id="msg_1",
        event_id="evt_1",
        event_type="alert.fired",
        tenant_id="t",
        subscription_id="sub_1",
        attempt=n,
        at=time.time(),
        duration_ms=ms,
        outcome=outcome,
        status=status,
        source_topic=source,
    )


@pytest.mark.parametrize(
    ("n", "label"),
    [(0, "1"), (1, "1"), (2, "2"), (3, "3"), (4, "4-5"), (5, "4-5"), (6, "6+"), (99, "6+")],
)
def test_attempt_numbers_fall_into_five_buckets(n: int, label: str) -> None:
    assert attempt_bucket(n) == label


def test_one_attempt_records_outcome_tier_duration_and_latency() -> None:
    m = Metrics(SETTINGS)
    m.observe(delivery(), attempt("delivered", 200, ms=20.0))
    m.observe(delivery(), attempt("retry", 503, n=2, source="p.deliveries.retry.5s", ms=120.0))
    m.observe(delivery(), attempt("give_up", None, n=7, source="elsewhere"))
    get = m.registry.get_sample_value
    assert get("streams_deliveries_total", {"outcome": "delivered", "status_class": "2xx"}) == 1
    assert get("streams_deliveries_total", {"outcome": "retry", "status_class": "5xx"}) == 1
    assert get("streams_deliveries_total", {"outcome": "give_up", "status_class": "error"}) == 1
    assert get("streams_attempts_total", {"tier": "deliveries", "attempt": "1"}) == 1
    assert get("streams_attempts_total", {"tier": "5s", "attempt": "2"}) == 1
    assert get("streams_attempts_total", {"tier": "other", "attempt": "6+"}) == 1
    assert get("streams_http_request_duration_seconds_sum", {"status_class": "5xx"}) == 0.12
    assert (
        get("streams_http_request_duration_seconds_bucket", {"status_class": "2xx", "le": "0.025"})
        == 1
    )
    # Only the delivered attempt has a publish-to-delivery latency: about 2 s.
    assert get("streams_publish_to_delivery_seconds_count") == 1
    assert 1.5 < (get("streams_publish_to_delivery_seconds_sum") or 0) < 30
    assert get("streams_publish_to_delivery_seconds_bucket", {"le": "1.0"}) == 0


def test_a_delivery_without_a_publish_time_has_no_latency() -> None:
    m = Metrics(SETTINGS)
    m.observe(delivery(published_at=0.0), attempt("delivered", 200))
    assert m.registry.get_sample_value("streams_publish_to_delivery_seconds_count") == 0


def test_gc_pauses_are_exported_by_generation() -> None:
    m = Metrics(SETTINGS)
    m.observe_gc(0, 0.0004)
    m.observe_gc(2, 0.150)
    m.observe_gc(7, 1.0)  # not a CPython generation: ignored
    get = m.registry.get_sample_value
    assert get("streams_gc_pause_seconds_count", {"generation": "0"}) == 1
    assert get("streams_gc_pause_seconds_bucket", {"generation": "0", "le": "0.0005"}) == 1
    assert get("streams_gc_pause_seconds_count", {"generation": "1"}) == 0
    assert get("streams_gc_pause_seconds_bucket", {"generation": "2", "le": "0.1"}) == 0
    assert get("streams_gc_pause_seconds_bucket", {"generation": "2", "le": "0.25"}) == 1
    assert get("streams_gc_pause_seconds_sum", {"generation": "2"}) == 0.150


def test_stage_waits_are_per_stage_from_the_record_timestamp() -> None:
    m = Metrics(SETTINGS)
    now = time.time()
    m.observe_wait("deliver", now - 0.03)
    m.observe_wait("deliver", now - 2.0)
    m.observe_wait("fanout", now + 5)  # a clock ahead of ours counts as no wait
    get = m.registry.get_sample_value
    assert get("streams_stage_wait_seconds_count", {"stage": "deliver"}) == 2
    assert get("streams_stage_wait_seconds_bucket", {"stage": "deliver", "le": "0.025"}) == 0
    assert get("streams_stage_wait_seconds_bucket", {"stage": "deliver", "le": "0.05"}) == 1
    assert 2.0 < (get("streams_stage_wait_seconds_sum", {"stage": "deliver"}) or 0) < 10
    assert get("streams_stage_wait_seconds_count", {"stage": "fanout"}) == 1
    assert get("streams_stage_wait_seconds_sum", {"stage": "fanout"}) == 0


class FakeReader:
    def __init__(self, offsets: list[PartitionOffsets] | Exception) -> None:
        self.offsets = offsets
        self.calls: list[tuple[list[str], tuple[str, ...]]] = []

    def read(self, topics: list[str], groups: tuple[str, ...]) -> list[PartitionOffsets]:
        self.calls.append((list(topics), tuple(groups)))
        if isinstance(self.offsets, Exception):
            raise self.offsets
        return self.offsets


def scraped(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in m.registry.collect()
        for s in family.samples
    }


def test_a_scrape_reads_the_pipelines_counters_states_in_flight_and_offsets() -> None:
    m = Metrics(SETTINGS)
    m.pipeline = SimpleNamespace(  # type: ignore[assignment]
        stats=Counter(
            {
                "events": 10,
                "deliveries": 25,
                "parked": 2,
                "invalid": 1,
                "invalid.deliveries": 6,
                "deferred": 4,
                "auto_disabled": 1,
                "breaker.opened": 2,
                "breaker.skipped": 9,
                "dlq.exhausted": 3,
                "dlq.gone": 1,
                "attempts.delivered": 20,
            }
        ),
        subscriptions=SimpleNamespace(counts_by_state=lambda: {"enabled": 5, "disabled": 2}),
        readers=[
            SimpleNamespace(name="subscriptions", skipped=2),
            SimpleNamespace(name="tokens", skipped=0),
        ],
        # A log node: its indexer reads the attempts topic outside ``readers``.
        extras={
            "delivery_log": SimpleNamespace(indexer=SimpleNamespace(stats=IndexerStats(skipped=5)))
        },
    )
    m.engine = SimpleNamespace(  # type: ignore[assignment]
        dispatcher=SimpleNamespace(in_flight=3),
        breakers={
            "sub_open": SimpleNamespace(closed=False),
            "sub_counting": SimpleNamespace(closed=True),
        },
    )
    sampler = OffsetSampler(SETTINGS)
    reader = FakeReader(
        [
            PartitionOffsets("p.events", 0, 0, 100, 90),
            PartitionOffsets("p.events", 1, 0, 50, None),
            PartitionOffsets("p.deliveries.retry.5s", 0, 0, 30, 26),
            PartitionOffsets("p.deliveries.retry.5s", 1, 0, 30, 29),
            PartitionOffsets("p.deliveries.dlq", 0, 3, 10, None),
            PartitionOffsets("p.deliveries.dlq", 1, 0, 4, None),
        ]
    )
    sampler.sample_once(reader)
    assert reader.calls[0][1] == (
        SETTINGS.app_id,
        SETTINGS.app_id + "-retry-tiers",
        SETTINGS.app_id + "-deliver",
    )
    assert "p.deliveries.dlq" in reader.calls[0][0]
    m.sampler = sampler
    got = scraped(m)
    assert got[("streams_requests_in_flight", ())] == 3
    assert got[("streams_fanout_events_total", ())] == 10
    assert got[("streams_fanout_deliveries_total", ())] == 25
    assert got[("streams_fanout_parked_total", ())] == 2
    assert got[("streams_invalid_events_total", ())] == 1
    assert got[("streams_invalid_deliveries_total", ())] == 6
    assert got[("streams_skipped_state_records_total", (("reader", "subscriptions"),))] == 2
    assert got[("streams_skipped_state_records_total", (("reader", "tokens"),))] == 0
    assert got[("streams_skipped_state_records_total", (("reader", "attempts"),))] == 5
    assert got[("streams_deliveries_deferred_total", ())] == 4
    assert got[("streams_auto_disabled_total", ())] == 1
    assert got[("streams_breaker_opened_total", ())] == 2
    assert got[("streams_breaker_skipped_total", ())] == 9
    assert got[("streams_breakers_open", ())] == 1
    assert got[("streams_dead_letters_total", (("reason", "exhausted"),))] == 3
    assert got[("streams_dead_letters_total", (("reason", "gone"),))] == 1
    assert got[("streams_subscriptions", (("state", "disabled"),))] == 2
    assert got[("streams_consumer_lag", (("partition", "0"), ("topic", "p.events")))] == 10
    assert got[("streams_consumer_lag", (("partition", "1"), ("topic", "p.events")))] == 50
    assert got[("streams_retry_tier_depth", (("tier", "5s"),))] == 5
    assert got[("streams_dlq_depth", ())] == 11  # 7 + 4 messages; no group reads the DLQ
    assert got[("streams_offsets_sample_errors_total", ())] == 0
    assert 0 <= got[("streams_offsets_sample_age_seconds", ())] < 5


def test_a_failed_sample_keeps_the_last_one_and_counts_the_error() -> None:
    sampler = OffsetSampler(SETTINGS)
    sampler.sample_once(FakeReader([PartitionOffsets("p.events", 0, 0, 5, 5)]))
    sampler.sample_once(FakeReader(RuntimeError("broker away")))
    assert sampler.errors == 1
    assert sampler.latest == [PartitionOffsets("p.events", 0, 0, 5, 5)]


def test_the_sampler_thread_stops_within_its_interval() -> None:
    reader = FakeReader([])
    sampler = OffsetSampler(SETTINGS, interval_s=0.05, reader_factory=lambda s, timeout_s: reader)
    sampler.start()
    deadline = time.monotonic() + 5
    while len(reader.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 1
    assert len(reader.calls) >= 2


def test_before_anything_is_recorded_a_scrape_still_describes_every_family() -> None:
    names = Metrics(SETTINGS).sample_names()
    for name in (
        "streams_deliveries_total",
        "streams_attempts_total",
        "streams_http_request_duration_seconds_bucket",
        "streams_publish_to_delivery_seconds_bucket",
        "streams_stage_wait_seconds_bucket",
        "streams_gc_pause_seconds_bucket",
        "streams_requests_in_flight",
        "streams_fanout_events_total",
        "streams_fanout_deliveries_total",
        "streams_fanout_parked_total",
        "streams_invalid_events_total",
        "streams_invalid_deliveries_total",
        "streams_skipped_state_records_total",
        "streams_dead_letters_total",
        "streams_auto_disabled_total",
        "streams_breaker_opened_total",
        "streams_breakers_open",
        "streams_subscriptions",
        "streams_consumer_lag",
        "streams_retry_tier_depth",
        "streams_dlq_depth",
    ):
        assert name in names


def test_every_label_is_bounded() -> None:
    m = Metrics(SETTINGS)
    m.observe(delivery(), attempt("delivered", 200))
    for family in m.registry.collect():
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS, (family.name, sample.labels)


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from streams.ops.metrics import FastHistogram

    h = FastHistogram((0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0, 50.0):
        h.observe(value)
    assert h.buckets() == [("0.1", 2), ("1.0", 4), ("10.0", 5), ("+Inf", 6)]
    assert h.total == pytest.approx(54.65)


def test_registries_are_per_instance() -> None:
    a, b = Metrics(SETTINGS), Metrics(SETTINGS)
    a.observe(delivery(), attempt("delivered", 200))
    assert (
        b.registry.get_sample_value(
            "streams_deliveries_total", {"outcome": "delivered", "status_class": "2xx"}
        )
        is None
    )


@pytest.mark.parametrize(
    ("raw", "on"), [("on", True), ("OFF", False), ("false", False), ("1", True)]
)
def test_the_metrics_setting(raw: str, on: bool) -> None:
    assert Settings.from_env({"STREAMS_METRICS": raw}).metrics is on


def test_metrics_are_on_by_default_and_a_bad_value_names_the_variable() -> None:
    from streams.errors import ConfigError

    assert Settings.from_env({}).metrics is True
    with pytest.raises(ConfigError, match="STREAMS_METRICS"):
        Settings.from_env({"STREAMS_METRICS": "maybe"})


def fake_pipeline(settings: Settings) -> Any:
    from aiohttp import web

    services: list[Any] = []
    return SimpleNamespace(
        settings=settings,
        app=SimpleNamespace(
            web=SimpleNamespace(web_app=web.Application()), service=services.append
        ),
        extras={},
        stats=Counter({"events": 3}),
        subscriptions=SimpleNamespace(counts_by_state=lambda: {"enabled": 1, "disabled": 0}),
        readers=[],
        services=services,
    )


async def test_metrics_on_serve_the_registry_and_hook_into_the_engine() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from streams.ops.metrics import register_metrics

    pipeline = fake_pipeline(SETTINGS)
    engine = SimpleNamespace(metrics=None, dispatcher=SimpleNamespace(in_flight=0), breakers={})
    metrics = register_metrics(pipeline, engine)  # type: ignore[arg-type]
    assert metrics is not None
    assert engine.metrics is metrics
    assert len(pipeline.services) == 1  # the offsets sampler starts and stops with the app
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "streams_fanout_events_total 3.0" in await resp.text()


async def test_metrics_off_record_nothing_and_answer_404() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from streams.ops.metrics import register_metrics

    settings = Settings.from_env({"STREAMS_METRICS": "off"})
    pipeline = fake_pipeline(settings)
    engine = SimpleNamespace(metrics=None)
    assert register_metrics(pipeline, engine) is None  # type: ignore[arg-type]
    assert engine.metrics is None
    assert pipeline.services == []
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 404
        assert "STREAMS_METRICS" in (await resp.json())["error"]["message"]
