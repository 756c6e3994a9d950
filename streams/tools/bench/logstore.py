"""What the delivery-log store costs: indexing CPU, query latency, disk per attempt.

Four steps, each bounded in count and time::

    python -m streams.tools.bench.logstore index [--rate 5000] [--seconds 30] [--store PATH]
    python -m streams.tools.bench.logstore fill --store PATH [--attempts N] [--batch 5000]
    python -m streams.tools.bench.logstore query --store PATH [--samples 2000]
    python -m streams.tools.bench.logstore disk --store PATH
    python -m streams.tools.bench.logstore write --store PATH [--batches 20] [--batch 10000]
    python -m streams.tools.bench.logstore fixed --store PATH [--batches 3] [--make-only|--prepare]

- ``index``: a producer process writes attempt records at ``--rate`` to a topic of
  the run's own while a :class:`~streams.log.indexer.LogIndexer` in this process
  follows it; reports this process's CPU (the indexer's thread and librdkafka's)
  per second and per attempt, and the lag at the end. ``--store`` indexes into an
  existing store (for example a filled one) instead of a new one.
- ``fill``: writes synthetic attempts straight into a store through the same
  write path as the indexer (encoded records, decoded and batched), spread over 30
  days: 200 tenants, 2,000 subscriptions, 20 event types; 90% delivered at once, 7%
  after retries, 3% given up after three attempts.
- ``query``: the p50/p99/max of filtered pages (tenant with a status, subscription,
  event type, time range, the second page of a cursor) and of a delivery's history,
  after a warm-up, on the store as it is.
- ``disk``: the store's bytes on disk per million attempts (after a checkpoint).
- ``write``: the writer alone, without Kafka: batches of new attempts (made before
  the clock starts, as the indexer's consumer would hand them over, two seconds of
  5,000/s each) written straight into a store with ``LogWriter.write``; reports the
  process's CPU seconds per attempt (user and system) and the WAL pages each batch
  wrote. Options set the writer's pragmas, for A/B runs on copies of one store.
- ``fixed``: a workload that is the same in every run, for counting instructions
  with valgrind's cachegrind (times and ids fixed; no clock, no collector tuning,
  no reference loop): opens the writer, makes ``--batches`` of 20,000 attempts
  and writes them. ``--make-only`` makes them without writing: the difference of
  the two counts is the writer's, per attempt, to a fraction of a percent from run
  to run, where CPU time on this machine moves by a third. ``--prepare`` opens a
  filled store once as ``index`` does before it measures, so the counts that
  follow (each on a fresh copy of it) hold no upgrade, backlog or filter build.

The broker is the one at ``STREAMS_KAFKA_BOOTSTRAP`` when it answers, else a private
local broker started (and stopped) for the run. Results go to stdout; the analysis
lives in docs/benchmarks.md ("The delivery-log store").
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.log.store import PAGE_INDEXES
from streams.ops import gc_tuning
from streams.records import Attempt, delivery_id_for
from streams.tools.bench.machine import MachineWatch

TENANTS = 200
SUBSCRIPTIONS = 2000
EVENT_TYPES = 20
SPAN_S = 30 * 86_400
#: Partitions the fill writes under, apart from any real topic's (0..n), so an index
#: run into a filled store follows its topic from the start.
FILL_PARTITION_BASE = 1000


def synthetic(n: int, rnd: random.Random, at: float) -> list[Attempt]:
    """The attempts of delivery ``n`` (1 to 3), starting at ``at``."""
    sub = rnd.randrange(SUBSCRIPTIONS)
    tenant = f"tenant_{sub % TENANTS:03d}"
    sub_id = f"sub_{sub:05d}_{'x' * 20}"  # as long as a real id
    base = Attempt(
        delivery_id=delivery_id_for(f"evt_{n}", sub_id),
        event_id=f"evt_{uuid.UUID(int=rnd.getrandbits(128)).hex}",
        event_type=f"type.{rnd.randrange(EVENT_TYPES):02d}",
        tenant_id=tenant,
        subscription_id=sub_id,
        attempt=1,
        at=at,
        duration_ms=round(rnd.lognormvariate(3.5, 0.8), 3),
        outcome="delivered",
        status=200,
        response_snippet='{"ok":true}',
        source_topic="deliveries",
        source_partition=n % 6,
        source_offset=n,
    )
    fate = rnd.random()
    if fate < 0.90:
        return [base]
    failed = Attempt(
        **{
            **base.to_dict(),
            "outcome": "retry",
            "status": 503,
            "error": "HTTP 503",
            "response_snippet": "upstream busy",
        }
    )
    if fate < 0.97:
        second = Attempt(**{**base.to_dict(), "attempt": 2, "at": at + 5.0})
        return [failed, second]
    gone = [Attempt(**{**failed.to_dict(), "attempt": k, "at": at + 5.0 * k}) for k in (2, 3)]
    return [failed, *gone[:-1], Attempt(**{**gone[-1].to_dict(), "outcome": "give_up"})]


@dataclass
class RecordStream:
    """Records of the attempts topic as the ``write`` and ``fixed`` steps make them:
    deliveries numbered from ``n``, 5,000 a second from ``at``, over six partitions
    (numbered from FILL_PARTITION_BASE) from ``offsets``."""

    rnd: random.Random
    n: int
    at: float
    offsets: list[int]

    def batch(self, size: int) -> list[tuple[int, int, bytes | None]]:
        """At least ``size`` records (a delivery's attempts are never split)."""
        records: list[tuple[int, int, bytes | None]] = []
        while len(records) < size:
            for a in synthetic(self.n, self.rnd, self.at):
                p = self.n % 6
                records.append((FILL_PARTITION_BASE + p, self.offsets[p], a.to_bytes()))
                self.offsets[p] += 1
            self.n += 1
            self.at += 1 / 5000
        return records


# -- fill ---------------------------------------------------------------------------------


def fill(path: Path, attempts: int, max_minutes: float, batch: int = 5000) -> None:
    from streams.log.store import LogWriter

    writer = LogWriter(path, "bench.attempts")
    rnd = random.Random(1)  # noqa: S311 - benchmark data
    now = time.time()
    step = SPAN_S / max(attempts / 1.1, 1)  # deliveries spread over the span
    offsets = [writer.positions().get(FILL_PARTITION_BASE + p, 0) for p in range(6)]
    written = sum(offsets)
    n = written
    started = time.monotonic()
    deadline = started + max_minutes * 60
    records: list[tuple[int, int, bytes | None]] = []
    last_report = started
    while written < attempts and time.monotonic() < deadline:
        for a in synthetic(n, rnd, now - SPAN_S + n * step):
            p = n % 6
            records.append((FILL_PARTITION_BASE + p, offsets[p], a.to_bytes()))
            offsets[p] += 1
        n += 1
        if len(records) >= batch:
            writer.write(records)
            written += len(records)
            records = []
            if written // PRUNE_EVERY != (written - batch) // PRUNE_EVERY:
                # As a live node's clock would: minute buckets a day behind go.
                _prune(writer, now - SPAN_S + n * step, SPAN_S + 86_400)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                rate = written / (last_report - started)
                print(f"  {written:,} attempts, {rate:,.0f}/s", flush=True)
    if records:
        writer.write(records)
        written += len(records)
    _prune(writer, time.time(), SPAN_S + 86_400)
    writer.close()
    seconds = time.monotonic() - started
    print(f"filled {path}: {written:,} attempts in {seconds:.0f}s ({written / seconds:,.0f}/s)")
    if written < attempts:
        print(f"stopped at --max-minutes {max_minutes:g}: run again to add more")


#: Attempts between two prunings of a fill.
PRUNE_EVERY = 200_000


def _prune(writer: Any, now: float, retention_s: float) -> None:
    for _ in range(1_000_000):  # bounded: each round deletes up to 5,000 rows
        if not writer.prune(now, retention_s, 5000).more:
            return


# -- write ------------------------------------------------------------------------------


def _wal_header(path: Path) -> tuple[int, bytes, int]:
    """(frames in the WAL, its salt, frames copied into the database) from the WAL index
    (the ``-shm`` file's header, SQLite's WalIndexHdr and WalCkptInfo)."""
    import struct

    shm = path.with_name(path.name + "-shm")
    try:
        with shm.open("rb") as f:
            head = f.read(136)
    except FileNotFoundError:
        return 0, b"", 0
    if len(head) < 136:
        return 0, b"", 0
    (max_frame,) = struct.unpack_from("=I", head, 16)
    (backfill,) = struct.unpack_from("=I", head, 96)
    return max_frame, head[32:40], backfill


def _io() -> dict[str, int]:
    """This process's read and write calls and bytes so far (Linux), {} elsewhere."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


#: Indexes the writer never reads through, which ``write --without-index`` may drop to
#: see what keeping each one up costs (``d_time`` and the ``dkeys`` tables are read by the
#: writer).
DROPPABLE = (*(i for i in PAGE_INDEXES if i != "d_time"), "b_scope", "b_failing")


def _drop_indexes(path: Path, names: Sequence[str]) -> None:
    """Drop ``names`` from the store at ``path`` *for good*, and from this process's
    schema so opening the writer does not build them again. Run it on a copy."""
    from streams.log import store as log_store

    if not names:
        return
    unknown = sorted(set(names) - set(DROPPABLE))
    if unknown:
        raise SystemExit(f"--without-index: {unknown} not among {', '.join(DROPPABLE)}")
    statements = log_store._SCHEMA.split(";")
    log_store._SCHEMA = ";".join(
        st for st in statements if not any(f"EXISTS {n} ON" in st for n in names)
    )
    conn = sqlite3.connect(path)
    try:
        for name in names:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.commit()
    finally:
        conn.close()
    print(f"dropped for this run and from the store: {', '.join(names)}", flush=True)


def write_bench(
    path: Path,
    batches: int,
    batch: int,
    warmup: int,
    seed: int,
    checkpoint_every: int,
    query_samples: int = 0,
    without: Sequence[str] = (),
    worker_gc: bool = True,
) -> None:
    from streams.log import store as log_store

    _drop_indexes(path, without)
    if worker_gc:
        gc_tuning.tune()
    writer = log_store.LogWriter(path, _topic_of(path) or "bench.attempts")
    conn = writer._conn
    pragmas = {
        name: conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("cache_size", "mmap_size", "wal_autocheckpoint", "journal_size_limit")
    }
    print(f"store {path}: {writer._next_seq - 1:,} deliveries; {pragmas}", flush=True)
    rnd = random.Random(seed)  # noqa: S311 - benchmark data
    stream = RecordStream(
        rnd,
        (seed + 1) * 10**10,  # delivery numbers no fill or other run uses
        time.time(),
        [writer.positions().get(FILL_PARTITION_BASE + p, 0) for p in range(6)],
    )

    def make() -> list[tuple[int, int, bytes | None]]:
        return stream.batch(batch)

    per_batch: list[tuple[float, float, int, bool]] = []
    merges = merged = 0  # merges of the delivery id index's delta level, in measured batches
    io0: dict[str, int] = {}
    watch = MachineWatch()
    for i in range(warmup + batches):
        if i == warmup:
            io0 = _io()
            watch.start()
        if i > warmup and (i - warmup) % 4 == 0:
            watch.sample()  # between batches: not in any batch's CPU
        records = make()
        before = _wal_header(path)
        t0 = os.times()
        result = writer.write(records)
        if checkpoint_every and (i + 1) % checkpoint_every == 0:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        t1 = os.times()
        after = _wal_header(path)
        frames = after[0] - (0 if after[1] != before[1] else before[0])
        checkpointed = after[2] != before[2]
        if i >= warmup:
            per_batch.append((t1.user - t0.user, t1.system - t0.system, frames, checkpointed))
            merges += result.merged > 0
            merged += result.merged
    io1 = _io()
    watch.stop()
    wal = path.with_name(path.name + "-wal")
    wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    if io0:
        print(
            "  per batch: "
            + ", ".join(
                f"{k} {(io1[k] - io0[k]) / batches / (1e6 if 'char' in k else 1):,.1f}"
                + (" MB" if "char" in k else "")
                for k in ("rchar", "wchar", "syscr", "syscw")
            )
        )
    if query_samples:
        # Queries at the WAL's largest: batches without checkpoints until it holds the
        # pages that trigger one, then the query step with the writer still open.
        limit = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        for _ in range(100):
            if _wal_header(path)[0] >= limit:
                break
            writer.write(make())
        print(f"queries with {_wal_header(path)[0]:,} frames in the WAL:")
        query(path, query_samples)
    writer.close()
    total = batches * batch
    user = sum(b[0] for b in per_batch)
    system = sum(b[1] for b in per_batch)
    counts = sorted(b[2] for b in per_batch)
    print(
        f"wrote {batches} batches of {batch:,} (after {warmup} unmeasured): "
        f"{1e6 * (user + system) / total:.1f} us of CPU per attempt "
        f"(user {1e6 * user / total:.1f}, system {1e6 * system / total:.1f}); "
        f"WAL frames per batch median {counts[len(counts) // 2]:,} "
        f"(min {counts[0]:,}, max {counts[-1]:,}), per attempt {sum(counts) / total:.2f}; "
        f"{merges} merges of the id index ({merged:,} keys); "
        f"{sum(b[3] for b in per_batch)} checkpoints; "
        f"WAL file {wal_mb:.0f} MB at the end"
    )
    per = sorted(1e6 * (b[0] + b[1]) / batch for b in per_batch)
    print(f"  per batch, us per attempt: {' '.join(f'{x:.0f}' for x in per)}")
    print(f"  {_gc_label(worker_gc)}; {watch.describe(1e6 * (user + system) / total)}")


def _gc_label(worker_gc: bool) -> str:
    return (
        f"collector as in a worker (thresholds {gc.get_threshold()}, start-up frozen)"
        if worker_gc
        else f"collector at CPython's defaults {gc.get_threshold()}"
    )


# -- query --------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))]

    return f"p50 {rank(0.5):6.2f} ms  p99 {rank(0.99):6.2f} ms  max {ordered[-1]:6.2f} ms"


def query(path: Path, samples: int) -> None:
    from streams.log.store import Cursor, DeliveryQuery, LogReader

    reader = LogReader(path)
    rnd = random.Random(2)  # noqa: S311 - benchmark data
    figures = reader.figures(None)
    print(f"store: {figures['attempts']:,} attempts of {figures['deliveries']:,} deliveries")
    ids = [
        row[0][0]
        for _ in range(500)
        if (
            row := reader._all(
                "SELECT delivery_id FROM deliveries WHERE seq = ?",
                (rnd.randrange(1, figures["deliveries"] + 1),),
            )
        )
    ]
    now = time.time()

    def tenant() -> str:
        return f"tenant_{rnd.randrange(TENANTS):03d}"

    def sub() -> str:
        return f"sub_{rnd.randrange(SUBSCRIPTIONS):05d}_{'x' * 20}"

    shapes: dict[str, Callable[[], DeliveryQuery]] = {
        "tenant, newest 50": lambda: DeliveryQuery(tenant_id=tenant(), limit=50),
        "tenant + failed": lambda: DeliveryQuery(tenant_id=tenant(), status="failed", limit=50),
        "tenant + 503": lambda: DeliveryQuery(tenant_id=tenant(), status="503", limit=50),
        "tenant + event type": lambda: DeliveryQuery(
            tenant_id=tenant(), event_type=f"type.{rnd.randrange(EVENT_TYPES):02d}", limit=50
        ),
        "subscription + delivered": lambda: DeliveryQuery(
            subscription_id=sub(), status="delivered", limit=50
        ),
        "tenant + since 1-20 days": lambda: DeliveryQuery(
            tenant_id=tenant(), since=now - 86_400 * rnd.uniform(1, 20), limit=50
        ),
        "admin, failed": lambda: DeliveryQuery(status="failed", limit=50),
    }
    for name, make in shapes.items():
        for _ in range(20):  # warm-up
            reader.page(make())
        took = []
        for _ in range(samples):
            q = make()
            t = time.perf_counter()
            page = reader.page(q)
            if page.next_cursor and rnd.random() < 0.5:  # half of them: the second page
                reader.page(q, Cursor.decode(page.next_cursor))
            took.append((time.perf_counter() - t) * 1000)
        print(f"{name:28} {_percentiles(took)}")
    took = []
    for _ in range(samples):
        t = time.perf_counter()
        found = reader.delivery(rnd.choice(ids))
        took.append((time.perf_counter() - t) * 1000)
        assert found is not None
    print(f"{'delivery history':28} {_percentiles(took)}")
    took = []
    for _ in range(min(samples, 200)):
        t = time.perf_counter()
        reader.windows("tenant", tenant(), now)
        took.append((time.perf_counter() - t) * 1000)
    print(f"{'tenant stats (5m..7d)':28} {_percentiles(took)}")
    reader.close()


def charts(path: Path, subscriptions: int, rounds: int = 3) -> None:
    """How long the console's endpoint lists take to read their 24-hour charts: one
    ``LogReader.health`` of ``subscriptions`` subscriptions, after a warm-up, as the
    lists read it and with the newest error the API adds; and that error's search
    alone where it finds nothing (an endpoint that never failed)."""
    from streams.log.store import LogReader

    reader = LogReader(path)
    ids = [
        k
        for (k,) in reader._all(
            "SELECT DISTINCT key FROM buckets INDEXED BY b_scope WHERE kind = 'sub' LIMIT ?",
            (subscriptions,),
        )
    ]
    newest = reader._all("SELECT coalesce(max(start), 0) FROM buckets WHERE span = 3600")
    now = newest[0][0] + 1800.0  # the store's newest hour, as if it were now
    # An endpoint that never failed: its newest-error search reads every hour bucket it
    # has (here: one whose error is never matched, on the same rows).
    never = (
        "SELECT error_at FROM buckets INDEXED BY b_scope WHERE kind = 'sub' AND key = ? "
        "AND span = 3600 AND error_at IS NOT NULL AND error_at < 0 ORDER BY start DESC LIMIT 1"
    )
    for label, run in (
        ("as the endpoint lists read them", lambda: reader.health(ids, now, newest_error=False)),
        ("with each one's newest error", lambda: reader.health(ids, now)),
        (
            "the newest-error search alone, had none ever failed",
            lambda: [reader._all(never, (k,)) for k in ids],
        ),
    ):
        run()
        took = []
        for _ in range(rounds):
            start = time.perf_counter()
            run()
            took.append(1000 * (time.perf_counter() - start))
        print(
            f"24-hour charts of {len(ids):,} subscriptions, {label}: "
            + " / ".join(f"{ms:.0f}" for ms in took)
            + f" ms ({min(took) / max(len(ids), 1):.3f} ms a subscription at best)"
        )
    reader.close()


def disk(path: Path) -> None:
    from streams.log.store import LogReader, store_files

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = (
        {
            name: n
            for name, n in conn.execute(
                "SELECT name, count(*) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        }
        if _has_dbstat(conn)
        else {}
    )
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    # Pages pruning freed stay in the file, and new attempts reuse them.
    live = page_size * (
        conn.execute("PRAGMA page_count").fetchone()[0]
        - conn.execute("PRAGMA freelist_count").fetchone()[0]
    )
    conn.close()
    reader = LogReader(path)
    figures = reader.figures(None)
    reader.close()
    total = sum(p.stat().st_size for p in store_files(path) if p.exists())
    attempts = max(figures["attempts"], 1)
    print(
        f"{total / 1e9:.2f} GB of files, {live / 1e9:.2f} GB in use, for "
        f"{figures['attempts']:,} attempts: {live / attempts:,.0f} MB per million attempts"
    )
    for name, n in list(pages.items())[:8]:
        print(f"  {name:18} {n * page_size / attempts:7.0f} B per attempt")


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1")
    except sqlite3.Error:
        return False
    return True


# -- index --------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, rate: float, seconds: float, seed: int) -> None:
    """Write attempts at ``rate`` per second for ``seconds`` (run as its own process), of
    deliveries of their own (``seed``): a run into a store used before adds new ones."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    rnd = random.Random(seed)  # noqa: S311 - benchmark data
    start = time.perf_counter()
    sent = 0
    n = seed
    while (now := time.perf_counter()) - start < seconds:
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)
        for a in synthetic(n, rnd, time.time()):
            producer.produce(topic, a.to_bytes(), a.delivery_id.encode())
            sent += 1
        n += 1
        producer.poll(0)
    producer.flush(30)
    print(sent)


