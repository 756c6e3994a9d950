"""Scenarios, their sizes, and the validation of what a user asked for.

Everything here is pure: :func:`resolve` turns a scenario name, ``--smoke``
and the command-line overrides into :class:`Params`, or raises
:class:`BenchConfigError` naming the option at fault, before anything starts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.errors import ConfigError, StreamsError


class BenchConfigError(ConfigError):
    """A benchmark was asked for something impossible; nothing was started."""


class BenchFailed(StreamsError):
    """A run finished but a correctness check failed (lost pairs, bad signatures, ...)."""


@dataclass(frozen=True, slots=True)
class Params:
    """Every knob of a scenario. Rates are deliveries per second."""

    workers: int = 1
    receivers: int = 1
    events: int = 1000
    fanout: int = 10  # subscriptions each event matches
    tenants: int = 6
    rates: tuple[float, ...] = ()  # deliveries/s; empty: as fast as possible
    duration_s: float = 30.0
    partitions: int = 6
    kills: int = 0
    latency_ms: float = 0.0
    subscriptions: int = 0  # scenario-specific: slow endpoints, table size, ...
    faulty: int = 0  # fault scenarios: faulty subscriptions per tenant
    retry_schedule: str = "1s,2s,4s"
    fail_rate: float = 0.0
    sub_timeout_s: float | None = None
    flip_s: float = 0.0
    sample_s: float = 5.0
    max_in_flight: int = 16
    worker_counts: tuple[int, ...] = ()  # scale: one phase per count
    settle_s: float = 300.0  # how long to wait for the last pairs after publishing ends
    ceiling_s: float = 5.0  # length of the receiver-ceiling measurement (0: skip)
    worker_env: tuple[tuple[str, str], ...] = ()  # extra STREAMS_* settings of the workers
    viewers: int = 0  # console-live: open live views polling worker 0
    log_fill: int = 0  # console-live, console-log: synthetic attempts in the log first
    requests: int = 0  # console-log: measured requests of each kind of page
    #: paced: (deliveries/s, fan-out) of each row; fan-out 1 is one tenant with one endpoint
    rows: tuple[tuple[float, int], ...] = ()
    idle_s: float = 0.0  # paced: seconds of no traffic measured first (idle cost)
    #: paced: seconds of each row's load run first and not measured, so the broker's JVM
    #: has compiled its request path (a fresh broker spends about half its CPU compiling
    #: for a minute: docs/benchmarks.md, "Broker CPU") and every cache is warm
    warm_s: float = 0.0
    #: A broker of the run's own, so the broker's CPU is this pipeline's alone (the shared
    #: one serves other users too, and its process is not always known to the harness).
    private_broker: bool = False
    burst_s: float = 10.0  # neighbours: the flooding tenant publishes a burst this often
    rounds: int = 1  # neighbours: pairs of phases (without, with), interleaved
    #: Workers that keep the delivery log (0: every worker, each indexing the whole
    #: attempts topic); the others run with STREAMS_DELIVERY_LOG=off, as delivery-only
    #: workers beside one log node (docs/design.md). A --worker-env STREAMS_DELIVERY_LOG
    #: applies to every worker instead.
    log_nodes: int = 0

    @property
    def deliveries(self) -> int:
        return self.events * self.fanout

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    target: str
    full: Params
    smoke: Params
    fault: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


_FAULT_FULL = Params(
    workers=2,
    events=3000,
    fanout=10,
    faulty=5,
    tenants=6,
    rates=(600.0,),
    retry_schedule="1s,2s,4s,8s",
    sub_timeout_s=2.0,
    flip_s=3.0,
    settle_s=180.0,
)
_FAULT_SMOKE = Params(
    workers=1,
    events=40,
    fanout=4,
    faulty=2,
    tenants=2,
    partitions=3,
    rates=(200.0,),
    retry_schedule="1s,2s,4s",
    sub_timeout_s=1.0,
    flip_s=1.5,
    settle_s=60.0,
    ceiling_s=0.0,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "throughput",
            "events fanned out to a receiver that answers at once, as fast as possible",
            ">= 3,000 deliveries/s sustained end to end",
            full=Params(workers=2, receivers=2, events=40_000, fanout=10, tenants=24),
            smoke=Params(events=200, fanout=5, tenants=4, partitions=3, settle_s=60, ceiling_s=1),
        ),
        Scenario(
            "fanout-1",
            "one tenant, one endpoint (fan-out 1, as Prospektr), as fast as possible",
            "<= 1,100 us of pipeline CPU (workers + broker) per delivery",
            full=Params(
                workers=2,
                events=30_000,
                fanout=1,
                tenants=1,
                ceiling_s=0,
                private_broker=True,
                log_nodes=1,
            ),
            smoke=Params(events=200, fanout=1, tenants=1, partitions=3, settle_s=60, ceiling_s=0),
            notes=(
                "Events are keyed by tenant and deliveries by subscription, so one tenant "
                "with one endpoint is read from one partition per stage.",
            ),
        ),
        Scenario(
            "paced",
            "idle cost, then paced rows: 1,000 deliveries/s at fan-out 10, 500/s at fan-out 1",
            "1,000/s x 10: <= 400 us per delivery, p50 <= 10 ms, p99 <= 25 ms; "
            "500/s x 1: <= 1,100 us, p99 <= 25 ms; idle worker < 1% of a core",
            full=Params(
                workers=2,
                tenants=12,
                rows=((1000.0, 10), (500.0, 1)),
                duration_s=30,
                idle_s=30,
                warm_s=20,
                ceiling_s=0,
                private_broker=True,
                log_nodes=1,
            ),
            smoke=Params(
                tenants=2,
                partitions=3,
                rows=((100.0, 5), (50.0, 1)),
                duration_s=3,
                idle_s=2,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "latency",
            "p50/p99 publish-to-receipt at fixed delivery rates",
            "p99 <= 100 ms at 1,000 deliveries/s",
            full=Params(
                workers=2,
                fanout=10,
                tenants=12,
                rates=(100.0, 250.0, 500.0, 750.0, 1000.0),
                duration_s=30,
            ),
            smoke=Params(
                fanout=5,
                tenants=2,
                partitions=3,
                rates=(100.0,),
                duration_s=3,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "slow",
            "1,000 subscriptions whose receiver answers after 200 ms",
            ">= 2,000 deliveries/s",
            full=Params(
                workers=2,
                receivers=2,
                subscriptions=1000,
                tenants=10,
                events=2000,
                latency_ms=200,
                max_in_flight=16,
            ),
            smoke=Params(
                subscriptions=20,
                tenants=2,
                events=20,
                latency_ms=200,
                partitions=3,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "noisy",
            "one endpoint that never answers among 100 healthy ones, against a run without it",
            "healthy endpoints keep >= 90% of their throughput",
            full=Params(workers=2, receivers=2, subscriptions=100, tenants=10, events=20_000),
            smoke=Params(
                subscriptions=4, tenants=2, events=50, partitions=3, settle_s=60, ceiling_s=0
            ),
        ),
        Scenario(
            "neighbours",
            "a tenant flooding 400 subscriptions to `*` beside a quiet tenant, without and "
            "with per-tenant scheduling",
            "the quiet tenant's p99 publish-to-receipt latency, without and with",
            full=Params(
                workers=1,
                subscriptions=400,
                events=20,
                rates=(5.0,),
                duration_s=40.0,
                burst_s=10.0,
                rounds=2,
                settle_s=120.0,
            ),
            smoke=Params(
                subscriptions=20,
                events=3,
                rates=(5.0,),
                duration_s=4.0,
                burst_s=2.0,
                partitions=3,
                settle_s=60.0,
                ceiling_s=0.0,
            ),
        ),
        Scenario(
            "retry-lateness",
            "lateness of retries against their due time, under load (compressed schedule)",
            "no retry early; p99 lateness reported",
            full=Params(
                workers=2,
                events=3000,
                fanout=10,
                tenants=12,
                rates=(400.0,),
                fail_rate=0.5,
                retry_schedule="1s,2s,4s,8s",
                settle_s=120,
            ),
            smoke=Params(
                events=40,
                fanout=3,
                tenants=2,
                partitions=3,
                rates=(100.0,),
                fail_rate=0.5,
                retry_schedule="1s,2s",
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "fanout",
            "100,000 events to 10 subscriptions each; then 100,000 subscriptions in the table",
            "events/s and deliveries/s; worker RSS and restart time with 100k subscriptions",
            full=Params(
                workers=2,
                receivers=2,
                events=100_000,
                fanout=10,
                tenants=24,
                subscriptions=100_000,
                settle_s=600,
            ),
            smoke=Params(
                events=200,
                fanout=10,
                tenants=4,
                partitions=3,
                subscriptions=300,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "console-live",
            "the operator's live view open in 10 browsers: one worker watched, one not",
            "10 live views cost the worker < 2% of a core",
            full=Params(
                workers=2,
                fanout=5,
                tenants=6,
                rates=(100.0,),
                duration_s=60,
                viewers=10,
                log_fill=180_000,
                ceiling_s=0,
            ),
            smoke=Params(
                workers=2,
                fanout=2,
                tenants=2,
                partitions=3,
                rates=(20.0,),
                duration_s=6,
                viewers=2,
                log_fill=500,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "console-log",
            "pages of the console's delivery log with 1,000,000 attempts in the store",
            "a page of a tenant's delivery log <= 100 ms of server time",
            full=Params(workers=1, log_fill=1_000_000, requests=200, ceiling_s=0),
            smoke=Params(workers=1, partitions=3, log_fill=20_000, requests=5, ceiling_s=0),
        ),
        Scenario(
            "replay",
            "replay of 100,000 dead letters with `streams dlq replay`",
            "replay rate (letters/s) and delivery of the replays",
            full=Params(workers=2, receivers=2, events=20_000, fanout=5, tenants=2),
            smoke=Params(events=50, fanout=2, tenants=2, partitions=3, settle_s=60, ceiling_s=0),
        ),
        Scenario(
            "scale",
            "the throughput workload with 1, then 2 worker processes",
            "deliveries/s per worker count",
            full=Params(receivers=2, events=20_000, fanout=10, tenants=24, worker_counts=(1, 2)),
            smoke=Params(
                events=100,
                fanout=5,
                tenants=4,
                partitions=3,
                worker_counts=(1, 2),
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "soak",
            "a bounded run at a fixed rate with memory sampled over time",
            "RSS flat, every pair delivered",
            full=Params(
                workers=2, fanout=10, tenants=12, rates=(1000.0,), duration_s=600, sample_s=10
            ),
            smoke=Params(
                fanout=5,
                tenants=2,
                partitions=3,
                rates=(100.0,),
                duration_s=8,
                sample_s=2,
                settle_s=60,
                ceiling_s=0,
            ),
        ),
        Scenario(
            "kill-worker",
            "SIGKILL a worker at random moments, several times, and restart it",
            "no pair lost; duplicates counted",
            full=Params(
                workers=2,
                events=12_000,
                fanout=5,
                tenants=12,
                rates=(600.0,),
                kills=5,
                fail_rate=0.2,
                retry_schedule="1s,2s,4s",
                settle_s=240,
            ),
            smoke=Params(
                workers=2,
                events=150,
                fanout=3,
                tenants=4,
                partitions=3,
                rates=(150.0,),
                kills=1,
                fail_rate=0.2,
                retry_schedule="1s,2s",
                settle_s=120,
                ceiling_s=0,
            ),
            fault=True,
        ),
        Scenario(
            "kill-broker",
            "SIGKILL the (private) broker mid-run and restart it",
            "no pair lost; duplicates counted",
            full=Params(
                workers=1,
                events=6000,
                fanout=5,
                tenants=6,
                rates=(500.0,),
                kills=2,
                retry_schedule="1s,2s,4s",
                settle_s=300,
            ),
            smoke=Params(
                events=100,
                fanout=3,
                tenants=2,
                partitions=3,
                rates=(100.0,),
                kills=1,
                retry_schedule="1s,2s",
                settle_s=180,
                ceiling_s=0,
            ),
            fault=True,
        ),
        Scenario(
            "flap",
            "receivers flapping between 500s, timeouts and success",
            "no pair lost; duplicates counted",
            full=_FAULT_FULL,
            smoke=_FAULT_SMOKE,
            fault=True,
        ),
        Scenario(
            "close-mid-response",
            "receivers that close the connection mid-response, on and off",
            "no pair lost; duplicates counted",
            full=_FAULT_FULL,
            smoke=_FAULT_SMOKE,
            fault=True,
        ),
        Scenario(
            "slow-loris",
            "receivers that trickle the response one byte every 500 ms, on and off",
            "no pair lost; duplicates counted",
            full=_FAULT_FULL,
            smoke=_FAULT_SMOKE,
            fault=True,
        ),
    )
}

#: Bounds that keep every run finite and every process count sane on one machine.
MAX_WORKERS = 16
MAX_RECEIVERS = 16
MAX_EVENTS = 10_000_000
MAX_RATE = 1_000_000.0
MAX_DURATION_S = 24 * 3600.0


def scenario(name: str) -> Scenario:
    found = SCENARIOS.get(name)
    if found is None:
        raise BenchConfigError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    return found


def parse_rates(text: str) -> tuple[float, ...]:
    """``"500,1000"`` → (500.0, 1000.0); every rate a positive, finite number."""
    rates: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise BenchConfigError(
                f"--rate {text!r}: {part!r} is not a number (deliveries per second, "
                "e.g. 1000 or 500,1000)"
            ) from None
        if not 0 < value <= MAX_RATE or value != value:
            raise BenchConfigError(
                f"--rate {text!r}: {part} is impossible; a rate must be above 0 and at most "
                f"{MAX_RATE:,.0f} deliveries/s"
            )
        rates.append(value)
    if not rates:
        raise BenchConfigError("--rate: give at least one rate")
    return tuple(rates)


def parse_rows(text: str) -> tuple[tuple[float, int], ...]:
    """``"1000x10,500x1"`` → ((1000.0, 10), (500.0, 1)): deliveries/s and fan-out per row."""
    rows: list[tuple[float, int]] = []
    for part in text.split(","):
        rate_text, sep, fanout_text = part.strip().partition("x")
        if not sep or not fanout_text.strip().isdigit():
            raise BenchConfigError(
                f"--rows {text!r}: {part.strip()!r} is not RATExFANOUT "
                "(deliveries/s and subscriptions per event, e.g. 1000x10,500x1)"
            )
        fanout = int(fanout_text)
        if not 1 <= fanout <= 1000:
            raise BenchConfigError(f"--rows {text!r}: fan-out {fanout} is not from 1 to 1,000")
        rows.append((parse_rates(rate_text)[0], fanout))
    return tuple(rows)


def _positive_int(name: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise BenchConfigError(f"--{name} {value!r}: expected a whole number from 1 to {high:,}")
    return value


#: Settings the harness chooses for every worker; ``--worker-env`` may not change them.
HARNESS_SETTINGS = frozenset(
    {
        "STREAMS_ENV", "STREAMS_KAFKA_BOOTSTRAP", "STREAMS_TOPIC_PREFIX", "STREAMS_APP_ID",
        "STREAMS_PARTITIONS", "STREAMS_RETRY_SCHEDULE", "STREAMS_DESTINATION_ALLOWLIST",
        "STREAMS_ADMIN_TOKEN", "STREAMS_SECRETS_KEY", "STREAMS_API_PORT", "STREAMS_STATE_DIR",
    }
)  # fmt: skip


def parse_worker_env(items: Any) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` items of ``--worker-env``, each a valid setting the harness leaves free."""
    from streams.config import Settings
    from streams.errors import ConfigError

    out: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.startswith("STREAMS_"):
            raise BenchConfigError(f"--worker-env {item!r}: expected STREAMS_<NAME>=<value>")
        if key in HARNESS_SETTINGS:
            raise BenchConfigError(f"--worker-env {key}: the harness sets it; use its own option")
        try:
            Settings.from_env({key: value})
        except ConfigError as exc:
            raise BenchConfigError(f"--worker-env {item!r}: {exc}") from None
        out.append((key, value))
    return tuple(out)


