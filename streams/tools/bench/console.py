"""``streams bench console-live``: what the operator's live view costs a worker.

The live page polls ``/console/live?fragment=1`` every 2 s (``static/console.js``:
the next poll 2 s after each answer). This scenario runs two workers of one
pipeline under the same steady delivery load, with the attempt log first
filled with an hour of attempts (``log_fill``, spread over the last hour), then
measures both workers' CPU over three consecutive windows of ``duration_s``:

- window A: nobody watches;
- window B: ``viewers`` pollers, each its own signed-in session, poll worker 0
  as open browsers would; worker 1 serves none;
- window C: nobody watches again.

Worker 1 is worker 0's control in the same window (same load, same machine,
same moment); windows A and C measure how the two differ without viewers
(their share of the partitions), before and after. The viewers' cost is the
difference of the differences (:func:`viewer_cost`), reported with every
window's raw numbers; how far A and C disagree is the measurement's noise.
The pollers run in the harness, so their own CPU is not counted as the worker's.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from streams.records import Attempt, delivery_id_for
from streams.tools.bench.config import BenchFailed
from streams.tools.bench.load import Bench, CpuMeter, Feeder, Stack, event_plan, tenant_plan
from streams.tools.bench.scenarios import Outcome, _n, setup, warm_up
from streams.tools.bench.stats import rounded, summary

#: How often the live page polls, seconds (``pollLive`` in ``static/console.js``).
POLL_INTERVAL_S = 2.0
#: The live page's fragment, which each poll fetches.
LIVE_FRAGMENT = "/console/live?fragment=1"
#: Load before the first window, so both workers are at their steady state.
SETTLE_S = 10.0
#: The span the synthetic attempts cover: the live view's charts are of the last hour.
FILL_SPAN_S = 3600.0
#: The target: 10 open live views cost the worker less than this share of one core.
TARGET_CORES = 0.02


def synthetic_hour(
    subscriptions: Sequence[tuple[str, str]], count: int, now: float, seed: int = 1
) -> list[Attempt]:
    """``count`` attempts spread evenly over the hour before ``now``, oldest first.

    ``subscriptions`` are (subscription id, tenant) pairs, used in turn. One in
    twenty attempts fails with a 503 (``retry``), so the view has failures to
    rank; durations are log-normal around 30 ms.
    """
    if not subscriptions or count <= 0:
        return []
    rnd = random.Random(seed)  # noqa: S311 - benchmark data
    step = FILL_SPAN_S / count
    out = []
    for i in range(count):
        sub_id, tenant = subscriptions[i % len(subscriptions)]
        event_id = f"fill_{uuid.UUID(int=rnd.getrandbits(128)).hex}"
        failed = rnd.random() < 0.05
        out.append(
            Attempt(
                delivery_id=delivery_id_for(event_id, sub_id),
                event_id=event_id,
                event_type="crawl.run.completed",
                tenant_id=tenant,
                subscription_id=sub_id,
                attempt=1,
                at=now - FILL_SPAN_S + i * step,
                duration_ms=round(rnd.lognormvariate(3.4, 0.6), 3),
                outcome="retry" if failed else "delivered",
                status=503 if failed else 200,
                response_snippet="upstream busy" if failed else '{"ok":true}',
                error="HTTP 503" if failed else None,
            )
        )
    return out


def viewer_cost(before: float, during: float, after: float) -> tuple[float, float]:
    """Cores the viewers cost, and the noise of that figure.

    Each argument is how many more cores the watched worker used than its control
    in a window: ``during`` the viewers, and without them ``before`` and ``after``.
    The cost is ``during`` minus the mean of the two others; the noise is how far
    those two disagree (half their difference).
    """
    baseline = (before + after) / 2
    return during - baseline, abs(before - after) / 2


def fill_attempts(stack: Stack, attempts: list[Attempt]) -> float:
    """Write ``attempts`` to the stack's attempts topic, as the engine would; seconds taken."""
    from confluent_kafka import Producer

    from streams.kafka.output import producer_config

    started = time.monotonic()
    producer = Producer(producer_config(stack.settings))
    topic = stack.names.attempts
    for i, a in enumerate(attempts):
        for _ in range(100):  # bounded: a full local queue drains in milliseconds
            try:
                producer.produce(topic, key=a.delivery_id.encode(), value=a.to_bytes())
                break
            except BufferError:
                producer.poll(0.05)
        else:
            raise BenchFailed("the producer's queue stayed full while filling the attempt log")
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise BenchFailed(f"{left} synthetic attempts were not written within 120 s")
    return time.monotonic() - started