@dataclass
class PruneBacklog:
    """What :func:`prune_backlog` did, and its CPU."""

    open_cpu_s: float = 0.0
    prune_cpu_s: float = 0.0
    deliveries: int = 0
    buckets: int = 0


def prune_backlog(path: Path, topic: str, retention_s: float, now: float) -> PruneBacklog:
    """Prune what expired in ``path`` since it was filled, before an index run.

    A filled store's deliveries end when it was filled. A copy used hours later holds
    those hours' worth of deliveries past their retention and of minute buckets past
    theirs, and a log node's pruner would delete them during the run: work a store at
    its own steady state does not have (10 million in 30 days expire at about four
    deliveries a second). Deleted here, apart, every run measures the same thing
    however old its copy is. The writer's start (the schema's upgrade, the key filter's
    build) is timed apart too; it saves the filter on close, for the run's writer.
    """
    from streams.log.store import LogWriter

    done = PruneBacklog()
    t0 = _cpu()
    writer = LogWriter(path, topic)
    try:
        t1 = _cpu()
        done.open_cpu_s = t1 - t0
        for _ in range(100_000):  # bounded: each round deletes up to 5,000 of each
            result = writer.prune(now, retention_s, 5000)
            done.deliveries += result.deliveries
            done.buckets += result.buckets
            if not result.more:
                break
        done.prune_cpu_s = _cpu() - t1
    finally:
        writer.close()
    return done