def resolve(
    name: str, *, smoke: bool = False, overrides: Mapping[str, Any] | None = None
) -> Params:
    """The parameters of one run: the scenario's size, then the user's overrides, checked."""
    sc = scenario(name)
    base = sc.smoke if smoke else sc.full
    changes: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "rate":
            changes["rates"] = parse_rates(str(value))
        elif key in ("workers", "receivers"):
            changes[key] = _positive_int(
                key, value, MAX_WORKERS if key == "workers" else MAX_RECEIVERS
            )
        elif key in ("events", "fanout", "tenants", "subscriptions", "partitions"):
            changes[key] = _positive_int(key, value, MAX_EVENTS)
        elif key == "kills":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise BenchConfigError(f"--kills {value!r}: expected a whole number from 0 to 100")
            changes[key] = value
        elif key == "duration":
            if not isinstance(value, (int, float)) or not 0 < value <= MAX_DURATION_S:
                raise BenchConfigError(
                    f"--duration {value!r}: expected seconds above 0 and at most {MAX_DURATION_S:g}"
                )
            changes["duration_s"] = float(value)
        elif key == "sub_timeout":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value <= 30
            ):
                raise BenchConfigError(
                    f"--sub-timeout {value!r}: expected seconds above 0, at most 30"
                )
            changes["sub_timeout_s"] = float(value)
        elif key == "rows":
            changes["rows"] = parse_rows(str(value))
        elif key == "idle":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value <= 3600)
            ):
                raise BenchConfigError(f"--idle {value!r}: expected seconds from 0 to 3,600")
            changes["idle_s"] = float(value)
        elif key == "warm":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value <= 600)
            ):
                raise BenchConfigError(f"--warm {value!r}: expected seconds from 0 to 600")
            changes["warm_s"] = float(value)
        elif key == "private_broker":
            changes["private_broker"] = bool(value)
        elif key == "worker_env":
            changes[key] = parse_worker_env(value)
        elif key == "retry_schedule":
            from streams.retry.schedule import parse_schedule

            try:
                parse_schedule(str(value))
            except Exception as exc:
                raise BenchConfigError(f"--retry-schedule {value!r}: {exc}") from None
            changes[key] = str(value)
        else:
            raise BenchConfigError(f"unknown option {key!r}")
    params = dataclasses.replace(base, **changes)
    if params.workers > MAX_WORKERS:
        raise BenchConfigError(f"--workers: at most {MAX_WORKERS}")
    needs_rate = name in (
        "latency",
        "soak",
        "kill-worker",
        "kill-broker",
        "retry-lateness",
        "neighbours",
        "console-live",
    )
    if (needs_rate or sc.fault) and not params.rates:
        raise BenchConfigError(f"scenario {name} needs --rate (deliveries/s)")
    if name == "paced":
        if not params.rows:
            raise BenchConfigError("scenario paced needs --rows (e.g. 1000x10,500x1)")
        for rate, fanout in params.rows:
            if rate * params.duration_s < fanout:
                raise BenchConfigError(
                    f"--rows {rate:g}x{fanout} for --duration {params.duration_s:g}s publishes "
                    "no event: raise the rate or the duration"
                )
    if name in ("latency", "soak"):
        for rate in params.rates:
            if rate * params.duration_s < params.fanout:
                raise BenchConfigError(
                    f"--rate {rate:g} for --duration {params.duration_s:g}s publishes no event "
                    f"(each event makes {params.fanout} deliveries): raise the rate or duration"
                )
    if name == "console-live" and params.workers != 2:
        raise BenchConfigError(
            "console-live runs exactly 2 workers (--workers 2): worker 1 is worker 0's control"
        )
    if name == "kill-worker" and params.workers < 2 and params.kills:
        raise BenchConfigError(
            "kill-worker needs --workers 2 or more (the survivor takes over while one restarts)"
        )
    if name in ("slow", "noisy") and params.subscriptions < params.tenants:
        raise BenchConfigError(
            f"--subscriptions {params.subscriptions} is fewer than --tenants {params.tenants}"
        )
    if name == "neighbours" and params.rates[0] * params.duration_s < 1:
        raise BenchConfigError(
            f"--rate {params.rates[0]:g} for --duration {params.duration_s:g}s publishes no "
            "event of the quiet tenant: raise the rate or duration"
        )
    if name == "neighbours" and params.duration_s < params.burst_s / 2:
        raise BenchConfigError(
            f"--duration {params.duration_s:g}s ends before the first flood burst "
            f"(one every {params.burst_s:g}s, the first after {params.burst_s / 2:g}s)"
        )
    if name == "fanout" and params.subscriptions < params.tenants * params.fanout:
        raise BenchConfigError(
            f"--subscriptions {params.subscriptions} (the table size) must be at least "
            f"tenants x fanout = {params.tenants * params.fanout}"
        )
    return params


def explicit_bootstrap(environ: Mapping[str, str] | None = None) -> str | None:
    """The broker the user pointed at, if any (``STREAMS_KAFKA_BOOTSTRAP`` set and not empty)."""
    env = os.environ if environ is None else environ
    value = env.get("STREAMS_KAFKA_BOOTSTRAP", "").strip()
    return value or None
