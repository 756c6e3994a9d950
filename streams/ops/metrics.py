"""Prometheus metrics of one worker, served at ``/metrics`` on the API port.

Every worker process has its own :class:`~prometheus_client.CollectorRegistry`
(nothing global, so tests and several apps in one process do not collide).
Labels are bounded: outcomes, status classes, retry tiers, attempt-number
buckets, dead-letter reasons, subscription states, and topic/partition of the
pipeline's own topics. Never an event, delivery, subscription, tenant or URL.

Recorded on the hot path (one call per attempt from the delivery engine,
:meth:`Metrics.observe`, about 1.4 µs: plain dicts and :class:`FastHistogram`
on the event loop's thread, no locks; turned into metric families at scrape):

``streams_deliveries_total{outcome,status_class}``
    attempts by what they led to (``delivered``, ``retry``, ``give_up``) and
    status class (``2xx`` .. ``5xx``, ``error`` for no status, ``skipped``
    when no request went out because the endpoint's breaker was open).
``streams_attempts_total{tier,attempt}``
    attempts by the topic they came from (``deliveries`` or a retry tier such
    as ``5s``) and attempt number (``1``, ``2``, ``3``, ``4-5``, ``6+``).
``streams_http_request_duration_seconds{status_class}``
    duration of each webhook request (histogram).
``streams_publish_to_delivery_seconds``
    from the event's Kafka timestamp to its successful delivery (histogram;
    retries included, so its upper buckets reach a day and more).
``streams_gc_pause_seconds{generation}``
    each collection of Python's cyclic garbage collector, by generation
    (``0``-``2``): the event loop waits meanwhile (:mod:`streams.ops.gc_tuning`).

Read when Prometheus scrapes (no cost in between):

``streams_requests_in_flight``                   webhook requests in flight now
``streams_fanout_events_total``                  valid events the fan-out read (domain and ops)
``streams_fanout_deliveries_total``              deliveries the fan-out produced
``streams_fanout_parked_total``                  deliveries parked for disabled subscriptions
``streams_invalid_events_total``                 events parked on ``events.invalid``
``streams_invalid_deliveries_total``             delivery records parked on ``events.invalid``
``streams_skipped_state_records_total{reader}``  state/log records skipped as unusable
``streams_deliveries_deferred_total``            deliveries deferred (lane or tenant share full)
``streams_tenant_deferred_total``                of them, because their tenant's share was full
``streams_dead_letters_total{reason}``           dead letters written, by reason
``streams_auto_disabled_total``                  subscriptions disabled automatically
``streams_breaker_opened_total``                 endpoint circuit breakers opened
``streams_breaker_skipped_total``                attempts skipped by an open breaker (no request)
``streams_breakers_open``                        endpoints whose breaker is open now
``streams_subscriptions{state}``                 subscriptions by state (this worker's replica)

Sampled every ``SAMPLE_INTERVAL_S`` in a thread (:class:`OffsetSampler`, see
:mod:`streams.kafka.offsets` for the definitions), so the event loop never waits on
Kafka:

``streams_consumer_lag{topic,partition}``        the workers' lag on events, ops, deliveries, tiers
``streams_retry_tier_depth{tier}``               retries waiting in each tier (the tier's lag)
``streams_dlq_depth``                            messages in the dead-letter topic (high - low)
``streams_offsets_sample_age_seconds``           age of the last successful sample
``streams_offsets_sample_errors_total``          samples that failed (Kafka unreachable, ...)

Every worker samples the whole cluster's offsets, so with several workers aggregate the
sampled gauges with ``max``, not ``sum`` (the dashboard does).

``STREAMS_METRICS=off`` records nothing: the engine skips its one call, no
collector or sampler exists, and ``/metrics`` answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import mode
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from streams.config import Settings
from streams.delivery.outcome import status_class
from streams.kafka.offsets import OffsetReader, PartitionOffsets, consumer_groups, stages
from streams.kafka.topics import TopicNames, retry_tiers
from streams.ops.gc_tuning import PauseRecorder
from streams.retry.schedule import format_duration

if TYPE_CHECKING:
    from streams.delivery.engine import DeliveryEngine
    from streams.pipeline import Pipeline
    from streams.records import Attempt, Delivery

log = logging.getLogger(__name__)

#: Seconds between two samples of the consumer groups' offsets.
SAMPLE_INTERVAL_S = 5.0
ATTEMPT_BUCKETS = ("1", "2", "3", "4-5", "6+")
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
    172800.0,
)
#: ``pipeline.stats`` keys exported as plain counters: key -> (metric name, help).
STAT_COUNTERS = {
    "events": ("streams_fanout_events", "Valid events the fan-out read (domain and operational)."),
    "deliveries": ("streams_fanout_deliveries", "Deliveries the fan-out produced."),
    "parked": (
        "streams_fanout_parked",
        "Deliveries parked in the DLQ because their subscription is disabled.",
    ),
    "invalid": ("streams_invalid_events", "Events parked on events.invalid by the fan-out."),
    "invalid.deliveries": (
        "streams_invalid_deliveries",
        "Delivery records (deliveries, retry tiers) parked on events.invalid by the engine.",
    ),
    "deferred": (
        "streams_deliveries_deferred",
        "Deliveries deferred to the first retry tier without an attempt (endpoint lane full, "
        "or their tenant's share of waiting work full).",
    ),
    "deferred.tenant": (
        "streams_tenant_deferred",
        "Of the deferred deliveries, those deferred because their tenant already held its "
        "share of waiting work (STREAMS_TENANT_MAX_IN_FLIGHT).",
    ),
    "auto_disabled": ("streams_auto_disabled", "Subscriptions disabled automatically."),
    "breaker.opened": (
        "streams_breaker_opened",
        "Endpoint circuit breakers opened (after consecutive timeouts/connection failures).",
    ),
    "breaker.skipped": (
        "streams_breaker_skipped",
        "Attempts skipped, no request sent, because the endpoint's breaker was open.",
    ),
}


def attempt_bucket(n: int) -> str:
    """The bounded label of an attempt number: ``1``, ``2``, ``3``, ``4-5``, ``6+``."""
    if n <= 3:
        return str(max(n, 1))
    return "4-5" if n <= 5 else "6+"


def tier_labels(settings: Settings) -> dict[str, str]:
    """Source topic -> ``tier`` label: ``deliveries`` or the tier's delay (``5s``)."""
    names = TopicNames(settings.topic_prefix)
    out = {names.deliveries: "deliveries"}
    for tier in retry_tiers(settings):
        out[names.retry(tier)] = format_duration(tier)
    return out