#: The ``fixed`` step's batch, delivery numbers and clock.
FIXED_BATCH = 20_000
FIXED_FIRST = 12 * 10**10
FIXED_AT = 1_796_300_000.0


def fixed(path: Path, batches: int, write: bool, without: Sequence[str] = ()) -> None:
    """Write (or only make) ``batches`` of attempts that are the same in every run."""
    from streams.log.store import LogWriter

    _drop_indexes(path, without)
    writer = LogWriter(path, _topic_of(path) or "bench.attempts")
    try:
        stream = RecordStream(
            random.Random(11),  # noqa: S311 - benchmark data
            FIXED_FIRST,
            FIXED_AT,
            [writer.positions().get(FILL_PARTITION_BASE + p, 0) for p in range(6)],
        )
        for _ in range(batches):
            records = stream.batch(FIXED_BATCH)
            if write:
                writer.write(records)
    finally:
        writer.close()
    print(
        f"{'wrote' if write else 'made'} {batches} batches of {FIXED_BATCH:,} attempts "
        f"(SQLite {sqlite3.sqlite_version})"
    )


def index(rate: float, seconds: float, store: Path | None, worker_gc: bool = True) -> None:
    from streams.kafka.topics import TopicNames, create_topics
    from streams.log.indexer import LogIndexer
    from streams.tools.bench.procs import find_broker

    with tempfile.TemporaryDirectory(prefix="streams-logstore-") as tmp:
        broker = find_broker(Path(tmp), print)
        try:
            settings = Settings.from_env(
                {
                    "STREAMS_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "STREAMS_TOPIC_PREFIX": f"logbench.{uuid.uuid4().hex[:8]}.",
                    "STREAMS_PARTITIONS": "6",
                    "STREAMS_STATE_DIR": tmp,
                }
            )
            create_topics(settings)
            topic = TopicNames(settings.topic_prefix).attempts
            path = store or Path(tmp) / "attempts.sqlite3"
            if store is not None and _topic_of(path) not in (None, topic):
                _retopic(path, topic)
            backlog = (
                prune_backlog(path, topic, settings.log_retention_s, time.time())
                if store is not None
                else None
            )
            if worker_gc:
                gc_tuning.tune(settings.gc_threshold)
            watch = MachineWatch().start()
            indexer = LogIndexer(settings, topic, path)
            indexer.start()
            time.sleep(3)  # connected and assigned before the clock starts
            opened = time.monotonic() + 300  # and the store open (its key filter built)
            while indexer.waiting is not None and indexer.fault is None:
                if time.monotonic() > opened:
                    raise SystemExit(f"the indexer did not start: {indexer.waiting}")
                time.sleep(0.2)
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streams.tools.bench.logstore",
                    "produce",
                    "--bootstrap",
                    broker.bootstrap,
                    "--topic",
                    topic,
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(seconds),
                    "--seed",
                    str(uuid.uuid4().int >> 80),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            first_cpu, first_done, first_own = _cpu(), indexer.stats.attempts, watch.own_cpu_s
            time.sleep(2)  # the producer's start-up is not the indexer's work
            cpu0, wall0, done0 = _cpu(), time.monotonic(), indexer.stats.attempts
            own0 = watch.own_cpu_s
            _sampling_sleep(watch, max(1.0, seconds - 4))
            cpu1, wall1, done1 = _cpu(), time.monotonic(), indexer.stats.attempts
            cpu1 -= watch.own_cpu_s - own0  # the reference loop's CPU is not the indexer's
            out, _ = child.communicate(timeout=seconds + 60)
            sent = int(out.strip().splitlines()[-1])
            deadline = time.monotonic() + 60
            while indexer.stats.attempts < sent and time.monotonic() < deadline:
                time.sleep(0.1)
            # Every attempt of the run, drained: whole batches, however long they gather
            # (a window of the steady state cuts batches of several seconds in two).
            all_cpu = _cpu() - first_cpu - (watch.own_cpu_s - first_own)
            all_done = indexer.stats.attempts - first_done
            indexer.stop()
            watch.stop()
            if indexer.fault:
                raise SystemExit(f"indexer failed: {indexer.fault}")
            per_s = (done1 - done0) / (wall1 - wall0)
            core = (cpu1 - cpu0) / (wall1 - wall0)
            print(
                f"indexed {indexer.stats.attempts:,} of {sent:,} attempts written at "
                f"{rate:,.0f}/s; steady {per_s:,.0f}/s using {100 * core:.1f}% of a core "
                f"({1e6 * (cpu1 - cpu0) / max(done1 - done0, 1):.1f} us of CPU per attempt); "
                f"batches {indexer.stats.batches}; the whole run, drained: "
                f"{1e6 * all_cpu / max(all_done, 1):.1f} us of CPU per attempt, "
                f"{100 * all_cpu * rate / max(all_done, 1):.1f}% of a core at {rate:,.0f}/s"
            )
            print(f"  {_gc_label(worker_gc)}; {watch.describe(1e6 * all_cpu / max(all_done, 1))}")
            how = "loaded" if indexer.stats.filter_loaded else "built"
            print(
                f"  before the run (not counted above): the indexer opened the store, its "
                f"key filter {how}, in {indexer.stats.filter_build_s:.1f} s of CPU"
            )
            if backlog is not None:
                print(
                    f"  and before that, apart: the store upgraded if need be and its key "
                    f"filter built in {backlog.open_cpu_s:.1f} s of CPU; what expired since "
                    f"it was filled pruned ({backlog.deliveries:,} deliveries, "
                    f"{backlog.buckets:,} buckets) in {backlog.prune_cpu_s:.1f} s"
                )
        finally:
            broker.stop()


