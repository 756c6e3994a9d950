"""The scenarios: each drives a run and returns its numbers, targets and checks.

A scenario function gets a started :class:`~streams.tools.bench.load.Bench` (not
yet holding a broker or receivers) and returns an :class:`Outcome`. They
share :func:`run_load`: publish a plan of events, follow the ledgers and the
DLQ until every expected pair is resolved, then measure.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from streams.tools.bench import ceiling
from streams.tools.bench.config import BenchFailed, Params
from streams.tools.bench.load import (
    Bench,
    CpuMeter,
    Feeder,
    Stack,
    Sub,
    Watch,
    checks_ok,
    event_plan,
    memory_of,
    roles_of,
    tenant_plan,
)
from streams.tools.bench.stats import (
    cpu_per_delivery,
    per_second,
    rate,
    rounded,
    steady_rate,
    summary,
)


@dataclass
class Outcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)
    ceiling: dict[str, Any] | None = None
    cpu: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool = True

    def target(self, target: str, measured: str, met: bool | None) -> None:
        self.targets.append({"target": target, "measured": measured, "met": met})


def _n(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:,.1f}{unit}"


# -- shared pieces ------------------------------------------------------------------------


def setup(bench: Bench, *, private_broker: bool = False, receivers: int | None = None) -> None:
    bench.start_broker(private=private_broker or bench.params.private_broker)
    bench.start_receivers(receivers or bench.params.receivers)


def main_stack(bench: Bench, out: Outcome) -> Stack:
    """The usual start: broker, receivers and their ceiling, workers, subscriptions, warm-up."""
    p = bench.params
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "main"))
    warm_up(bench, stack)
    return stack


def measure_ceiling(bench: Bench) -> dict[str, Any] | None:
    if bench.params.ceiling_s <= 0 or bench.receivers is None:
        return None
    bench.say(f"measuring the receiver's ceiling for {bench.params.ceiling_s:g}s")
    result = ceiling.measure(
        bench.procs, bench.receivers, bench.secret, bench.dir, seconds=bench.params.ceiling_s
    )
    bench.say(f"receiver ceiling: {result.get('rps')} req/s ({result.get('tool')})")
    return result


@dataclass
class LoadRun:
    feeder: Feeder
    watch: Watch
    expected: list[tuple[str, str]]
    resolved: bool
    cpu: dict[str, Any]
    check: dict[str, Any]
    metrics: dict[str, Any]
    latencies: list[float]
    timeline: list[int]


def run_load(
    bench: Bench,
    stack: Stack,
    plan: list[tuple[str, str]],
    *,
    events_per_s: float | None = None,
    watch: Watch | None = None,
    tick: Callable[[], None] | None = None,
    settle_s: float | None = None,
    label: str = "",
) -> LoadRun:
    """Publish ``plan`` ((event id, tenant) pairs), wait until resolved, measure."""
    p = bench.params
    watch = watch or stack.watch()
    watch.only(e for e, _t in plan)
    expected_all = list(stack.expected(plan))
    meter = CpuMeter(roles_of(bench, stack))
    meter.begin()
    feeder = Feeder(stack.settings, plan, rate=events_per_s)
    span = len(plan) / events_per_s if events_per_s else 0.0
    feeder.start()
    resolved = watch.wait_resolved(
        len(expected_all),
        # Bounded: by the publishing time plus at least 50 deliveries/s, and by no
        # progress at all for the settle time once publishing is over.
        timeout_s=span + len(expected_all) / 50 + 600,
        stall_s=settle_s if settle_s is not None else p.settle_s,
        feeder=feeder,
        tick=tick,
        label=label,
    )
    feeder.stop()
    feeder.join(60)
    cpu = meter.end()
    if feeder.errors and not feeder.confirmed:
        raise BenchFailed(f"publishing failed: {feeder.errors[0]}")
    published = set(e for e, _t in feeder.confirmed)
    expected = [pair for pair in expected_all if pair[0] in published]
    check = watch.check(expected)
    check["resolved_in_time"] = resolved
    ledger = watch.ledger
    sent = feeder.sent_at
    latencies = [
        ledger.first_ok[pair] - sent[pair[0]]
        for pair in expected
        if pair in ledger.first_ok and pair[0] in sent
    ]
    ok_times = [ledger.first_ok[pair] for pair in expected if pair in ledger.first_ok]
    first_sent = min(sent.values()) if sent else None
    last_ok = max(ok_times) if ok_times else None
    after_publish = [t for t in ok_times if t > feeder.finished_at]
    metrics = {
        "events_published": len(published),
        "publish_s": rounded(feeder.finished_at - feeder.started_at),
        "publish_events_per_s": rounded(
            rate(len(published), feeder.started_at, feeder.finished_at)
        ),
        "publish_retried_batches": feeder.retried_batches,
        "pairs_expected": len(expected),
        "pairs_delivered": check["delivered_pairs"],
        "deliveries_per_s_end_to_end": rounded(rate(len(ok_times), first_sent, last_ok)),
        "deliveries_per_s_steady": rounded(steady_rate(ok_times)),
        "deliveries_per_s_after_publishing": rounded(
            rate(len(after_publish), feeder.finished_at, last_ok)
            if len(after_publish) > max(100, len(ok_times) // 10)
            else None
        ),
    }
    metrics.update(cpu_per_delivery(meter.used, len(ok_times)))
    timeline = per_second(ok_times, first_sent) if first_sent is not None else []
    return LoadRun(feeder, watch, expected, resolved, cpu, check, metrics, latencies, timeline)


def warm_up(bench: Bench, stack: Stack, per_tenant: int = 2, timeout_s: float = 180.0) -> None:
    """A few events per tenant, delivered before anything is measured (consumer group
    assignment, connections, caches). Their pairs are not part of any check."""
    tenants = sorted(stack.by_tenant)
    if not tenants:
        return
    plan = [
        (f"warm-{stack.name}-{i}", tenants[i % len(tenants)])
        for i in range(len(tenants) * per_tenant)
    ]
    watch = stack.watch()
    watch.only(e for e, _t in plan)
    feeder = Feeder(stack.settings, plan)
    feeder.start()
    try:
        done = watch.wait_resolved(
            len(list(stack.expected(plan))), timeout_s=timeout_s, feeder=feeder, label=" warm-up"
        )
    finally:
        feeder.stop()
        feeder.join(30)
        watch.close()
    if not done:
        bench.notes.append(f"[{stack.name}] the warm-up was not resolved within {timeout_s:g} s")


def finish_checks(out: Outcome, run: LoadRun) -> None:
    out.checks = run.check
    out.ok = out.ok and checks_ok(run.check)
    if run.feeder.errors:
        out.notes.append(
            f"publisher: {len(run.feeder.errors)} error(s), batches retried "
            f"{run.feeder.retried_batches}; first: {run.feeder.errors[0][:200]}"
        )


class Profiler:
    """py-spy on one worker while a load runs (``--profile``); top functions by samples."""

    def __init__(self, bench: Bench, pid: int | None) -> None:
        self.bench = bench
        self.pid = pid
        self.out = bench.dir / "profile.txt"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        import shutil

        spy = shutil.which("py-spy") or str(
            __import__("pathlib").Path(sys.executable).with_name("py-spy")
        )
        if self.pid is None or not __import__("os").path.exists(spy):
            raise BenchFailed(
                "--profile needs py-spy: `pip install py-spy` into the venv (not a dependency)"
            )
        self.proc = self.bench.procs.start(
            "py-spy",
            [spy, "record", "-p", str(self.pid), "-r", "50", "-f", "raw", "-o", str(self.out)],
            log=self.bench.dir / "py-spy.log",
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
            self.bench.procs.stop(self.proc)

    def top(self, n: int = 15) -> dict[str, Any]:
        return summarize_collapsed(self.out.read_text() if self.out.exists() else "", n)


def summarize_collapsed(text: str, n: int = 15) -> dict[str, Any]:
    """Top functions by self and by inclusive samples from py-spy's raw (collapsed) output."""
    import re

    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k
    if not total:
        return {"samples": 0}

    def top(d: dict[str, int]) -> list[list[Any]]:
        return [
            [f, round(100 * c / total, 1)] for f, c in sorted(d.items(), key=lambda x: -x[1])[:n]
        ]

    return {"samples": total, "self_pct": top(own), "inclusive_pct": top(incl)}