def logged(stack: Stack, index: int) -> int:
    """Attempts of the last day worker ``index`` answers ``GET /v1/stats`` with (the
    fill's oldest attempts leave the last hour while the run goes on)."""
    try:
        resp = httpx.get(
            stack.workers[index].base_url + "/v1/stats",
            headers={"Authorization": f"Bearer {stack.bench.admin_token}"},
            timeout=30,
        )
        return int(resp.json()["windows"]["24h"]["attempts"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return 0


def wait_logged(stack: Stack, count: int, timeout_s: float) -> list[int]:
    """Wait until every worker's log holds ``count`` attempts of the last day."""
    deadline = time.monotonic() + timeout_s
    seen = [0] * len(stack.workers)
    while time.monotonic() < deadline:
        seen = [logged(stack, i) for i in range(len(stack.workers))]
        if min(seen) >= count:
            return seen
        time.sleep(2.0)
    raise BenchFailed(f"the workers' logs hold {seen} attempts of the last day, not {count}")


class Viewer(threading.Thread):
    """One open live page: signs in with its own link, then polls as the page does."""

    def __init__(self, base_url: str, admin_token: str, until: float, delay_s: float) -> None:
        super().__init__(name="bench-viewer", daemon=True)
        self.base_url = base_url
        self.admin_token = admin_token
        self.until = until
        self.delay_s = delay_s
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10) as http:
                link = http.post(
                    "/v1/console/sessions",
                    json={},
                    headers={"Authorization": f"Bearer {self.admin_token}"},
                )
                if link.status_code != 201:
                    self.errors.append(f"link: {link.status_code} {link.text[:200]}")
                    return
                if http.get(link.json()["path"]).status_code != 200:  # sets the cookie
                    self.errors.append("signing in failed")
                    return
                time.sleep(self.delay_s)  # browsers are not opened in step
                if http.get("/console/live").status_code != 200:
                    self.errors.append("the live page did not open")
                    return
                self._poll(http)
        except httpx.HTTPError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _poll(self, http: httpx.Client) -> None:
        bound = int((self.until - time.monotonic()) / POLL_INTERVAL_S) + 2
        for _ in range(max(0, bound)):  # bounded in count and by the window's end
            if time.monotonic() + POLL_INTERVAL_S > self.until:
                return
            time.sleep(POLL_INTERVAL_S)  # the page's setTimeout, after each answer
            started = time.monotonic()
            resp = http.get(LIVE_FRAGMENT)
            self.latencies.append(time.monotonic() - started)
            if resp.status_code != 200 or "tiles" not in resp.text:
                self.errors.append(f"poll: {resp.status_code}")


def _window(bench: Bench, stack: Stack, seconds: float) -> dict[str, Any]:
    pids = stack.pids
    if len(pids) < 2:
        raise BenchFailed("a worker exited during the run")

    def roles() -> dict[str, list[int]]:
        return {"watched": [pids[0]], "control": [pids[1]]}

    meter = CpuMeter(roles)
    meter.begin()
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        stack.supervise()
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    out = meter.end()
    wall = time.monotonic() - started
    # CpuMeter rounds to hundredths of a core; the target is two of them.
    for role in ("watched", "control"):
        out[f"{role}_cores"] = round(meter.used[role] / wall, 4)
    return out


def console_live(bench: Bench) -> Outcome:
    p = bench.params
    out = Outcome()
    if p.workers < 2 or p.viewers < 1 or not p.rates:
        raise BenchFailed("console-live needs 2 workers, viewers and a rate")
    setup(bench)
    stack = bench.stack("main", workers=p.workers)
    stack.start()
    stack.create_subscriptions(tenant_plan(p.tenants, p.fanout, "live"))
    warm_up(bench, stack)

    fill = synthetic_hour([(s.id, s.tenant) for s in stack.subs], p.log_fill, time.time())
    took = fill_attempts(stack, fill)
    bench.say(f"{len(fill):,} synthetic attempts of the last hour written in {took:.1f}s")
    held = wait_logged(stack, len(fill), timeout_s=300)
    bench.say(f"the workers' logs hold {held} attempts")

    rate = p.rates[0]
    seconds = SETTLE_S + 3 * p.duration_s + 5
    plan = event_plan(max(1, int(rate / p.fanout * seconds)), sorted(stack.by_tenant), "live")
    watch = stack.watch()
    watch.only(e for e, _t in plan)
    feeder = Feeder(stack.settings, plan, rate=rate / p.fanout)
    feeder.start()
    try:
        time.sleep(SETTLE_S)
        bench.say(f"window A: {p.duration_s:g}s, nobody watching")
        quiet = _window(bench, stack, p.duration_s)
        until = time.monotonic() + p.duration_s
        viewers = [
            Viewer(
                stack.workers[0].base_url,
                bench.admin_token,
                until,
                delay_s=POLL_INTERVAL_S * i / p.viewers,
            )
            for i in range(p.viewers)
        ]
        for v in viewers:
            v.start()
        bench.say(f"window B: {p.duration_s:g}s, {p.viewers} viewers polling worker 0")
        watched = _window(bench, stack, p.duration_s)
        for v in viewers:
            v.join(15)
        bench.say(f"window C: {p.duration_s:g}s, nobody watching")
        after = _window(bench, stack, p.duration_s)
    finally:
        feeder.stop()
        feeder.join(60)
    expected = [pair for pair in stack.expected(feeder.confirmed)]
    resolved = watch.wait_resolved(len(expected), timeout_s=300, stall_s=p.settle_s)
    check = watch.check(expected)
    check["resolved_in_time"] = resolved
    watch.close()
    out.checks = check

    latencies = [x for v in viewers for x in v.latencies]
    errors = [e for v in viewers for e in v.errors]
    windows = (("A", 0, quiet), ("B", p.viewers, watched), ("C", 0, after))
    diffs = [w["watched_cores"] - w["control_cores"] for _n, _c, w in windows]
    cost, noise = viewer_cost(*diffs)
    polls = summary(latencies, scale=1000)
    out.tables.append(
        {
            "title": f"Worker CPU over three {p.duration_s:g} s windows of one run, "
            f"{rate:g} deliveries/s throughout",
            "columns": [
                "window",
                "viewers of worker 0",
                "worker 0, % of a core",
                "worker 1, % of a core",
                "difference, points",
                "others' use of the machine, cores",
            ],
            "rows": [
                [
                    name,
                    count,
                    round(w["watched_cores"] * 100, 2),
                    round(w["control_cores"] * 100, 2),
                    round((w["watched_cores"] - w["control_cores"]) * 100, 2),
                    w.get("others_cores"),
                ]
                for name, count, w in windows
            ],
        }
    )
    out.metrics.update(
        {
            "viewers": p.viewers,
            "poll_interval_s": POLL_INTERVAL_S,
            "attempts_in_the_log": min(held),
            "of_them_synthetic_over_the_hour_before_the_windows": len(fill),
            "polls": len(latencies),
            "poll_errors": len(errors),
            "poll_ms_p50": polls.get("p50"),
            "poll_ms_p99": polls.get("p99"),
            "viewer_cost_percent_of_a_core": rounded(cost * 100, 2),
            "noise_percent_of_a_core (A vs C)": rounded(noise * 100, 2),
        }
    )
    if errors:
        out.notes.append(f"poll errors (first): {errors[:3]}")
    out.target(
        f"{p.viewers} live views polling every {POLL_INTERVAL_S:g} s cost the worker "
        f"< {TARGET_CORES * 100:g}% of a core",
        f"{cost * 100:.2f}% ± {noise * 100:.2f}% of a core (polls p50 "
        f"{_n(polls.get('p50'), ' ms')}, "
        f"p99 {_n(polls.get('p99'), ' ms')})",
        cost < TARGET_CORES,
    )
    out.ok = not errors and check.get("lost_pairs", 1) == 0
    out.notes.append(
        "Viewer cost = (worker 0 - worker 1 in window B) - the mean of the same difference in "
        "windows A and C: worker 1 is the control in the same window; A and C measure how "
        "the two differ without viewers, and ± is half their disagreement."
    )
    return out


# -- console-log: a page of the delivery log with a million attempts in the store -------

#: The tenants whose consoles are opened (each its own session), taken in turn.
LOG_TENANTS = 10
#: Requests of each kind before the measured ones (page cache, connections).
LOG_WARM_UP = 3


def server_ms(resp: httpx.Response) -> float:
    """The console's own time for a response, from its ``Server-Timing`` header."""
    value = resp.headers.get("Server-Timing", "")
    for part in value.split(";"):
        name, _, number = part.strip().partition("=")
        if name == "dur":
            return float(number)
    raise BenchFailed(f"no Server-Timing duration in {value!r} ({resp.request.url})")


class ConsoleSession:
    """A signed-in console (a tenant's, or the operator's with ``tenant`` None)."""

    def __init__(self, base_url: str, admin_token: str, tenant: str | None) -> None:
        self.tenant = tenant
        self.http = httpx.Client(base_url=base_url, timeout=30)
        body = {} if tenant is None else {"tenant_id": tenant}
        link = self.http.post(
            "/v1/console/sessions", json=body, headers={"Authorization": f"Bearer {admin_token}"}
        )
        if link.status_code != 201 or self.http.get(link.json()["path"]).status_code != 200:
            raise BenchFailed(f"signing in to the console of {tenant or 'the operator'} failed")

    def get(self, path: str) -> httpx.Response:
        resp = self.http.get(path)
        if resp.status_code != 200:
            raise BenchFailed(f"GET {path}: {resp.status_code} {resp.text[:300]}")
        return resp

    def close(self) -> None:
        self.http.close()


def rows_on(page: str) -> int:
    return page.count("<tr data-delivery=")


def older_link(page: str) -> str | None:
    import html
    import re

    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def log_page_kinds(now: float) -> list[tuple[str, bool, Any]]:
    """(name, operator's, path for a tenant index) of each page measured."""
    from streams.tools.bench.logstore import EVENT_TYPES, SUBSCRIPTIONS, TENANTS

    def endpoint(t: int) -> str:
        # The fill's subscription s belongs to tenant s % TENANTS.
        return f"sub_{(t + TENANTS * (t % (SUBSCRIPTIONS // TENANTS))):05d}_{'x' * 20}"

    return [
        ("tenant: newest 50", False, lambda t: "/console/deliveries"),
        ("tenant: failed", False, lambda t: "/console/deliveries?status=failed"),
        ("tenant: status 503", False, lambda t: "/console/deliveries?status=503"),
        (
            "tenant: an event type",
            False,
            lambda t: f"/console/deliveries?event_type=type.{t % EVENT_TYPES:02d}",
        ),
        ("tenant: an endpoint", False, lambda t: f"/console/deliveries?endpoint={endpoint(t)}"),
        (
            "tenant: two days, ten days ago",
            False,
            lambda t: (
                f"/console/deliveries?since={now - 10 * 86_400:.0f}&until={now - 8 * 86_400:.0f}"
            ),
        ),
        ("tenant: the next page (cursor)", False, None),
        ("operator: every tenant", True, lambda t: "/console/deliveries"),
        ("operator: failed", True, lambda t: "/console/deliveries?status=failed"),
    ]


def console_log(bench: Bench) -> Outcome:
    from streams.tools.bench import logstore

    p = bench.params
    out = Outcome()
    bench.start_broker()
    stack = bench.stack(
        "main",
        workers=1,
        extra_env={"STREAMS_LOG_DIR": str(bench.dir / "log"), "STREAMS_LOG_RETENTION": "60d"},
    )
    path = stack.settings.log_path
    bench.say(f"filling the delivery-log store with {p.log_fill:,} attempts over 30 days")
    started = time.monotonic()
    logstore.fill(path, p.log_fill, max_minutes=60)
    logstore._retopic(path, stack.names.attempts)
    fill_s = time.monotonic() - started
    stack.start()
    worker = stack.workers[0]
    stats = httpx.get(
        worker.base_url + "/v1/stats",
        headers={"Authorization": f"Bearer {bench.admin_token}"},
        timeout=60,
    ).json()
    held = (stats.get("attempt_log") or {}).get("attempts") or 0
    bench.say(f"the worker's store holds {held:,} attempts")
    if held < p.log_fill:
        raise BenchFailed(f"the store holds {held:,} attempts, not {p.log_fill:,}")

    tenants = [
        f"tenant_{t:03d}" for t in range(0, logstore.TENANTS, logstore.TENANTS // LOG_TENANTS)
    ]
    sessions = [ConsoleSession(worker.base_url, bench.admin_token, t) for t in tenants]
    operator = ConsoleSession(worker.base_url, bench.admin_token, None)
    rows: list[list[Any]] = []
    worst: tuple[float, str] = (0.0, "")
    everything: list[float] = []
    try:
        for name, operators, make in log_page_kinds(time.time()):
            took: list[float] = []
            sizes: list[int] = []
            for i in range(LOG_WARM_UP + p.requests):
                index = i % len(sessions)
                session = operator if operators else sessions[index]
                t = int(tenants[index].rpartition("_")[2])
                if make is None:  # the second page: the first one's "Older" link
                    link = older_link(session.get("/console/deliveries").text)
                    if link is None:
                        raise BenchFailed(f"{tenants[index]}'s log has a single page")
                    resp = session.get(link)
                else:
                    resp = session.get(make(t))
                if i >= LOG_WARM_UP:
                    took.append(server_ms(resp))
                    sizes.append(rows_on(resp.text))
            ms = summary(took, scale=1.0)
            rows.append(
                [name, len(took), sorted(sizes)[len(sizes) // 2], ms["p50"], ms["p99"], ms["max"]]
            )
            everything += took
            if (ms["p99"] or 0) > worst[0]:
                worst = (ms["p99"] or 0.0, name)
            bench.say(f"{name}: p50 {ms['p50']} ms, p99 {ms['p99']} ms")
    finally:
        for s in (*sessions, operator):
            s.close()
    overall = summary(everything, scale=1.0)
    out.tables.append(
        {
            "title": f"Server time of a delivery-log page (Server-Timing), {p.requests} requests "
            f"of each kind over {len(tenants)} tenants' sessions, after {LOG_WARM_UP} warm-ups",
            "columns": ["page", "requests", "rows (median)", "p50 ms", "p99 ms", "max ms"],
            "rows": rows,
        }
    )
    out.metrics.update(
        {
            "attempts_in_the_store": held,
            "deliveries_in_the_store": (stats.get("attempt_log") or {}).get("deliveries"),
            "fill_s": round(fill_s, 1),
            "store_mb": round(sum(f.stat().st_size for f in path.parent.glob("*")) / 1e6, 1),
            "page_rows": 50,
            "server_ms_p50_all_pages": overall.get("p50"),
            "server_ms_p99_all_pages": overall.get("p99"),
        }
    )
    out.target(
        f"with {p.log_fill:,} attempts in the log, a page of a tenant's delivery log "
        "takes <= 100 ms of server time (p99 of every kind)",
        f"worst p99 {worst[0]:g} ms ({worst[1]}); all pages p50 {overall.get('p50')} ms, "
        f"p99 {overall.get('p99')} ms",
        worst[0] <= 100,
    )
    out.notes.append(
        "Server time is the console's Server-Timing header: from the request reaching the "
        "console's middleware to the response, rendering included, without the network or "
        "the client. The store is filled by `python -m streams.tools.bench.logstore fill`'s "
        "code (200 tenants, 2,000 subscriptions, 20 event types, 30 days; 10% retried or "
        "given up) and then followed by the worker's indexer as any log node's store."
    )
    return out