#: How often a run samples the machine's reference loop while it measures.
SAMPLE_EVERY_S = 5.0


def _sampling_sleep(watch: MachineWatch, seconds: float) -> None:
    """Sleep ``seconds``, sampling the reference loop every SAMPLE_EVERY_S."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_EVERY_S, left))
        if end - time.monotonic() > 1.0:
            watch.sample()


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _topic_of(path: Path) -> str | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'topic'").fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def _retopic(path: Path, topic: str) -> None:
    """Point a filled store at this run's topic: the fill's partitions are its own, and
    a previous run's positions (in its own topic) are forgotten."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'topic'", (topic,))
        conn.execute("DELETE FROM positions WHERE partition < ?", (FILL_PARTITION_BASE,))
    conn.close()


def _without_index_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--without-index",
        action="append",
        default=[],
        metavar="NAME",
        help="drop this index from the store first (repeatable; on a copy: it is gone "
        "for good), to see what keeping it up costs",
    )


def _gc_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector thresholds; by default the run tunes the collector "
        "as a worker (and so a log node) does at start (streams.ops.gc_tuning)",
    )


def _pragma_options(p: argparse.ArgumentParser) -> None:
    """Options that set the store's pragmas for one run (A/B runs of one commit)."""
    p.add_argument("--mmap-mib", type=int, default=None, help="the writer's mmap_size")
    p.add_argument("--cache-mib", type=int, default=None, help="the writer's page cache")
    p.add_argument("--reader-mmap-mib", type=int, default=None, help="the readers' mmap_size")
    p.add_argument(
        "--autocheckpoint", type=int, default=None, help="the writer's wal_autocheckpoint"
    )
    p.add_argument(
        "--wal-limit-mib", type=int, default=None, help="the writer's journal_size_limit"
    )