def _profile_tables(out: Outcome, prof: dict[str, Any]) -> None:
    out.extra["profile"] = prof
    if prof.get("samples"):
        out.tables.append(
            {
                "title": f"Worker 0 profile (py-spy, {prof['samples']:,} samples): top self time",
                "columns": ["function (file)", "% of samples"],
                "rows": prof["self_pct"],
            }
        )
        out.tables.append(
            {
                "title": "Worker 0 profile: top inclusive time",
                "columns": ["function (file)", "% of samples"],
                "rows": prof["inclusive_pct"],
            }
        )


def _with_profile(bench: Bench, stack: Stack, fn: Callable[[], LoadRun], out: Outcome) -> LoadRun:
    if not getattr(bench, "profile", False):
        return fn()
    prof = Profiler(bench, stack.workers[0].pid)
    with prof:
        run = fn()
    _profile_tables(out, prof.top())
    return run


# -- throughput, scale, fanout ---------------------------------------------------------------


#: Worker counters some scenarios report per run: sample name -> column title.
WORKER_COUNTERS = {
    "streams_deliveries_total": "attempts",
    "streams_breaker_skipped_total": "skipped by the breaker",
    "streams_deliveries_deferred_total": "deferred (lane or tenant full)",
    "streams_tenant_deferred_total": "of them, tenant full",
    "streams_dead_letters_total": "dead letters",
    "streams_fanout_events_total": "events read by the fan-out (with ops events)",
    "streams_http_request_duration_seconds_count": "HTTP requests",
}


def worker_counters(stack: Stack, label: str) -> list[Any]:
    """One table row: :data:`WORKER_COUNTERS` summed over the stack's running workers."""
    totals = stack.metric_totals(*WORKER_COUNTERS)
    return [label, *(int(totals[name]) for name in WORKER_COUNTERS)]


def counters_table(rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "title": "What the workers did (their /metrics, summed over workers, warm-up included)",
        "columns": ["run", *WORKER_COUNTERS.values()],
        "rows": rows,
    }


def throughput(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    stack = main_stack(bench, out)
    tenants = sorted(stack.by_tenant)
    plan = event_plan(p.events, tenants, "e")
    run = _with_profile(bench, stack, lambda: run_load(bench, stack, plan), out)
    out.tables.append(counters_table([worker_counters(stack, "main")]))
    out.metrics.update(run.metrics)
    out.metrics["latency_ms (publish to receipt, backlog included)"] = summary(
        run.latencies, scale=1000
    ).get("p50")
    out.cpu = run.cpu
    out.extra["timeline_per_s"] = run.timeline
    steady = run.metrics["deliveries_per_s_steady"]
    if bench.scenario.name == "throughput":
        out.target(
            ">= 3,000 deliveries/s sustained end to end",
            _n(steady, " deliveries/s"),
            steady is not None and steady >= 3000,
        )
    else:
        out.target("deliveries/s, as fast as it goes", _n(steady, " deliveries/s"), None)
    cpu_target(out, run.metrics, FULL_SPEED_CPU_TARGETS.get(p.fanout), f"fan-out {p.fanout}")
    if out.ceiling and out.ceiling.get("rps") and steady:
        out.metrics["receiver_ceiling_headroom_x"] = round(out.ceiling["rps"] / steady, 1)
    finish_checks(out, run)
    return out


#: Issue 22's targets of CPU per delivery (workers + broker, us) at full speed, by fan-out.
FULL_SPEED_CPU_TARGETS = {10: 340.0, 1: 1100.0}


def cpu_target(out: Outcome, metrics: dict[str, Any], limit: float | None, label: str) -> None:
    """The pipeline's CPU per delivery (workers + broker) as a target line, when it is known."""
    pipeline = metrics.get("cpu_us_per_delivery_pipeline")
    measured = (
        f"{_n(pipeline, ' us')} (workers {_n(metrics.get('cpu_us_per_delivery_workers'))}, "
        f"broker {_n(metrics.get('cpu_us_per_delivery_broker'))}"
        + (
            f" of which JIT compiling {_n(metrics['cpu_us_per_delivery_broker_jit'])}"
            if metrics.get("cpu_us_per_delivery_broker_jit") is not None
            else ""
        )
        + "; receivers apart: "
        f"{_n(metrics.get('cpu_us_per_delivery_receivers'))})"
        if pipeline is not None
        else "- (the broker's process is unknown: run with --private-broker)"
    )
    text = f"{label}: pipeline CPU per delivery" + (f" <= {limit:,.0f} us" if limit else "")
    out.target(text, measured, None if limit is None or pipeline is None else pipeline <= limit)


def scale(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    rows: list[list[Any]] = []
    base: float | None = None
    all_ok = True
    for count in p.worker_counts or (1, 2):
        stack = bench.stack(f"w{count}", workers=count)
        stack.start()
        stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, f"w{count}"))
        warm_up(bench, stack)
        plan = event_plan(p.events, sorted(stack.by_tenant), f"w{count}e")
        run = run_load(bench, stack, plan, label=f" {count} worker(s)")
        stack.stop()
        steady = run.metrics["deliveries_per_s_steady"]
        base = base or steady
        rows.append(
            [
                count,
                run.metrics["pairs_delivered"],
                run.metrics["deliveries_per_s_end_to_end"],
                steady,
                round(steady / base, 2) if steady and base else None,
                run.cpu.get("workers_cores"),
                run.cpu.get("broker_cores"),
                run.cpu.get("total_cores"),
                run.check["lost_pairs"],
            ]
        )
        out.metrics[f"deliveries_per_s_steady_{count}_workers"] = steady
        all_ok = all_ok and checks_ok(run.check)
        out.checks = run.check
    out.tables.append(
        {
            "title": "Deliveries/s by worker processes",
            "columns": [
                "workers",
                "pairs delivered",
                "end-to-end/s",
                "steady/s",
                "x of 1 worker",
                "worker cores",
                "broker cores",
                "all cores",
                "lost",
            ],
            "rows": rows,
        }
    )
    out.ok = all_ok
    if len(rows) >= 2 and rows[0][3] and rows[-1][3]:
        out.target(
            "2 workers deliver more than 1",
            f"{rows[-1][4]}x",
            rows[-1][3] > rows[0][3],
        )
    return out


def _watermark_sum(settings: Any, topic: str, consumer: Any) -> int:
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=10)
    total = 0
    for part in meta.topics[topic].partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        total += high
    return total