class FastHistogram:
    """A histogram for one thread: a bisect and two additions per observation.

    prometheus_client's own metrics take a lock per update; the worker records
    from its event loop only, so plain numbers do, exported at scrape time.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return out


class Metrics:
    """The registry of one worker and the hot-path recorder of attempts.

    Everything :meth:`observe` touches is a plain dict or :class:`FastHistogram`
    updated on the event loop's thread; :class:`_ScrapeCollector` turns them
    into metric families when Prometheus scrapes (also on the loop).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.pipeline: Pipeline | None = None
        self.engine: DeliveryEngine | None = None
        self.sampler: OffsetSampler | None = None
        self.tiers = tier_labels(settings)
        self.deliveries: dict[tuple[str, str], int] = {}  # (outcome, status class)
        self.attempts: dict[tuple[str, str], int] = {}  # (tier, attempt bucket)
        self.durations: dict[str, FastHistogram] = {}  # status class
        self.latency = FastHistogram(LATENCY_BUCKETS)
        self.waits: dict[str, FastHistogram] = {}  # stage
        self.gc_pauses = tuple(FastHistogram(GC_BUCKETS) for _ in range(3))  # by generation
        self.gc_recorder = PauseRecorder(self.observe_gc)
        self.registry.register(_ScrapeCollector(self))

    # -- the hot path ------------------------------------------------------------

    def observe(self, delivery: Delivery, attempt: Attempt) -> None:
        """Record one attempt (called by the engine once per attempt)."""
        cls = status_class(attempt.status) if attempt.sent else "skipped"
        key = (attempt.outcome, cls)
        counts = self.deliveries
        counts[key] = counts.get(key, 0) + 1
        akey = (self.tiers.get(attempt.source_topic, "other"), attempt_bucket(attempt.attempt))
        counts = self.attempts
        counts[akey] = counts.get(akey, 0) + 1
        if not attempt.sent:
            return
        hist = self.durations.get(cls)
        if hist is None:
            hist = self.durations[cls] = FastHistogram(HTTP_BUCKETS)
        hist.observe(attempt.duration_ms / 1000.0)
        if attempt.outcome == "delivered" and delivery.published_at > 0:
            self.latency.observe(max(0.0, time.time() - delivery.published_at))

    def observe_wait(self, stage: str, record_timestamp_s: float) -> None:
        """A stage's agent took a record written at ``record_timestamp_s`` (its Kafka timestamp)."""
        hist = self.waits.get(stage)
        if hist is None:
            hist = self.waits[stage] = FastHistogram(LATENCY_BUCKETS)
        hist.observe(max(0.0, time.time() - record_timestamp_s))

    def observe_gc(self, generation: int, seconds: float) -> None:
        """One collection of ``generation`` took ``seconds`` (from :class:`PauseRecorder`)."""
        if 0 <= generation < len(self.gc_pauses):
            self.gc_pauses[generation].observe(seconds)

    # -- exposition ----------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def sample_names(self) -> set[str]:
        """Every sample name this registry can export (``_total``, ``_bucket``, ...)."""
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }
        names: set[str] = set()
        for family in self.registry.collect():
            for suffix in suffixes.get(family.type, ("",)):
                names.add(family.name + suffix)
        return names