def _apply_pragmas(args: argparse.Namespace) -> None:
    from streams.log import store as log_store

    if args.mmap_mib is not None:
        log_store.WRITER_MMAP_BYTES = args.mmap_mib << 20
    if args.reader_mmap_mib is not None:
        log_store.READER_MMAP_BYTES = args.reader_mmap_mib << 20
    if args.cache_mib is not None:
        log_store.WRITER_CACHE_KIB = args.cache_mib << 10
    if args.autocheckpoint is not None:
        log_store.WAL_AUTOCHECKPOINT_PAGES = args.autocheckpoint
    if args.wal_limit_mib is not None:
        log_store.WAL_SIZE_LIMIT_BYTES = args.wal_limit_mib << 20
    changed = {k: v for k, v in vars(args).items() if k.endswith(("_mib", "checkpoint"))}
    if any(v is not None for v in changed.values()):
        print(f"pragmas for this run: {changed}", flush=True)


def _apply_batching(args: argparse.Namespace) -> None:
    from streams.log import indexer as log_indexer

    if args.gather_s is not None:
        if not 0.1 <= args.gather_s <= 60:
            raise SystemExit("--gather-s must be in [0.1, 60]")
        log_indexer.BATCH_GATHER_S = log_indexer.BATCH_GATHER_BUSY_S = args.gather_s
    if args.batch_records is not None:
        if not 100 <= args.batch_records <= 500_000:
            raise SystemExit("--batch-records must be in [100, 500000]")
        log_indexer.BATCH_RECORDS = args.batch_records
    if args.gather_s is not None or args.batch_records is not None:
        print(
            f"batching for this run: gather {log_indexer.BATCH_GATHER_S} s, "
            f"at most {log_indexer.BATCH_RECORDS} records",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("index", help="indexing CPU at a steady rate")
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--store", type=Path, default=None)
    p.add_argument(
        "--gather-s",
        type=float,
        default=None,
        help="a fixed gather time for every batch (the indexer's two BATCH_GATHER_*); "
        "--gather-s 2 --batch-records 20000 is the indexer before busy batches",
    )
    p.add_argument("--batch-records", type=int, default=None, help="the indexer's BATCH_RECORDS")
    _pragma_options(p)
    _gc_option(p)
    p = sub.add_parser("fixed", help="a fixed workload, for counting instructions")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--make-only", action="store_true", help="make the batches, do not write")
    p.add_argument(
        "--prepare",
        action="store_true",
        help="only open the store as an index run does before it measures (upgrade it, "
        "prune what expired since its fill, save its key filter), once, outside valgrind",
    )
    _without_index_option(p)
    p = sub.add_parser("fill", help="write synthetic attempts into a store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--attempts", type=int, default=10_000_000)
    p.add_argument("--max-minutes", type=float, default=60.0)
    p.add_argument(
        "--batch",
        type=int,
        default=5000,
        help="attempts per transaction (larger fills a big store faster)",
    )
    p = sub.add_parser("query", help="query latency on a store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--samples", type=int, default=2000)
    p = sub.add_parser("charts", help="the endpoint lists' 24-hour charts from a store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--subscriptions", type=int, default=2000)
    p = sub.add_parser("disk", help="bytes per attempt of a store")
    p.add_argument("--store", type=Path, required=True)
    p = sub.add_parser("write", help="the writer's CPU per attempt, without Kafka")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=3, help="batches written before measuring")
    p.add_argument("--seed", type=int, default=None, help="deliveries of their own (default: new)")
    _pragma_options(p)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="a PASSIVE checkpoint after every N batches (measured with them)",
    )
    _without_index_option(p)
    p.add_argument(
        "--query-samples",
        type=int,
        default=0,
        help="then the query step, with the WAL as full as it gets before a checkpoint",
    )
    _gc_option(p)
    p = sub.add_parser("produce", help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    if args.step == "index":
        if not 0 < args.rate <= 50_000 or not 5 <= args.seconds <= 600:
            parser.error("--rate must be in (0, 50000] and --seconds in [5, 600]")
        _apply_pragmas(args)
        _apply_batching(args)
        index(args.rate, args.seconds, args.store, not args.default_gc)
    elif args.step == "fixed":
        if not 0 < args.batches <= 100:
            parser.error("--batches must be in [1, 100]")
        if args.prepare:
            done = prune_backlog(
                args.store, _topic_of(args.store) or "bench.attempts", SPAN_S, time.time()
            )
            print(f"prepared {args.store}: {done}")
        else:
            fixed(args.store, args.batches, not args.make_only, args.without_index)
    elif args.step == "fill":
        if not 0 < args.attempts <= 100_000_000 or not 0 < args.max_minutes <= 600:
            parser.error("--attempts must be in (0, 1e8] and --max-minutes in (0, 600]")
        if not 100 <= args.batch <= 500_000:
            parser.error("--batch must be in [100, 500000]")
        fill(args.store, args.attempts, args.max_minutes, args.batch)
    elif args.step == "query":
        if not 0 < args.samples <= 100_000:
            parser.error("--samples must be in (0, 100000]")
        query(args.store, args.samples)
    elif args.step == "charts":
        if not 1 <= args.subscriptions <= 100_000:
            parser.error("--subscriptions must be in [1, 100000]")
        charts(args.store, args.subscriptions)
    elif args.step == "disk":
        disk(args.store)
    elif args.step == "write":
        if not 1 <= args.batches <= 1000 or not 100 <= args.batch <= 100_000:
            parser.error("--batches must be in [1, 1000] and --batch in [100, 100000]")
        _apply_pragmas(args)
        seed = args.seed if args.seed is not None else uuid.uuid4().int >> 100
        write_bench(
            args.store,
            args.batches,
            args.batch,
            min(max(args.warmup, 0), 100),
            seed,
            max(args.checkpoint_every, 0),
            min(max(args.query_samples, 0), 100_000),
            args.without_index,
            not args.default_gc,
        )
    else:
        produce(args.bootstrap, args.topic, args.rate, args.seconds, args.seed)


if __name__ == "__main__":
    main()