def fanout(bench: Bench) -> Outcome:
    from confluent_kafka import Consumer

    p = bench.params
    out = Outcome()
    stack = main_stack(bench, out)
    plan = event_plan(p.events, sorted(stack.by_tenant), "f")
    consumer = Consumer(
        {"bootstrap.servers": stack.settings.kafka_bootstrap, "group.id": f"bench-wm-{bench.id}"}
    )
    produced: list[tuple[float, int]] = []
    last_sample = [0.0]

    def tick() -> None:
        now = time.time()
        if now - last_sample[0] >= 1.0:
            last_sample[0] = now
            produced.append((now, _watermark_sum(stack.settings, stack.names.deliveries, consumer)))

    try:
        run = _with_profile(bench, stack, lambda: run_load(bench, stack, plan, tick=tick), out)
    finally:
        consumer.close()
    out.metrics.update(run.metrics)
    out.cpu = run.cpu
    fan_rate = _steady_from_counter(produced)
    out.metrics["fanout_deliveries_produced_per_s_steady"] = rounded(fan_rate)
    out.metrics["fanout_events_per_s_steady"] = rounded(fan_rate / p.fanout if fan_rate else None)
    out.metrics["events_per_s_end_to_end"] = rounded(
        (run.metrics["deliveries_per_s_end_to_end"] or 0) / p.fanout or None
    )
    finish_checks(out, run)
    steady = run.metrics["deliveries_per_s_steady"]
    out.target(
        f"{p.events:,} events x {p.fanout} subscriptions: deliveries/s",
        _n(steady, " deliveries/s"),
        None,
    )
    # -- the table: grow it to p.subscriptions, then restart ---------------------------
    extra = p.subscriptions - len(stack.subs)
    if extra > 0:
        per = 100
        plan_x = [(f"x{i // per:05d}", f"x.{i // per:05d}.s{i % per:03d}") for i in range(extra)]
        started = time.monotonic()
        stack.create_subscriptions(plan_x, progress_every=10_000)
        took = time.monotonic() - started
        out.metrics["subscriptions_in_table"] = len(stack.subs)
        out.metrics["subscription_creates_per_s (API, 24 at once)"] = round(extra / took, 1)
    time.sleep(3)
    rss_before = memory_of(stack.pids)
    out.metrics["worker_rss_mb_with_table"] = rss_before
    stack.stop()
    probe_tenant = sorted(stack.by_tenant)[0]
    watch = stack.watch()
    t0 = time.time()
    for w in stack.workers:
        w.start(wait=False)
    # Publish at once: the first delivery waits for the subscriptions to be read back.
    feeder = Feeder(stack.settings, [("probe-1", probe_tenant)])
    feeder.start()
    healthy_after: list[float | None] = [None] * len(stack.workers)
    first: float | None = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (first is None or None in healthy_after):
        watch.poll()
        for i, w in enumerate(stack.workers):
            if healthy_after[i] is None and w.healthy():
                healthy_after[i] = round(time.time() - t0, 2)
        got = [
            watch.ledger.first_ok.get(("probe-1", s.endpoint))
            for s in stack.by_tenant[probe_tenant]
        ]
        if first is None and any(g is not None for g in got):
            first = min(g for g in got if g is not None)
        time.sleep(0.1)
    feeder.join(30)
    watch.close()
    out.metrics["restart_to_first_delivery_s"] = round(first - t0, 2) if first else None
    out.metrics["restart_to_healthy_s"] = healthy_after
    time.sleep(2)
    out.metrics["worker_rss_mb_after_restart"] = memory_of(stack.pids)
    out.target(
        f"with {len(stack.subs):,} subscriptions: restart to first delivery",
        _n(out.metrics["restart_to_first_delivery_s"], " s"),
        None,
    )
    out.target(
        f"with {len(stack.subs):,} subscriptions: worker RSS",
        f"{', '.join(_n(x, ' MiB') for x in rss_before)}",
        None,
    )
    if first is None:
        out.ok = False
        out.notes.append("the probe event was not delivered after the restart within 300 s")
    return out


def _steady_from_counter(samples: list[tuple[float, int]]) -> float | None:
    """Steady growth rate of a counter sampled over time (10%-90% of its rise)."""
    if len(samples) < 3:
        return None
    start, end = samples[0][1], samples[-1][1]
    rise = end - start
    if rise <= 0:
        return None
    lo = next((s for s in samples if s[1] - start >= 0.1 * rise), None)
    hi = next((s for s in samples if s[1] - start >= 0.9 * rise), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


# -- latency and soak ------------------------------------------------------------------------


def latency(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "main"))
    tenants = sorted(stack.by_tenant)
    warm_up(bench, stack)
    rows: list[list[Any]] = []
    # Baseline: what the idle pipeline costs (no events), measured in the same run.
    idle = CpuMeter(roles_of(bench, stack))
    idle.begin()
    time.sleep(min(10.0, p.duration_s))
    idle_cpu = idle.end()
    rows.append(
        [
            "0 (idle)",
            None,
            0,
            None,
            None,
            None,
            None,
            idle_cpu.get("workers_cores"),
            idle_cpu.get("total_cores"),
            idle_cpu.get("others_cores"),
            0,
        ]
    )
    all_ok = True
    at_1000: dict[str, Any] | None = None
    for i, r in enumerate(p.rates):
        events = max(1, int(r * p.duration_s / p.fanout))
        plan = event_plan(events, tenants, f"r{i}")
        run = run_load(bench, stack, plan, events_per_s=r / p.fanout, label=f" {r:g}/s")
        lat = summary(run.latencies, scale=1000)
        achieved = run.metrics["deliveries_per_s_steady"]
        rows.append(
            [
                r,
                achieved,
                lat.get("count"),
                lat.get("p50"),
                lat.get("p90"),
                lat.get("p99"),
                lat.get("max"),
                run.cpu.get("workers_cores"),
                run.cpu.get("total_cores"),
                run.cpu.get("others_cores"),
                run.check["lost_pairs"],
            ]
        )
        out.extra[f"latency_ms_at_{r:g}"] = lat
        out.extra[f"cpu_at_{r:g}"] = run.cpu
        all_ok = all_ok and checks_ok(run.check)
        out.checks = run.check
        if r == 1000 or (at_1000 is None and r >= 1000):
            at_1000 = {"rate": r, **lat}
            out.cpu = run.cpu
    out.tables.append(
        {
            "title": f"Publish-to-receipt latency by offered rate ({p.duration_s:g} s each, "
            f"fan-out {p.fanout})",
            "columns": [
                "offered deliveries/s",
                "achieved/s",
                "deliveries",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "worker cores",
                "bench cores",
                "others' cores",
                "lost",
            ],
            "rows": rows,
        }
    )
    if at_1000 is not None:
        p99 = at_1000.get("p99")
        out.target(
            f"p99 <= 100 ms at {at_1000['rate']:g} deliveries/s",
            f"p99 {_n(p99, ' ms')} (p50 {_n(at_1000.get('p50'), ' ms')})",
            p99 is not None and p99 <= 100,
        )
    out.ok = all_ok
    out.notes.append(
        "Latency is the receiver's receive time minus the time the harness handed the event's "
        "batch to EventPublisher.publish_many (same clock), for the first successful attempt."
    )
    return out


