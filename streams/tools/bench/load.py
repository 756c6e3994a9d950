"""A run's environment: broker, receivers, stacks of workers, subscriptions, publishing.

:class:`Bench` owns everything one ``streams bench`` run starts and stops it
all (by PID) when the run ends, also on errors. A :class:`Stack` is one
pipeline: its own topic prefix and app id, N ``streams worker`` processes,
and the subscriptions created through its management API. A :class:`Feeder`
publishes events from a thread with :class:`~streams.publish.EventPublisher`
(``publish_many`` in batches), as fast as possible or at a fixed rate. A
:class:`Watch` follows the ledgers and the dead-letter topic while a run goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from streams.config import Settings
from streams.kafka.topics import TopicNames
from streams.tools.bench.config import BenchFailed, Params, Scenario
from streams.tools.bench.ledger import (
    QUIET,
    DlqState,
    DueTimes,
    LedgerState,
    LedgerTail,
    Pair,
    TopicTail,
    check_pairs,
)
from streams.tools.bench.procs import (
    CLK_TCK,
    Broker,
    Processes,
    Receivers,
    Worker,
    cpu_seconds,
    find_broker,
    free_port,
    jit_cpu_seconds,
    rss_mb,
)

#: The event every scenario publishes: small, valid, realistic (about 420 bytes as a body).
EVENT_TYPE = "crawl.run.completed"
EVENT_DATA: dict[str, Any] = {
    "organization_id": "org_bench",
    "run_id": "run_bench",
    "watcher_id": "w_bench",
    "watcher_name": "benchmark watcher",
    "platform": "reddit",
    "status": "ok",
    "errored": False,
    "started_at": "2026-01-01T00:00:00Z",
}

#: Subscriptions created at once through the API.
CREATE_CONCURRENCY = 24


@dataclass(frozen=True, slots=True)
class Sub:
    id: str
    endpoint: str
    tenant: str


class Bench:
    """Everything one run starts; :meth:`close` stops it all."""

    def __init__(
        self,
        scenario: Scenario,
        params: Params,
        *,
        smoke: bool,
        say: Callable[[str], None],
        keep: bool = False,
        base_dir: Path | None = None,
    ) -> None:
        from cryptography.fernet import Fernet

        from streams.signing import generate_secret

        self.scenario = scenario
        self.params = params
        self.smoke = smoke
        self.say = say
        self.keep = keep
        self.id = f"{time.strftime('%m%d%H%M%S')}{secrets.token_hex(2)}"
        root = base_dir or Path(tempfile.gettempdir()) / "streams-bench"
        self.dir = root / f"{scenario.name}-{self.id}"
        self.procs = Processes()
        self.secret = generate_secret("standard")
        self.admin_token = f"bench_{secrets.token_urlsafe(24)}"
        self.secrets_key = Fernet.generate_key().decode()
        self.broker: Broker | None = None
        self.receivers: Receivers | None = None
        self.stacks: list[Stack] = []
        self.notes: list[str] = []
        self.failed = False
        self.started = time.time()
        self.seed = 7
        self.profile = False

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Bench:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()

    def close(self) -> None:
        for stack in self.stacks:
            with contextlib.suppress(Exception):
                stack.stop()
        self.procs.stop_all()
        for stack in self.stacks:
            if not self.keep:
                with contextlib.suppress(Exception):
                    stack.delete_topics()
        if self.broker is not None:
            self.broker.stop()
        if self.failed or self.keep:
            self.say(f"run directory kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- parts ----------------------------------------------------------------------

    def start_broker(self, *, private: bool = False) -> Broker:
        self.broker = find_broker(self.dir, self.say, private=private)
        kind = "private" if self.broker.own else "existing"
        self.say(f"broker: {kind} at {self.broker.bootstrap} (Kafka {self.broker.version})")
        return self.broker

    def start_receivers(self, count: int) -> Receivers:
        self.receivers = Receivers(self.procs, self.dir, count).start()
        self.receivers.configure("*", secret=self.secret)
        self.say(f"receiver: {count} process(es) on 127.0.0.1:{self.receivers.port}")
        return self.receivers

    def stack(
        self,
        name: str,
        *,
        workers: int,
        retry_schedule: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Stack:
        assert self.broker is not None, "start the broker first"
        stack = Stack(
            self, name, workers=workers, retry_schedule=retry_schedule, extra_env=extra_env
        )
        self.stacks.append(stack)
        return stack


class Stack:
    """One pipeline: topics under its own prefix, N workers, its subscriptions."""

    def __init__(
        self,
        bench: Bench,
        name: str,
        *,
        workers: int,
        retry_schedule: str | None,
        extra_env: dict[str, str] | None,
    ) -> None:
        assert bench.broker is not None
        self.bench = bench
        self.name = name
        self.prefix = f"bench.{bench.id}.{name}."
        self.app_id = f"bench-{bench.id}-{name}"
        self.dir = bench.dir / name
        self.retry_schedule = retry_schedule or bench.params.retry_schedule
        self.base_env = {
            "STREAMS_ENV": "development",
            "STREAMS_KAFKA_BOOTSTRAP": bench.broker.bootstrap,
            "STREAMS_TOPIC_PREFIX": self.prefix,
            "STREAMS_APP_ID": self.app_id,
            "STREAMS_PARTITIONS": str(bench.params.partitions),
            "STREAMS_RETRY_SCHEDULE": self.retry_schedule,
            "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8",
            "STREAMS_ADMIN_TOKEN": bench.admin_token,
            "STREAMS_SECRETS_KEY": bench.secrets_key,
            "STREAMS_LOG_LEVEL": "INFO",
            **dict(bench.params.worker_env),
            **(extra_env or {}),
        }
        self.settings = Settings.from_env(self.base_env)
        self.names = TopicNames(self.prefix)
        self.workers: list[Worker] = [self._worker(i) for i in range(workers)]
        self.subs: list[Sub] = []
        self.by_tenant: dict[str, list[Sub]] = {}
        self.created = 0
        self.auto_restart = False
        self.unexpected_exits = 0

    def _worker(self, index: int) -> Worker:
        state = self.dir / f"worker-{index}"
        port = free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("STREAMS_")}
        env = {
            **inherited,
            **self.base_env,
            "STREAMS_STATE_DIR": str(state),
            "STREAMS_API_PORT": str(port),
            "STREAMS_API_BIND": "127.0.0.1",
        }
        log_nodes = self.bench.params.log_nodes
        if log_nodes and index >= log_nodes and "STREAMS_DELIVERY_LOG" not in self.base_env:
            env["STREAMS_DELIVERY_LOG"] = "off"  # delivery-only: one log node indexes
        return Worker(
            index=index,
            env=env,
            state_dir=state,
            log=self.dir / f"worker-{index}.log",
            port=port,
            procs=self.bench.procs,
        )

    # -- topics and workers ---------------------------------------------------------

    def create_topics(self) -> None:
        from streams.kafka.topics import create_topics

        self.dir.mkdir(parents=True, exist_ok=True)
        create_topics(self.settings)

    def delete_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith(self.prefix) or t.startswith(self.app_id)
        ]
        if names:
            for fut in admin.delete_topics(names, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)

    def start(self) -> list[float]:
        """Create the topics and start every worker; seconds each took to be healthy."""
        self.create_topics()
        for w in self.workers:
            w.start(wait=False)
        took = [w.wait_healthy() for w in self.workers]
        self.bench.say(
            f"[{self.name}] {len(self.workers)} worker(s) healthy "
            f"(ports {', '.join(str(w.port) for w in self.workers)})"
        )
        return took

    def add_worker(self) -> Worker:
        worker = self._worker(len(self.workers))
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def metric_totals(self, *names: str) -> dict[str, float]:
        """Each named sample of ``/metrics`` summed over the running workers and all labels.

        A worker that does not answer counts as nothing (its counters are lost with it)."""
        from prometheus_client.parser import text_string_to_metric_families

        totals = dict.fromkeys(names, 0.0)
        for w in self.workers:
            try:
                text = httpx.get(
                    w.base_url + "/metrics",
                    headers={"Authorization": f"Bearer {self.bench.admin_token}"},
                    timeout=10,
                ).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in totals:
                        totals[sample.name] += sample.value
        return totals

    def supervise(self) -> None:
        """Restart workers that exited on their own (e.g. while the broker was down)."""
        for w in self.workers:
            if w.exited():
                self.unexpected_exits += 1
                code = w.proc.returncode if w.proc else "?"
                self.bench.say(
                    f"[{self.name}] worker {w.index} exited with {code}"
                    + ("; restarting" if self.auto_restart else "")
                )
                if self.auto_restart:
                    w.restarts += 1
                    w.start(wait=False)
                else:
                    raise BenchFailed(f"worker {w.index} exited during the run:\n{w.tail()}")

    @property
    def pids(self) -> list[int]:
        return [p for p in (w.pid for w in self.workers) if p is not None]

    # -- subscriptions ---------------------------------------------------------------

    def create_subscriptions(
        self,
        plan: list[tuple[str, str]],
        *,
        body: dict[str, Any] | None = None,
        concurrency: int = CREATE_CONCURRENCY,
        progress_every: int = 10_000,
        track: bool = True,
    ) -> list[Sub]:
        """Create one subscription per (tenant, endpoint name) through the management API.

        ``track=False``: not part of the stack's expected pairs (e.g. a dead endpoint
        several subscriptions share)."""
        assert self.bench.receivers is not None
        receivers = self.bench.receivers
        base = self.workers[0].base_url
        extra = dict(body or {})
        started = time.monotonic()

        async def create_all() -> list[Sub]:
            sem = asyncio.Semaphore(concurrency)
            done = 0
            async with httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {self.bench.admin_token}"},
                timeout=60,
                limits=httpx.Limits(max_connections=concurrency),
            ) as client:

                async def one(tenant: str, endpoint: str) -> Sub:
                    nonlocal done
                    async with sem:
                        resp = await client.post(
                            "/v1/subscriptions",
                            json={
                                "tenant_id": tenant,
                                "url": receivers.url(endpoint),
                                "event_types": [EVENT_TYPE],
                                "secret": self.bench.secret,
                                **extra,
                            },
                        )
                    if resp.status_code != 201:
                        raise BenchFailed(
                            f"creating a subscription failed: {resp.status_code} {resp.text[:300]}"
                        )
                    done += 1
                    if progress_every and done % progress_every == 0:
                        self.bench.say(f"[{self.name}] {done:,} subscriptions created")
                    return Sub(resp.json()["id"], endpoint, tenant)

                return list(await asyncio.gather(*(one(t, e) for t, e in plan)))

        subs = asyncio.run(create_all())
        self.created += len(subs)
        if track:
            for sub in subs:
                self.subs.append(sub)
                self.by_tenant.setdefault(sub.tenant, []).append(sub)
        took = time.monotonic() - started
        self.bench.say(f"[{self.name}] {len(subs):,} subscriptions created in {took:.1f}s")
        self.wait_subscriptions(self.created)
        return subs

    def wait_subscriptions(self, count: int, timeout_s: float = 300.0) -> None:
        """Wait until every running worker holds ``count`` subscriptions or more."""
        deadline = time.monotonic() + timeout_s
        for w in self.workers:
            if w.pid is None:
                continue
            while int(w.health().get("subscriptions") or 0) < count:
                if time.monotonic() > deadline:
                    raise BenchFailed(f"worker {w.index} did not see {count} subscriptions")
                time.sleep(0.2)

    def expected(self, events: Iterable[tuple[str, str]]) -> Iterator[Pair]:
        """(event id, endpoint) of every subscription each (event id, tenant) matches."""
        for event_id, tenant in events:
            for sub in self.by_tenant.get(tenant, ()):
                yield (event_id, sub.endpoint)

    def watch(self, *, keep_attempts: bool = False, retry_tiers: bool = False) -> Watch:
        assert self.bench.receivers is not None
        return Watch(
            self, self.bench.receivers, keep_attempts=keep_attempts, retry_tiers=retry_tiers
        )


def tenant_plan(tenants: int, per_tenant: int, tag: str) -> list[tuple[str, str]]:
    """(tenant, endpoint name) pairs: ``per_tenant`` endpoints in each of ``tenants``."""
    return [
        (f"t{t:03d}", f"{tag}.t{t:03d}.s{k:03d}") for t in range(tenants) for k in range(per_tenant)
    ]


def event_plan(count: int, tenants: list[str], tag: str) -> list[tuple[str, str]]:
    """(event id, tenant) round-robin over ``tenants``."""
    return [(f"{tag}-{i}", tenants[i % len(tenants)]) for i in range(count)]


# -- publishing -----------------------------------------------------------------------


class Feeder(threading.Thread):
    """Publish (event id, tenant) pairs with EventPublisher.publish_many, in a thread.

    ``rate`` is events per second (None: as fast as possible, in batches of
    ``batch``). A batch the broker does not confirm is sent again, with the
    same event ids, until ``deadline_s`` (so a broker restart costs time, not
    events; the receiver counts any resulting duplicates).
    """

    def __init__(
        self,
        settings: Settings,
        plan: list[tuple[str, str]],
        *,
        rate: float | None = None,
        batch: int = 500,
        deadline_s: float = 3600.0,
    ) -> None:
        super().__init__(name="bench-feeder", daemon=True)
        self.settings = settings
        self.plan = plan
        self.rate = rate
        self.batch = batch
        self.deadline_s = deadline_s
        self.sent_at: dict[str, float] = {}
        self.confirmed: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.retried_batches = 0
        self.started_at = 0.0
        self.finished_at = 0.0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        from streams.errors import StreamsError
        from streams.publish import EventPublisher

        self.started_at = time.time()
        try:
            with EventPublisher(self.settings, extra_config={"logger": QUIET}) as pub:
                # Latency is timed from the hand-over to publish_many: do not count the
                # producer's own connection and metadata lookup (~0.5 s) in the first batch.
                pub.connect()
                self._feed(pub)
        except StreamsError as exc:
            self.errors.append(str(exc))
        except Exception as exc:  # surfaced by the harness, never swallowed
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.finished_at = time.time()

    def _feed(self, pub: Any) -> None:
        from streams.errors import PublishError

        n = len(self.plan)
        i = 0
        t0 = time.monotonic()
        hard_stop = t0 + self.deadline_s
        while i < n and not self._halt.is_set() and time.monotonic() < hard_stop:
            if self.rate is not None:
                due = min(n, int((time.monotonic() - t0) * self.rate) + 1)
                if due <= i:
                    wait = (i + 1) / self.rate - (time.monotonic() - t0)
                    time.sleep(min(0.01, max(0.0005, wait)))
                    continue
                take = min(due - i, self.batch)
            else:
                take = min(self.batch, n - i)
            chunk = self.plan[i : i + take]
            events = [pub.build(EVENT_TYPE, t, EVENT_DATA, event_id=e) for e, t in chunk]
            while not self._halt.is_set():
                now = time.time()
                for e, _t in chunk:
                    self.sent_at.setdefault(e, now)
                try:
                    pub.publish_many(events)
                    break
                except PublishError as exc:
                    self.retried_batches += 1
                    if len(self.errors) < 20:
                        self.errors.append(str(exc))
                    if time.monotonic() > hard_stop:
                        raise
                    time.sleep(1.0)
            else:
                return
            self.confirmed.extend(chunk)
            i += take


# -- watching ----------------------------------------------------------------------------


class Watch:
    """Follows the ledgers and the DLQ (and optionally the retry tiers) of one stack."""

    def __init__(
        self, stack: Stack, receivers: Receivers, *, keep_attempts: bool, retry_tiers: bool
    ) -> None:
        self.stack = stack
        self.tail = LedgerTail(receivers.ledgers, from_end=True)
        self.ledger = LedgerState(
            endpoints={s.endpoint: s.id for s in stack.subs}, keep_attempts=keep_attempts
        )
        self.dlq = DlqState(sub_endpoints={s.id: s.endpoint for s in stack.subs})
        self._dlq_tail = TopicTail(stack.settings, stack.names.dlq)
        self.due = DueTimes()
        self._retry_tails: list[TopicTail] = []
        if retry_tiers:
            from streams.kafka.topics import retry_tiers as tiers_of

            self._retry_tails = [
                TopicTail(stack.settings, stack.names.retry(t)) for t in tiers_of(stack.settings)
            ]

    def only(self, event_ids: Iterable[str]) -> None:
        """Count only these events (warm-up and earlier phases are someone else's)."""
        events = set(event_ids)
        self.ledger.events = events
        self.dlq.events = events

    def register(self, subs: Iterable[Sub]) -> None:
        for s in subs:
            self.ledger.endpoints[s.endpoint] = s.id
            self.dlq.sub_endpoints[s.id] = s.endpoint

    def poll(self) -> None:
        self.tail.poll(self.ledger.add)
        for msg in self._dlq_tail.poll():
            self.dlq.add(msg.value())

    def poll_retries(self) -> None:
        for tail in self._retry_tails:
            for msg in tail.poll():
                self.due.add(msg.value())

    def resolved(self) -> int:
        """Pairs delivered or parked (an upper bound until the final check)."""
        parked_only = sum(1 for p in self.dlq.parked if p not in self.ledger.first_ok)
        return self.ledger.delivered_pairs + parked_only

    def close(self) -> None:
        for tail in (self._dlq_tail, *self._retry_tails):
            with contextlib.suppress(Exception):
                tail.close()

    def wait_resolved(
        self,
        expected_count: int,
        *,
        timeout_s: float,
        stall_s: float | None = None,
        feeder: Feeder | None = None,
        tick: Callable[[], None] | None = None,
        label: str = "",
        every_s: float = 10.0,
        interval_s: float = 0.5,
        count: Callable[[], int] | None = None,
    ) -> bool:
        """Poll until ``expected_count`` pairs are resolved and the feeder finished.

        Gives up after ``timeout_s``, or once nothing was resolved for ``stall_s``
        after publishing ended (what is left then is reported as lost). ``count``
        replaces what is counted (default: pairs delivered or parked)."""
        started = time.monotonic()
        deadline = started + timeout_s
        next_say = started + every_s
        last_done, last_progress = -1, started
        while time.monotonic() < deadline:
            self.poll()
            if tick is not None:
                tick()
            self.stack.supervise()
            feeding = feeder is not None and feeder.is_alive()
            done = count() if count is not None else self.resolved()
            now = time.monotonic()
            if not feeding and done >= expected_count:
                return True
            if done != last_done or feeding:
                last_done, last_progress = done, now
            elif stall_s is not None and now - last_progress > stall_s:
                self.stack.bench.say(
                    f"[{self.stack.name}{label}] no progress for {stall_s:g}s; giving up"
                )
                break
            if now >= next_say:
                next_say += every_s
                self.stack.bench.say(
                    f"[{self.stack.name}{label}] {done:,}/{expected_count:,} pairs resolved"
                    + (" (publishing)" if feeding else "")
                )
            time.sleep(interval_s)
        self.poll()
        return False

    def check(self, expected: Iterable[Pair]) -> dict[str, Any]:
        from streams.records import delivery_id_for

        pairs = check_pairs(expected, self.ledger, self.dlq)
        result = pairs.as_dict()
        result["lost_sample"] = [
            {
                "event_id": event_id,
                "endpoint": endpoint,
                "subscription_id": self.ledger.endpoints.get(endpoint),
                "delivery_id": delivery_id_for(event_id, self.ledger.endpoints.get(endpoint, "")),
                "requests_seen": (event_id, endpoint) in self.ledger.first_seen,
            }
            for event_id, endpoint in pairs.lost_sample
        ]
        result.update(
            {
                "duplicates": self.ledger.duplicate_count,
                "pairs_with_duplicates": len(self.ledger.duplicates),
                "invalid_signatures": self.ledger.invalid_signatures,
                "unsigned_requests": self.ledger.unsigned,
                "webhook_id_mismatches": self.ledger.webhook_id_mismatch,
                "requests": self.ledger.requests,
                "responses": dict(self.ledger.statuses.most_common(12)),
                "dlq_reasons": dict(self.dlq.reasons),
            }
        )
        return result


def checks_ok(check: dict[str, Any]) -> bool:
    return bool(
        check.get("lost_pairs", 1) == 0
        and check.get("invalid_signatures", 1) == 0
        and check.get("webhook_id_mismatches", 1) == 0
    )


# -- CPU and memory ------------------------------------------------------------------------


@dataclass
class CpuMeter:
    """CPU seconds per role (workers, receivers, broker, harness) over a window."""

    roles: Callable[[], dict[str, list[int]]]
    start: dict[int, float] = field(default_factory=dict)
    started_at: float = 0.0
    self_start: float = 0.0
    machine_start: float | None = None
    #: CPU seconds by role over the last window (set by :meth:`end`).
    used: dict[str, float] = field(default_factory=dict)
    #: The broker's JIT compiler threads at :meth:`begin` (part of its CPU, reported apart:
    #: a broker started for the run spends its first minutes compiling).
    jit_start: float | None = None

    def begin(self) -> None:
        self.started_at = time.monotonic()
        self.start = {}
        self.used = {}
        for pids in self.roles().values():
            for pid in pids:
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self.start[pid] = cpu
        self.self_start = _self_cpu()
        self.machine_start = machine_busy_seconds()
        self.jit_start = self._broker_jit()

    def _broker_jit(self) -> float | None:
        pids = self.roles().get("broker") or []
        return jit_cpu_seconds(pids[0]) if pids else None

    def end(self) -> dict[str, Any]:
        wall = max(1e-9, time.monotonic() - self.started_at)
        out: dict[str, Any] = {"wall_s": round(wall, 1)}
        total = 0.0
        for role, pids in self.roles().items():
            used = 0.0
            for pid in pids:
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    used += cpu - self.start.get(pid, 0.0)
            total += used
            self.used[role] = used
            out[f"{role}_cores"] = round(used / wall, 2)
        jit = self._broker_jit()
        if jit is not None and self.jit_start is not None:
            self.used["broker_jit"] = max(0.0, jit - self.jit_start)
            out["broker_jit_cores"] = round(self.used["broker_jit"] / wall, 3)
        harness = _self_cpu() - self.self_start
        out["harness_cores"] = round(harness / wall, 2)
        out["total_cores"] = round((total + harness) / wall, 2)
        machine = machine_busy_seconds()
        if machine is not None and self.machine_start is not None:
            busy = (machine - self.machine_start) / wall
            out["machine_cores"] = round(busy, 2)
            # Everything else on the machine (other users' work): a disturbed run shows here.
            out["others_cores"] = round(max(0.0, busy - (total + harness) / wall), 2)
        return out


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in first[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLK_TCK


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def roles_of(bench: Bench, stack: Stack) -> Callable[[], dict[str, list[int]]]:
    def roles() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"workers": stack.pids}
        if bench.receivers is not None:
            out["receivers"] = bench.receivers.pids
        if bench.broker is not None and bench.broker.pid is not None:
            out["broker"] = [bench.broker.pid]
        return out

    return roles


def memory_of(pids: list[int]) -> list[float | None]:
    return [None if (m := rss_mb(p)) is None else round(m, 1) for p in pids]