class _ScrapeCollector:
    """Families computed when Prometheus scrapes, from state the worker keeps anyway."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return list(self._families(with_values=False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(with_values=True))

    def _families(self, *, with_values: bool) -> Iterator[Metric]:
        yield from self._attempt_families(with_values)
        p = self.m.pipeline if with_values else None
        engine = self.m.engine if with_values else None
        sampler = self.m.sampler if with_values else None

        in_flight = GaugeMetricFamily(
            "streams_requests_in_flight", "Webhook requests in flight on this worker."
        )
        if engine is not None:
            in_flight.add_metric([], engine.dispatcher.in_flight)
        yield in_flight
        breakers = GaugeMetricFamily(
            "streams_breakers_open", "Endpoints whose circuit breaker is open on this worker."
        )
        if engine is not None:
            breakers.add_metric([], sum(not b.closed for b in engine.breakers.values()))
        yield breakers

        stats = p.stats if p is not None else None
        for key, (name, help_text) in STAT_COUNTERS.items():
            family = CounterMetricFamily(name, help_text)
            if stats is not None:
                family.add_metric([], stats.get(key, 0))
            yield family
        letters = CounterMetricFamily(
            "streams_dead_letters", "Dead letters written, by reason.", labels=["reason"]
        )
        if stats is not None:
            for key, value in sorted(stats.items()):
                if key.startswith("dlq."):
                    letters.add_metric([key[4:]], value)
        yield letters

        skipped = CounterMetricFamily(
            "streams_skipped_state_records",
            "Records of a state topic or the delivery log that could not be applied and were "
            "skipped (they stay in the topic), by reader.",
            labels=["reader"],
        )
        if p is not None:
            for reader in p.readers:
                skipped.add_metric([reader.name], reader.skipped)
            # A log node's indexer reads the attempts topic in a thread of its own.
            delivery_log = p.extras.get("delivery_log")
            indexer = getattr(delivery_log, "indexer", None)
            if indexer is not None:
                skipped.add_metric(["attempts"], indexer.stats.skipped)
        yield skipped

        subs = GaugeMetricFamily(
            "streams_subscriptions",
            "Subscriptions by state (this worker's replica).",
            labels=["state"],
        )
        if p is not None:
            for state, count in sorted(p.subscriptions.counts_by_state().items()):
                subs.add_metric([state], count)
        yield subs

        yield from self._offset_families(sampler)

    def _attempt_families(self, with_values: bool) -> Iterator[Metric]:
        m = self.m
        deliveries = CounterMetricFamily(
            "streams_deliveries",
            "Attempts by what they led to (delivered, retry, give_up) and status class.",
            labels=["outcome", "status_class"],
        )
        attempts = CounterMetricFamily(
            "streams_attempts",
            "Attempts by source topic (deliveries or a retry tier) and attempt number bucket.",
            labels=["tier", "attempt"],
        )
        durations = HistogramMetricFamily(
            "streams_http_request_duration_seconds",
            "Duration of webhook requests.",
            labels=["status_class"],
        )
        latency = HistogramMetricFamily(
            "streams_publish_to_delivery_seconds",
            "From the event's Kafka timestamp to its successful delivery (retries included).",
        )
        waits = HistogramMetricFamily(
            "streams_stage_wait_seconds",
            "From a record's Kafka timestamp until the stage's agent takes it: the stage's "
            "consumer lag in time (fanout: events; deliver: first attempts).",
            labels=["stage"],
        )
        gc_pauses = HistogramMetricFamily(
            "streams_gc_pause_seconds",
            "Collections of Python's cyclic garbage collector by generation; the worker "
            "does nothing else meanwhile.",
            labels=["generation"],
        )
        if with_values:
            for (outcome, cls), value in sorted(m.deliveries.items()):
                deliveries.add_metric([outcome, cls], value)
            for (tier, bucket), value in sorted(m.attempts.items()):
                attempts.add_metric([tier, bucket], value)
            for cls, hist in sorted(m.durations.items()):
                durations.add_metric([cls], hist.buckets(), hist.total)
            latency.add_metric([], m.latency.buckets(), m.latency.total)
            for stage, hist in sorted(m.waits.items()):
                waits.add_metric([stage], hist.buckets(), hist.total)
            for generation, hist in enumerate(m.gc_pauses):
                gc_pauses.add_metric([str(generation)], hist.buckets(), hist.total)
        yield deliveries
        yield attempts
        yield durations
        yield latency
        yield waits
        yield gc_pauses

    def _offset_families(self, sampler: OffsetSampler | None) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "streams_consumer_lag",
            "Records the worker's groups have not consumed yet, per topic and partition.",
            labels=["topic", "partition"],
        )
        depth = GaugeMetricFamily(
            "streams_retry_tier_depth",
            "Retries waiting in each tier (the lag on the tier).",
            labels=["tier"],
        )
        dlq = GaugeMetricFamily(
            "streams_dlq_depth", "Messages in the dead-letter topic (high minus low watermark)."
        )
        age = GaugeMetricFamily(
            "streams_offsets_sample_age_seconds", "Age of the last successful offsets sample."
        )
        errors = CounterMetricFamily(
            "streams_offsets_sample_errors", "Offsets samples that failed."
        )
        if sampler is not None:
            errors.add_metric([], sampler.errors)
            latest, at = sampler.latest, sampler.sampled_at
            if latest is not None and at is not None:
                age.add_metric([], max(0.0, time.time() - at))
                tiers = self.m.tiers
                per_tier: dict[str, int] = {}
                dlq_messages = 0
                for po in latest:
                    if po.topic == sampler.dlq_topic:
                        dlq_messages += po.messages
                        continue
                    lag.add_metric([po.topic, str(po.partition)], po.lag)
                    tier = tiers.get(po.topic)
                    if tier is not None and tier != "deliveries":
                        per_tier[tier] = per_tier.get(tier, 0) + po.lag
                for tier, value in per_tier.items():
                    depth.add_metric([tier], value)
                dlq.add_metric([], dlq_messages)
        yield lag
        yield depth
        yield dlq
        yield age
        yield errors


class OffsetSampler:
    """Reads the consumer groups' offsets every ``interval_s`` in a daemon thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        reader_factory: Any = OffsetReader,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.reader_factory = reader_factory
        self.groups = consumer_groups(settings)
        self.dlq_topic = TopicNames(settings.topic_prefix).dlq
        self.topics = [s.topic for s in stages(settings)] + [self.dlq_topic]
        self.latest: list[PartitionOffsets] | None = None
        self.sampled_at: float | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self, reader: Any) -> None:
        try:
            self.latest = reader.read(self.topics, self.groups)
            self.sampled_at = time.time()
        except Exception as exc:  # Kafka away or slow: keep the last sample, count the miss
            self.errors += 1
            if self.errors == 1 or self.errors % 60 == 0:
                log.warning("offsets sample failed (%d so far): %s", self.errors, exc)

    def _run(self) -> None:
        reader = None
        while not self._stop.is_set():
            if reader is None:
                try:
                    reader = self.reader_factory(self.settings, timeout_s=min(self.interval_s, 5.0))
                except Exception as exc:
                    self.errors += 1
                    log.warning("offsets reader could not start: %s", exc)
            if reader is not None:
                self.sample_once(reader)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="streams-offsets", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