#: Issue 22's targets of the paced rows: (deliveries/s, fan-out) -> (us per delivery,
#: p50 ms, p99 ms); None where the issue sets none.
PACED_TARGETS: dict[tuple[float, int], tuple[float, float | None, float]] = {
    (1000.0, 10): (400.0, 10.0, 25.0),
    (500.0, 1): (1100.0, None, 25.0),
}
#: Issue 22: an idle worker costs under 1% of a core.
IDLE_WORKER_TARGET_CORES = 0.01


def paced_plan(fanout: int, tenants: int) -> list[tuple[str, str]]:
    """(tenant, endpoint) of a paced row: fan-out 1 is one tenant with one endpoint (the
    Prospektr case); otherwise ``tenants`` tenants with ``fanout`` endpoints each."""
    count = 1 if fanout == 1 else tenants
    return [
        (f"f{fanout}t{t:03d}", f"f{fanout}.t{t:03d}.s{k:03d}")
        for t in range(count)
        for k in range(fanout)
    ]


def paced(bench: Bench) -> Outcome:
    """Idle cost, then each (rate, fan-out) row for ``duration_s``: latency and CPU by role."""
    p = bench.params
    out = Outcome()
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    tenants_of: dict[int, list[str]] = {}
    for fanout in sorted({f for _r, f in p.rows}):
        plan = paced_plan(fanout, p.tenants)
        stack.create_subscriptions(plan)
        tenants_of[fanout] = sorted({t for t, _e in plan})
    warm_up(bench, stack)
    for i, (r, fanout) in enumerate(p.rows if p.warm_s > 0 else ()):
        events = max(1, int(r * p.warm_s / fanout))
        plan = event_plan(events, tenants_of[fanout], f"w{i}")
        run_load(bench, stack, plan, events_per_s=r / fanout, label=f" warm {r:g}/s x {fanout}")
    rows: list[list[Any]] = []
    if p.idle_s > 0:
        bench.say(f"measuring the idle cost for {p.idle_s:g}s (no traffic)")
        idle = CpuMeter(roles_of(bench, stack))
        idle.begin()
        time.sleep(p.idle_s)
        idle_cpu = idle.end()
        # From the raw CPU seconds: the meter's cores are rounded to 0.01, the target's size.
        per_worker = idle.used.get("workers", 0.0) / idle_cpu["wall_s"] / max(1, len(stack.pids))
        broker_idle = idle.used.get("broker")
        broker_jit = idle.used.get("broker_jit")
        out.metrics["idle_pct_of_a_core_per_worker"] = round(per_worker * 100, 2)
        out.metrics["idle_cores_broker"] = (
            None if broker_idle is None else round(broker_idle / idle_cpu["wall_s"], 4)
        )
        out.extra["idle_cpu"] = idle_cpu
        out.target(
            f"idle worker < {IDLE_WORKER_TARGET_CORES:.0%} of a core ({p.idle_s:g} s, no traffic)",
            f"{per_worker * 100:.2f}% of a core per worker; broker "
            + (
                "unknown"
                if broker_idle is None
                else f"{broker_idle / idle_cpu['wall_s']:.3f} cores"
                + (
                    ""
                    if broker_jit is None
                    else f" (of which JIT compiling {broker_jit / idle_cpu['wall_s']:.3f})"
                )
            ),
            per_worker < IDLE_WORKER_TARGET_CORES,
        )
        rows.append(
            [
                "idle",
                "-",
                None,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                idle_cpu.get("workers_cores"),
                idle_cpu.get("broker_cores"),
                idle_cpu.get("machine_cores"),
                0,
            ]
        )
    all_ok = True
    for i, (r, fanout) in enumerate(p.rows):
        events = max(1, int(r * p.duration_s / fanout))
        plan = event_plan(events, tenants_of[fanout], f"p{i}")
        label = f"{r:g}/s x {fanout}"
        run = run_load(bench, stack, plan, events_per_s=r / fanout, label=f" {label}")
        lat = summary(run.latencies, scale=1000)
        m = run.metrics
        rows.append(
            [
                f"{r:,.0f}/s",
                fanout,
                m["deliveries_per_s_steady"],
                lat.get("count"),
                lat.get("p50"),
                lat.get("p99"),
                lat.get("max"),
                m.get("cpu_us_per_delivery_pipeline"),
                m.get("cpu_us_per_delivery_workers"),
                m.get("cpu_us_per_delivery_broker"),
                m.get("cpu_us_per_delivery_receivers"),
                run.cpu.get("workers_cores"),
                run.cpu.get("broker_cores"),
                run.cpu.get("machine_cores"),
                run.check["lost_pairs"],
            ]
        )
        key = f"{r:g}x{fanout}"
        out.extra[f"latency_ms_{key}"] = lat
        out.extra[f"cpu_{key}"] = run.cpu
        out.extra[f"metrics_{key}"] = m
        out.metrics[f"{key}_p50_ms"] = lat.get("p50")
        out.metrics[f"{key}_p99_ms"] = lat.get("p99")
        out.metrics[f"{key}_cpu_us_per_delivery_pipeline"] = m.get("cpu_us_per_delivery_pipeline")
        limits = PACED_TARGETS.get((r, fanout))
        cpu_target(out, m, limits[0] if limits else None, label)
        p50_max = limits[1] if limits else None
        p99_max = limits[2] if limits else None
        out.target(
            f"{label}: latency"
            + (f" p50 <= {p50_max:g} ms," if p50_max else "")
            + (f" p99 <= {p99_max:g} ms" if p99_max else ""),
            f"p50 {_n(lat.get('p50'), ' ms')}, p99 {_n(lat.get('p99'), ' ms')}",
            None
            if limits is None or lat.get("p99") is None
            else (p50_max is None or lat["p50"] <= p50_max) and lat["p99"] <= p99_max,
        )
        all_ok = all_ok and checks_ok(run.check)
        out.checks = run.check
        out.cpu = out.cpu or run.cpu
    out.tables.append(
        {
            "title": f"Paced rows ({p.duration_s:g} s each, {len(stack.workers)} workers; "
            "latency from the hand-over to the publisher to the receipt; CPU per delivery "
            "in us, the pipeline being workers + broker)",
            "columns": [
                "load",
                "fan-out",
                "achieved/s",
                "deliveries",
                "p50 ms",
                "p99 ms",
                "max ms",
                "pipeline us",
                "workers us",
                "broker us",
                "receivers us",
                "worker cores",
                "broker cores",
                "machine cores",
                "lost",
            ],
            "rows": rows,
        }
    )
    out.tables.append(counters_table([worker_counters(stack, "main")]))
    out.ok = all_ok
    out.notes.append(
        "Receiver: the harness's Python receiver (`streams.receiver.Receiver`, which verifies "
        "every signature), on the same 2 cores; its CPU is reported apart, not in the pipeline's."
    )
    return out