class _MetricsService(mode.Service):
    """Starts the offsets sampler and the GC pause recorder with the app, stops them with it."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    async def on_start(self) -> None:
        self.metrics.gc_recorder.install()
        if self.metrics.sampler is not None:
            self.metrics.sampler.start()

    async def on_stop(self) -> None:
        self.metrics.gc_recorder.remove()
        if self.metrics.sampler is not None:
            await asyncio.to_thread(self.metrics.sampler.stop)


def register_metrics(pipeline: Pipeline, engine: DeliveryEngine) -> Metrics | None:
    """Wire metrics into the worker (``/metrics``, the engine, the sampler); None when off."""
    web_app: web.Application = pipeline.app.web.web_app  # type: ignore[attr-defined]
    if not pipeline.settings.metrics:

        async def metrics_off(request: web.Request) -> web.Response:
            return web.json_response(
                {"error": {"code": "not_found", "message": "metrics are off (STREAMS_METRICS)"}},
                status=404,
            )

        web_app.router.add_get("/metrics", metrics_off)
        return None
    metrics = Metrics(pipeline.settings)
    metrics.pipeline = pipeline
    metrics.engine = engine
    metrics.sampler = OffsetSampler(pipeline.settings)
    engine.metrics = metrics
    pipeline.extras["metrics"] = metrics

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    web_app.router.add_get("/metrics", serve)
    pipeline.app.service(_MetricsService(metrics))  # type: ignore[arg-type]
    return metrics