def soak(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    stack = main_stack(bench, out)
    r = p.rates[0]
    plan = event_plan(max(1, int(r * p.duration_s / p.fanout)), sorted(stack.by_tenant), "s")
    samples: list[list[Any]] = []
    t0 = time.time()
    next_at = [t0]
    watch = stack.watch()

    def tick() -> None:
        now = time.time()
        if now >= next_at[0]:
            next_at[0] += p.sample_s
            samples.append(
                [
                    round(now - t0),
                    watch.ledger.delivered_pairs,
                    *memory_of(stack.pids),
                    *memory_of(bench.receivers.pids if bench.receivers else []),
                ]
            )

    run = run_load(bench, stack, plan, events_per_s=r / p.fanout, watch=watch, tick=tick)
    tick()
    out.metrics.update(run.metrics)
    lat = summary(run.latencies, scale=1000)
    out.metrics["latency_ms"] = {k: lat.get(k) for k in ("p50", "p99", "max")}
    out.cpu = run.cpu
    w = len(stack.workers)
    columns = ["t (s)", "delivered"] + [f"worker {i} RSS MiB" for i in range(w)]
    columns += [
        f"receiver {i} RSS MiB" for i in range(len(bench.receivers.pids if bench.receivers else []))
    ]
    step = max(1, len(samples) // 30)
    out.tables.append({"title": "Memory over time", "columns": columns, "rows": samples[::step]})
    out.extra["samples"] = samples
    growth = []
    if len(samples) >= 4:
        quarter = len(samples) // 4
        for i in range(w):
            early = [s[2 + i] for s in samples[quarter : 2 * quarter] if s[2 + i] is not None]
            late = [s[2 + i] for s in samples[-quarter:] if s[2 + i] is not None]
            if early and late:
                growth.append(round(max(late) - max(early), 1))
    out.metrics["worker_rss_growth_mb (last quarter vs second quarter)"] = growth
    out.target(
        f"{p.duration_s:g} s at {r:g} deliveries/s: every pair delivered",
        f"{run.check['lost_pairs']} lost",
        run.check["lost_pairs"] == 0,
    )
    finish_checks(out, run)
    return out


# -- slow and noisy ----------------------------------------------------------------------------


def slow(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    assert bench.receivers is not None
    bench.receivers.configure("*", secret=bench.secret, latency_ms=p.latency_ms)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    per = max(1, p.subscriptions // p.tenants)
    stack.create_subscriptions(
        tenant_plan(p.tenants, per, "slow"), body={"max_in_flight": p.max_in_flight}
    )
    warm_up(bench, stack)
    plan = event_plan(p.events, sorted(stack.by_tenant), "d")
    run = _with_profile(bench, stack, lambda: run_load(bench, stack, plan), out)
    out.metrics.update(run.metrics)
    out.metrics["subscriptions"] = len(stack.subs)
    out.metrics["receiver_latency_ms"] = p.latency_ms
    out.cpu = run.cpu
    steady = run.metrics["deliveries_per_s_steady"]
    out.metrics["requests_in_flight_implied (rate x latency)"] = (
        round(steady * p.latency_ms / 1000) if steady else None
    )
    out.target(
        f">= 2,000 deliveries/s to {len(stack.subs):,} endpoints answering after "
        f"{p.latency_ms:g} ms",
        _n(steady, " deliveries/s"),
        steady is not None and steady >= 2000,
    )
    finish_checks(out, run)
    return out


def noisy(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    out.ceiling = measure_ceiling(bench)
    assert bench.receivers is not None
    bench.receivers.configure("noisy.dead", secret=bench.secret, mode="hang")
    per = max(1, p.subscriptions // p.tenants)
    rows = []
    work_rows: list[list[Any]] = []
    rates: dict[str, float | None] = {}
    all_ok = True
    for phase in ("without", "with"):
        stack = bench.stack(phase, workers=p.workers)
        stack.start()
        stack.create_subscriptions(tenant_plan(p.tenants, per, phase))
        dead: list[Sub] = []
        if phase == "with":
            # One endpoint that never answers, subscribed to every tenant's events.
            dead = stack.create_subscriptions(
                [(t, "noisy.dead") for t in sorted(stack.by_tenant)],
                track=False,
                body={"timeout": f"{p.sub_timeout_s:g}s"} if p.sub_timeout_s else None,
            )
        warm_up(bench, stack)
        plan = event_plan(p.events, sorted(stack.by_tenant), f"{phase}e")
        run = run_load(bench, stack, plan, label=f" {phase} the dead endpoint")
        steady = run.metrics["deliveries_per_s_steady"]
        rates[phase] = steady
        dead_requests = run.watch.ledger.other_by_endpoint.get("noisy.dead", 0)
        work_rows.append(worker_counters(stack, phase))
        rows.append(
            [
                phase,
                run.metrics["pairs_delivered"],
                run.metrics["deliveries_per_s_end_to_end"],
                steady,
                len(dead),
                dead_requests,
                run.cpu.get("workers_cores"),
                run.check["lost_pairs"],
            ]
        )
        all_ok = all_ok and checks_ok(run.check)
        out.checks = run.check
        stack.stop()
    out.tables.append(
        {
            "title": "Healthy endpoints with and without one endpoint that never answers",
            "columns": [
                "run",
                "healthy pairs delivered",
                "end-to-end/s",
                "steady/s",
                "dead subscriptions",
                "requests to the dead endpoint",
                "worker cores",
                "lost",
            ],
            "rows": rows,
        }
    )
    out.tables.append(counters_table(work_rows))
    base, noisy_rate = rates.get("without"), rates.get("with")
    ratio = round(noisy_rate / base, 3) if base and noisy_rate else None
    out.metrics["healthy_throughput_ratio (with / without)"] = ratio
    out.target(
        "healthy endpoints keep >= 90% of their throughput",
        f"{ratio * 100:.0f}%" if ratio is not None else "-",
        ratio is not None and ratio >= 0.9,
    )
    out.ok = all_ok
    out.notes.append(
        "The dead endpoint has one subscription per tenant (so it receives every event); its "
        f"requests hang until the {p.sub_timeout_s or 10:g} s request timeout. Its pairs are not "
        "in the ledger check (they cannot be delivered); every healthy pair is."
    )
    return out


# -- tenants -------------------------------------------------------------------------------

#: Worker settings of the two sides of `neighbours`: per-tenant scheduling off, then on.
NEIGHBOUR_PHASES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("without", "off", {"STREAMS_TENANT_MAX_IN_FLIGHT": "0"}),
    ("with", "on", {}),
)


def neighbours(bench: Bench) -> Outcome:
    """One tenant floods, one is quiet; the quiet one's latency without and with per-tenant
    scheduling, on fresh workers each time, the two sides interleaved over the rounds."""
    p = bench.params
    out = Outcome()
    setup(bench)
    rows: list[list[Any]] = []
    work_rows: list[list[Any]] = []
    quiet_p99: dict[str, list[float]] = {"without": [], "with": []}
    all_ok = True
    for rnd in range(1, p.rounds + 1):
        for phase, tag, env in NEIGHBOUR_PHASES:
            label = f"{phase} (round {rnd})"
            run = _neighbours_phase(bench, f"{tag}{rnd}", env)  # its own topics and ids
            quiet = summary(run["quiet"], scale=1000)
            flood = summary(run["flood"], scale=1000)
            if quiet.get("p99") is not None:
                quiet_p99[phase].append(quiet["p99"])
            rows.append(
                [
                    label,
                    quiet.get("count"),
                    quiet.get("p50"),
                    quiet.get("p99"),
                    quiet.get("max"),
                    flood.get("count"),
                    flood.get("p50"),
                    flood.get("p99"),
                    run["flood_per_s"],
                    run["cpu"].get("workers_cores"),
                    run["check"]["lost_pairs"],
                ]
            )
            work_rows.append([label, *run["counters"][1:]])
            out.extra[f"{phase}_round_{rnd}"] = {"quiet_ms": quiet, "flood_ms": flood, **run["cpu"]}
            all_ok = all_ok and checks_ok(run["check"])
            out.checks = run["check"]
    out.tables.append(
        {
            "title": (
                f"Publish-to-receipt latency (ms) of the quiet tenant (1 subscription, "
                f"{p.rates[0]:g} events/s) beside a tenant publishing {p.events} events to "
                f"{p.subscriptions} subscriptions every {p.burst_s:g} s"
            ),
            "columns": [
                "run",
                "quiet deliveries",
                "quiet p50",
                "quiet p99",
                "quiet max",
                "flood deliveries",
                "flood p50",
                "flood p99",
                "flood steady/s",
                "worker cores",
                "lost",
            ],
            "rows": rows,
        }
    )
    out.tables.append(counters_table(work_rows))
    without, with_ = _median(quiet_p99["without"]), _median(quiet_p99["with"])
    out.metrics["quiet_p99_ms_without (median of rounds)"] = without
    out.metrics["quiet_p99_ms_with (median of rounds)"] = with_
    out.target(
        "the quiet tenant's p99 latency, without -> with per-tenant scheduling",
        f"{_n(without, ' ms')} -> {_n(with_, ' ms')}",
        None if without is None or with_ is None else with_ < without,
    )
    out.ok = all_ok
    out.notes.append(
        "Each round runs the same load twice, each time on fresh workers and topics: first "
        "with STREAMS_TENANT_MAX_IN_FLIGHT=0 (every subscription's lane alone, as before "
        "per-tenant scheduling), then with the default (or the --worker-env value)."
    )
    out.notes.append(
        "The flooding tenant's subscriptions match `*` (as in issue 17); "
        "STREAMS_TENANT_MAX_SUBSCRIPTIONS=0 on both sides so it can have them all. The "
        "quiet tenant's events are spread evenly over the run; the flood's bursts start "
        f"{p.burst_s / 2:g} s in. Every pair of both tenants is checked."
    )
    return out


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _neighbours_phase(bench: Bench, name: str, env: dict[str, str]) -> dict[str, Any]:
    p = bench.params
    stack = bench.stack(
        name, workers=p.workers, extra_env={"STREAMS_TENANT_MAX_SUBSCRIPTIONS": "0", **env}
    )
    stack.start()
    stack.create_subscriptions(
        [("flood", f"{name}.flood.s{k:03d}") for k in range(p.subscriptions)],
        body={"event_types": ["*"]},
    )
    stack.create_subscriptions([("quiet", f"{name}.quiet")])
    warm_up(bench, stack)
    rate_ = p.rates[0]
    quiet_plan = [(f"{name}-q{i}", "quiet") for i in range(max(1, int(rate_ * p.duration_s)))]
    bursts = max(1, int((p.duration_s - p.burst_s / 2) // p.burst_s) + 1)
    flood_plans = [[(f"{name}-f{b}-{i}", "flood") for i in range(p.events)] for b in range(bursts)]
    plan = quiet_plan + [pair for burst in flood_plans for pair in burst]
    watch = stack.watch()
    watch.only(e for e, _t in plan)
    expected = list(stack.expected(plan))
    meter = CpuMeter(roles_of(bench, stack))
    meter.begin()
    quiet_feeder = Feeder(stack.settings, quiet_plan, rate=rate_)
    flood_feeders = [Feeder(stack.settings, burst) for burst in flood_plans]
    t0 = time.monotonic()
    quiet_feeder.start()
    due = [p.burst_s / 2 + b * p.burst_s for b in range(bursts)]
    started = 0

    def tick() -> None:
        nonlocal started
        while started < bursts and time.monotonic() - t0 >= due[started]:
            flood_feeders[started].start()
            started += 1

    resolved = watch.wait_resolved(
        len(expected),
        timeout_s=p.duration_s + len(expected) / 50 + 600,
        stall_s=p.settle_s,
        feeder=quiet_feeder,
        tick=tick,
        label=f" {name}",
    )
    for feeder in (quiet_feeder, *flood_feeders):
        feeder.stop()
        if feeder.is_alive() or feeder.ident is not None:
            feeder.join(60)
    cpu = meter.end()
    counters = worker_counters(stack, name)
    stack.stop()
    errors = [e for f in (quiet_feeder, *flood_feeders) for e in f.errors]
    if errors:
        raise BenchFailed(f"publishing failed: {errors[0]}")
    check = watch.check(expected)
    check["resolved_in_time"] = resolved
    watch.close()
    ledger = watch.ledger
    quiet_endpoint = f"{name}.quiet"
    quiet = [
        ledger.first_ok[(e, quiet_endpoint)] - quiet_feeder.sent_at[e]
        for e, _t in quiet_plan
        if (e, quiet_endpoint) in ledger.first_ok and e in quiet_feeder.sent_at
    ]
    sent = {e: t for f in flood_feeders for e, t in f.sent_at.items()}
    flood_pairs = [pair for pair in expected if pair[1] != quiet_endpoint]
    flood = [ledger.first_ok[x] - sent[x[0]] for x in flood_pairs if x in ledger.first_ok]
    flood_times = [ledger.first_ok[x] for x in flood_pairs if x in ledger.first_ok]
    return {
        "quiet": quiet,
        "flood": flood,
        "flood_per_s": rounded(steady_rate(flood_times)),
        "cpu": cpu,
        "check": check,
        "counters": counters,
    }


# -- retries --------------------------------------------------------------------------------


def retry_lateness(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    assert bench.receivers is not None
    bench.receivers.configure("*", secret=bench.secret, fail_rate=p.fail_rate, fail_status=503)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "rl"))
    warm_up(bench, stack)
    r = p.rates[0]
    plan = event_plan(p.events, sorted(stack.by_tenant), "rl")
    watch = stack.watch(keep_attempts=True, retry_tiers=True)
    run = run_load(bench, stack, plan, events_per_s=r / p.fanout, watch=watch)
    for _ in range(20):
        before = sum(len(v) for v in watch.due.due.values())
        watch.poll_retries()
        if sum(len(v) for v in watch.due.due.values()) == before:
            break
    late: list[float] = []
    by_attempt: dict[int, list[float]] = {}
    unmatched = 0
    for webhook_id, attempt, received in watch.ledger.attempts:
        if attempt < 2:
            continue
        value = watch.due.lateness(webhook_id, attempt, received)
        if value is None:
            unmatched += 1
            continue
        late.append(value)
        by_attempt.setdefault(attempt, []).append(value)
    early = sum(1 for x in late if x < 0)
    s = summary(late, scale=1000)
    out.metrics.update(run.metrics)
    out.metrics["retry_schedule"] = stack.retry_schedule
    out.metrics["receiver_fail_rate"] = p.fail_rate
    out.metrics["requests_per_s (attempts incl. retries)"] = rounded(
        rate(watch.ledger.requests, run.feeder.started_at, watch.ledger.last_at)
    )
    out.metrics["retries_measured"] = len(late)
    out.metrics["retries_without_due_record"] = unmatched
    out.metrics["early_retries"] = early
    out.metrics["lateness_ms"] = {k: s.get(k) for k in ("p50", "p90", "p99", "max")}
    out.tables.append(
        {
            "title": "Lateness of retries (receipt minus due time), by attempt",
            "columns": ["attempt", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "early"],
            "rows": [
                [
                    a,
                    len(v),
                    summary(v, scale=1000).get("p50"),
                    summary(v, scale=1000).get("p90"),
                    summary(v, scale=1000).get("p99"),
                    summary(v, scale=1000).get("max"),
                    sum(1 for x in v if x < 0),
                ]
                for a, v in sorted(by_attempt.items())
            ],
        }
    )
    out.target("no retry early", f"{early} early of {len(late):,}", early == 0 and bool(late))
    out.target(
        "lateness p50 / p99 / max",
        f"{_n(s.get('p50'), ' ms')} / {_n(s.get('p99'), ' ms')} / {_n(s.get('max'), ' ms')}",
        None,
    )
    out.cpu = run.cpu
    finish_checks(out, run)
    out.ok = out.ok and early == 0
    out.notes.append(
        "Due times are read from the retry-tier topics (the `due_at` of the record that asked "
        "for each attempt, jitter included); receipt times from the receiver's ledger."
    )
    return out


# -- faults --------------------------------------------------------------------------------


def kill_worker(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    assert bench.receivers is not None
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "kw"))
    warm_up(bench, stack)
    flaky = [s for s in stack.subs if s.endpoint.endswith(".s000")]
    for s in flaky:
        bench.receivers.configure(
            s.endpoint, secret=bench.secret, fail_rate=p.fail_rate, fail_status=503
        )
    r = p.rates[0]
    plan = event_plan(p.events, sorted(stack.by_tenant), "kw")
    span = len(plan) / (r / p.fanout)
    rng = random.Random(bench.seed)  # noqa: S311 - reproducible fault times
    t0 = [0.0]
    times = sorted(rng.uniform(0.1 * span, 0.85 * span) for _ in range(p.kills))
    kills: list[dict[str, Any]] = []
    restarting: dict[int, dict[str, Any]] = {}

    def tick() -> None:
        now = time.monotonic()
        if not t0[0]:
            t0[0] = now
        for idx, info in list(restarting.items()):
            w = stack.workers[idx]
            if w.healthy():
                info["healthy_after_s"] = round(time.monotonic() - info["_at"], 1)
                del restarting[idx]
        if times and now - t0[0] >= times[0]:
            times.pop(0)
            candidates = [
                w for w in stack.workers if w.pid is not None and w.index not in restarting
            ]
            if not candidates:
                return
            victim = rng.choice(candidates)
            victim.kill()
            info = {"worker": victim.index, "at_s": round(now - t0[0], 1), "_at": time.monotonic()}
            kills.append(info)
            bench.say(f"SIGKILL worker {victim.index} at {info['at_s']}s; restarting it")
            victim.start(wait=False)
            restarting[victim.index] = info

    run = run_load(bench, stack, plan, events_per_s=r / p.fanout, tick=tick)
    out.metrics.update(run.metrics)
    out.metrics["kills"] = len(kills)
    out.tables.append(
        {
            "title": "Kills (SIGKILL, then `streams worker` started again at once)",
            "columns": ["worker", "at (s into publishing)", "healthy again after (s)"],
            "rows": [[k["worker"], k["at_s"], k.get("healthy_after_s")] for k in kills],
        }
    )
    _fault_targets(out, run)
    finish_checks(out, run)
    out.notes.append(
        f"One subscription per tenant answers 503 at random ({p.fail_rate:.0%}), so retries "
        f"(schedule {stack.retry_schedule}) and dead letters are in the mix."
    )
    return out


def _fault_targets(out: Outcome, run: LoadRun) -> None:
    c = run.check
    out.target(
        "no (event, subscription) pair lost",
        f"{c['lost_pairs']} lost of {c['expected_pairs']:,} "
        f"({c['delivered_pairs']:,} delivered, {c['parked_pairs']:,} parked)",
        c["lost_pairs"] == 0,
    )
    out.target(
        "duplicates counted and reported",
        f"{c['duplicates']:,} duplicate deliveries ({c['pairs_with_duplicates']:,} pairs)",
        None,
    )


def kill_broker(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench, private_broker=True)
    assert bench.broker is not None
    stack = bench.stack("main", workers=p.workers)
    stack.auto_restart = True  # as an orchestrator would restart a worker that gave up
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "kb"))
    warm_up(bench, stack)
    r = p.rates[0]
    plan = event_plan(p.events, sorted(stack.by_tenant), "kb")
    span = len(plan) / (r / p.fanout)
    rng = random.Random(bench.seed)  # noqa: S311
    gap = span / (p.kills + 1)
    times = [gap * (i + 1) + rng.uniform(-0.2, 0.2) * gap for i in range(p.kills)]
    t0 = [0.0]
    outages: list[list[Any]] = []

    def tick() -> None:
        now = time.monotonic()
        if not t0[0]:
            t0[0] = now
        if times and now - t0[0] >= times[0]:
            times.pop(0)
            assert bench.broker is not None
            bench.broker.sigkill()
            at = round(time.monotonic() - t0[0], 1)
            bench.say(f"SIGKILL broker (pid from its pid file) at {at}s; restarting in 5s")
            time.sleep(5)
            took = bench.broker.restart()
            bench.say(f"broker answering again after {took:.1f}s")
            outages.append([at, 5.0, round(took, 1)])

    run = run_load(bench, stack, plan, events_per_s=r / p.fanout, tick=tick)
    out.metrics.update(run.metrics)
    out.metrics["broker_kills"] = len(outages)
    out.metrics["worker_exits_restarted"] = stack.unexpected_exits
    out.tables.append(
        {
            "title": "Broker kills (SIGKILL to the private LocalKafka, restart after 5 s)",
            "columns": ["at (s into publishing)", "down before restart (s)", "restart took (s)"],
            "rows": outages,
        }
    )
    _fault_targets(out, run)
    finish_checks(out, run)
    return out


#: What the faulty endpoints do, in turn, each for ``flip_s`` (flap cycles per request).
FAULT_CYCLES: dict[str, list[dict[str, Any]]] = {
    "flap": [{"mode": "flap"}],
    "close-mid-response": [
        {"mode": "close", "status": 503},
        {"mode": "reset"},
        {"mode": "close", "status": 200},
        {"mode": "normal"},
    ],
    "slow-loris": [
        {"mode": "trickle", "status": 503},
        {"mode": "normal"},
        {"mode": "trickle", "status": 200},
        {"mode": "normal"},
    ],
}


def _describe_behaviour(b: dict[str, Any]) -> str:
    mode = b.get("mode", "normal")
    text = {
        "flap": "per request: 500, hang (timeout), 200",
        "close": "status line {status}, then the connection is cut mid-body",
        "reset": "connection closed before any byte of a response",
        "trickle": "status {status}, then the body at 1 byte / 500 ms",
        "normal": "200 at once",
    }[mode]
    return text.format(status=b.get("status", 200))


def receiver_fault(bench: Bench) -> Outcome:
    """flap, close-mid-response, slow-loris: faulty endpoints beside healthy ones."""
    p = bench.params
    name = bench.scenario.name
    out = Outcome()
    setup(bench)
    assert bench.receivers is not None
    receivers = bench.receivers
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    healthy_per = max(1, p.fanout - p.faulty)
    stack.create_subscriptions(tenant_plan(p.tenants, healthy_per, "ok"))
    fault_plan = tenant_plan(p.tenants, p.faulty, "bad")
    timeout = f"{p.sub_timeout_s:g}s" if p.sub_timeout_s else None
    stack.create_subscriptions(fault_plan, body={"timeout": timeout} if timeout else None)
    warm_up(bench, stack)
    bad = [e for _t, e in fault_plan]
    cycle = FAULT_CYCLES[name]
    position = [0]
    switched_at = [time.monotonic()]

    def apply(behaviour: dict[str, Any]) -> None:
        for endpoint in bad:
            receivers.configure(endpoint, secret=bench.secret, **behaviour)

    apply(cycle[0])

    def tick() -> None:
        if len(cycle) < 2 or not p.flip_s or time.monotonic() - switched_at[0] < p.flip_s:
            return
        position[0] = (position[0] + 1) % len(cycle)
        switched_at[0] = time.monotonic()
        apply(cycle[position[0]])

    r = p.rates[0]
    plan = event_plan(p.events, sorted(stack.by_tenant), name[:5])
    run = run_load(bench, stack, plan, events_per_s=r / p.fanout, tick=tick)
    out.metrics.update(run.metrics)
    out.metrics["healthy_subscriptions"] = p.tenants * healthy_per
    out.metrics["faulty_subscriptions"] = len(bad)
    out.metrics["fault_cycle"] = " -> ".join(_describe_behaviour(b) for b in cycle) + (
        f", each for {p.flip_s:g} s" if len(cycle) > 1 else ""
    )
    out.metrics["faulty_subscription_timeout"] = timeout or "default"
    healthy_set = {e for e in run.watch.ledger.endpoints if e.startswith("ok.")}
    healthy_lat = [
        run.watch.ledger.first_ok[pair] - run.feeder.sent_at[pair[0]]
        for pair in run.expected
        if pair[1] in healthy_set and pair in run.watch.ledger.first_ok
    ]
    out.metrics["healthy_latency_ms"] = {
        k: summary(healthy_lat, scale=1000).get(k) for k in ("p50", "p99", "max")
    }
    out.metrics["requests_by_answer"] = run.check["responses"]
    _fault_targets(out, run)
    finish_checks(out, run)
    return out


# -- replay ---------------------------------------------------------------------------------


def replay(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    setup(bench)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "rp"), body={"enabled": False})
    plan = event_plan(p.events, sorted(stack.by_tenant), "rp")
    watch = stack.watch()
    expected = list(stack.expected(plan))
    feeder = Feeder(stack.settings, plan)
    feeder.start()
    deadline = time.monotonic() + p.settle_s + len(plan) / 200
    while time.monotonic() < deadline:
        watch.poll()
        stack.supervise()
        if not feeder.is_alive() and len(watch.dlq.parked) >= len(expected):
            break
        time.sleep(0.5)
    feeder.join(60)
    parked = len(watch.dlq.parked)
    bench.say(f"{parked:,} dead letters parked (subscriptions disabled)")
    if parked < len(expected):
        raise BenchFailed(f"only {parked} of {len(expected)} deliveries were parked")
    with httpx.Client(
        base_url=stack.workers[0].base_url,
        headers={"Authorization": f"Bearer {bench.admin_token}"},
        timeout=300,
    ) as api:
        for s in stack.subs:
            resp = api.post(f"/v1/subscriptions/{s.id}/enable", json={})
            if resp.status_code != 200:
                raise BenchFailed(f"enable failed: {resp.status_code} {resp.text[:200]}")
    stack.wait_subscriptions(len(stack.subs))
    time.sleep(1)
    env = dict(stack.workers[0].env)
    argv = [
        sys.executable,
        "-m",
        "streams",
        "dlq",
        "replay",
        "--reason",
        "subscription_disabled",
        "--json",
    ]
    command = "streams dlq replay --reason subscription_disabled --json"
    meter = CpuMeter(roles_of(bench, stack))
    meter.begin()
    started = time.time()
    proc = bench.procs.start("dlq-replay", argv, env=env, log=bench.dir / "replay.out")
    code: int | None = None
    while time.time() - started < p.settle_s + 600:
        watch.poll()
        code = proc.poll()
        if code is not None:
            break
        time.sleep(0.2)
    else:
        bench.procs.kill(proc)
        raise BenchFailed("streams dlq replay did not finish in time")
    replay_s = time.time() - started
    raw = (bench.dir / "replay.out").read_text(errors="replace")
    if code != 0:
        raise BenchFailed(f"`{command}` exited with {code}: {raw[-500:]}")
    summary_json = _last_json(raw)
    replayed = int(summary_json.get("replayed") or 0)
    # Every pair is parked already: wait for the replays to be *delivered*.
    ok = watch.wait_resolved(
        len(expected),
        timeout_s=len(expected) / 50 + 600,
        stall_s=p.settle_s,
        label=" replays delivered",
        count=lambda: watch.ledger.delivered_pairs,
    )
    cpu = meter.end()
    check = watch.check(expected)
    check["resolved_in_time"] = ok
    ok_times = [watch.ledger.first_ok[x] for x in expected if x in watch.ledger.first_ok]
    last = max(ok_times) if ok_times else None
    out.metrics.update(
        {
            "dead_letters": parked,
            "replay_command": command,
            "replayed": replayed,
            "replay_command_s": round(replay_s, 1),
            "replay_letters_per_s (command)": round(replayed / replay_s, 1) if replay_s else None,
            "replays_delivered": watch.ledger.replays_ok,
            "replays_delivered_per_s (start of command to last receipt)": rounded(
                rate(len(ok_times), started, last)
            ),
            "replays_delivered_per_s_steady": rounded(steady_rate(ok_times)),
        }
    )
    out.cpu = cpu
    out.target(
        f"replay {parked:,} dead letters",
        f"{_n(out.metrics['replay_letters_per_s (command)'], ' letters/s')} "
        f"({replay_s:.1f} s), delivered at "
        f"{_n(out.metrics['replays_delivered_per_s_steady'], '/s')}",
        None,
    )
    delivered = watch.ledger.delivered_pairs  # every delivery here is a replay
    out.target(
        "every replayed letter delivered",
        f"{delivered:,} of {replayed:,}",
        delivered >= replayed,
    )
    out.checks = check
    out.ok = checks_ok(check) and replayed >= parked and delivered >= replayed
    out.notes.append(
        "Dead letters were made by publishing to disabled subscriptions (reason "
        "`subscription_disabled`); the subscriptions were then enabled and the replay run."
    )
    return out


def _last_json(text: str) -> dict[str, Any]:
    start = text.rfind("\n{")
    candidate = text[start + 1 :] if start >= 0 else text[text.find("{") :]
    try:
        parsed = orjson.loads(candidate)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def console_live(bench: Bench) -> Outcome:
    """:func:`streams.tools.bench.console.console_live` (there: it builds on this module)."""
    from streams.tools.bench.console import console_live as run

    return run(bench)


def console_log(bench: Bench) -> Outcome:
    """:func:`streams.tools.bench.console.console_log` (there: it builds on this module)."""
    from streams.tools.bench.console import console_log as run

    return run(bench)


RUNNERS: dict[str, Callable[[Bench], Outcome]] = {
    "throughput": throughput,
    "fanout-1": throughput,
    "paced": paced,
    "latency": latency,
    "slow": slow,
    "noisy": noisy,
    "neighbours": neighbours,
    "retry-lateness": retry_lateness,
    "fanout": fanout,
    "replay": replay,
    "console-live": console_live,
    "console-log": console_log,
    "scale": scale,
    "soak": soak,
    "kill-worker": kill_worker,
    "kill-broker": kill_broker,
    "flap": receiver_fault,
    "close-mid-response": receiver_fault,
    "slow-loris": receiver_fault,
}


def params_table(params: Params) -> dict[str, Any]:
    return params.as_dict()
