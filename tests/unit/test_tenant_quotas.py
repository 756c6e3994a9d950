"""One tenant cannot take what the others need (issue 17, item 5).

400 subscriptions to ``*`` turned 20 events into 8,000 deliveries and took
another tenant's latency from 0.9 s to 12.8 s. Each tenant now has a quota of
subscriptions (the API refuses one more) and a share of each worker's
requests: at most ``STREAMS_TENANT_MAX_IN_FLIGHT`` in flight, turns taken round
robin with the other tenants, and about a second of waiting work before its
deliveries are deferred. The dispatcher is tested on its own first, then the
engine and the API that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.config import Settings
from streams.delivery import agent as agent_module
from streams.delivery import engine as engine_module
from streams.delivery import transport
from streams.delivery.engine import DeliveryEngine
from streams.delivery.lanes import Dispatcher
from streams.errors import ConfigError
from streams.kafka.commits import OrderedAcks
from streams.records import Delivery, Subscription
from tests.fake_pipeline import ADMIN, dev_settings, fake_pipeline
from tests.unit.test_breaker import Clock, Event, FakePipeline, Message
from tests.unit.test_deferral import Hanging

Job = Callable[[], Awaitable[None]]


async def _run(job: Job) -> None:
    await job()


def _ignore(job: object, exc: BaseException) -> None:
    raise AssertionError(f"a job raised: {exc!r}")


class Gates:
    """Jobs that record their start and wait until released, one gate per name."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: Counter[str] = Counter()  # by tenant (the name's part before "/")
        self.most: Counter[str] = Counter()
        self.gates: dict[str, asyncio.Event] = {}

    def job(self, name: str) -> Job:
        gate = self.gates[name] = asyncio.Event()
        tenant = name.split("/")[0]

        async def body() -> None:
            self.started.append(name)
            self.running[tenant] += 1
            self.most[tenant] = max(self.most[tenant], self.running[tenant])
            try:
                await gate.wait()
            finally:
                self.running[tenant] -= 1

        return body

    async def release(self, name: str) -> None:
        self.gates[name].set()
        for _ in range(5):
            await asyncio.sleep(0)

    async def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for _ in range(20):
            await asyncio.sleep(0)


async def _settle(d: Dispatcher) -> None:
    for _ in range(400):
        if not d.lanes and not d.tenants and d.running == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still open: lanes {sorted(d.lanes)}, tenants {sorted(d.tenants)}")


# -- the dispatcher --------------------------------------------------------------------------


async def test_a_tenant_never_has_more_than_its_limit_in_flight_across_its_lanes() -> None:
    d = Dispatcher(_run, on_error=_ignore, tenant_limit=3)
    g = Gates()
    for lane in range(5):
        for n in range(4):
            name = f"acme/s{lane}-{n}"
            assert d.submit(f"s{lane}", g.job(name), max_in_flight=4, rate=None, tenant="acme")
    await asyncio.sleep(0)
    assert g.running["acme"] == 3
    assert d.tenants["acme"].queued == 17
    for name in list(g.gates):
        await g.release(name)
        assert g.running["acme"] <= 3
    await _settle(d)
    assert g.most["acme"] == 3
    assert len(g.started) == 20


async def test_another_tenants_job_starts_at_once_while_one_tenant_is_at_its_limit() -> None:
    d = Dispatcher(_run, on_error=_ignore, tenant_limit=2, capacity=100)
    g = Gates()
    for n in range(50):
        d.submit(f"flood{n % 10}", g.job(f"flood/{n}"), max_in_flight=16, rate=None, tenant="flood")
    d.submit("quiet", g.job("quiet/0"), max_in_flight=16, rate=None, tenant="quiet")
    await asyncio.sleep(0)
    assert "quiet/0" in g.started  # not behind the 48 flood jobs waiting
    assert g.running == Counter({"flood": 2, "quiet": 1})
    await g.release_all()
    await _settle(d)


async def test_when_the_worker_is_full_freed_slots_go_to_tenants_in_turn() -> None:
    d = Dispatcher(_run, on_error=_ignore, tenant_limit=10, capacity=2)
    g = Gates()
    for n in range(6):
        d.submit(f"a{n}", g.job(f"a/{n}"), max_in_flight=16, rate=None, tenant="a")
    for n in range(2):
        d.submit("b", g.job(f"b/{n}"), max_in_flight=16, rate=None, tenant="b")
    await asyncio.sleep(0)
    assert g.started == ["a/0", "a/1"]  # the worker's two slots
    # Each freed slot goes to the tenant whose turn is next: a's third job had been
    # waiting before b's first, then b, then a, ... not all of a's before b's.
    for done in ["a/0", "a/1", "a/2", "b/0", "a/3"]:
        await g.release(done)
    assert g.started == ["a/0", "a/1", "a/2", "b/0", "a/3", "b/1", "a/4"]
    await g.release_all()
    await _settle(d)
    assert sorted(g.started) == sorted(g.gates)


async def test_a_tenants_subscriptions_take_its_slots_in_turn() -> None:
    d = Dispatcher(_run, on_error=_ignore, tenant_limit=1)
    g = Gates()
    for n in range(3):
        d.submit("s1", g.job(f"t/s1-{n}"), max_in_flight=4, rate=None, tenant="t")
    for n in range(3):
        d.submit("s2", g.job(f"t/s2-{n}"), max_in_flight=4, rate=None, tenant="t")
    await asyncio.sleep(0)
    for _ in range(6):
        await g.release(g.started[-1])
    await _settle(d)
    # s1's second job was waiting before s2 came; from then on they alternate.
    assert g.started == ["t/s1-0", "t/s1-1", "t/s2-0", "t/s1-2", "t/s2-1", "t/s2-2"]


def test_a_tenant_may_hold_a_quarter_of_the_agents_window_waiting() -> None:
    assert engine_module.TENANT_QUEUE == agent_module.MAX_PENDING // 4
    assert Dispatcher(_run, on_error=_ignore, tenant_limit=4, tenant_queue=100).tenant_queue == 100
    # Never less than twice the tenant's limit: a full share in flight and one waiting.
    assert Dispatcher(_run, on_error=_ignore, tenant_limit=64, tenant_queue=10).tenant_queue == 128


async def test_tenant_full_says_when_one_tenants_waiting_work_reaches_its_bound() -> None:
    d = Dispatcher(_run, on_error=_ignore, tenant_limit=4, tenant_queue=20)
    g = Gates()
    bound = 20
    assert not d.tenant_full("acme")
    for n in range(4 + bound):
        assert not d.tenant_full("acme")
        d.submit(f"s{n % 50}", g.job(f"acme/{n}"), max_in_flight=16, rate=None, tenant="acme")
    assert d.tenant_full("acme")
    assert not d.tenant_full("other")
    taken = d.take_queued(f"s{3 + bound}")  # the last one submitted: waiting, not started
    assert len(taken) == 1
    assert not d.tenant_full("acme")  # what was taken out no longer counts
    await g.release_all()
    for job in taken:
        await job()
    await _settle(d)


async def test_without_a_tenant_limit_there_are_no_shares_and_nothing_is_tenant_full() -> None:
    d = Dispatcher(_run, on_error=_ignore)
    g = Gates()
    for n in range(300):
        d.submit(f"s{n % 20}", g.job(f"acme/{n}"), max_in_flight=16, rate=None, tenant="acme")
    await asyncio.sleep(0)
    assert g.running["acme"] == 300  # each lane alone limits: 20 lanes x 16
    assert not d.tenant_full("acme")
    assert d.tenants == {}
    await g.release_all()
    await _settle(d)


def test_a_tenant_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Dispatcher(_run, on_error=_ignore, tenant_limit=0)


async def test_rate_limited_and_raising_jobs_leave_no_share_behind() -> None:
    errors: list[BaseException] = []
    d = Dispatcher(_run, on_error=lambda job, exc: errors.append(exc), tenant_limit=2)
    ran: list[str] = []

    async def ok() -> None:
        ran.append("ok")

    async def bad() -> None:
        raise RuntimeError("boom")

    for _ in range(6):  # a burst of 5 at 50/s, then one waits ~20 ms for a token
        d.submit("limited", ok, max_in_flight=8, rate=50.0, tenant="t")
    d.submit("other", bad, max_in_flight=1, rate=None, tenant="t")
    await _settle(d)
    assert ran == ["ok"] * 6
    assert [str(e) for e in errors] == ["boom"]
    assert d.running == 0


# -- the engine --------------------------------------------------------------------------------


def test_the_worker_wide_bound_is_the_transports_connection_limit() -> None:
    assert engine_module.MAX_IN_FLIGHT == transport.MAX_CONNECTIONS


def subscription(sub_id: str, tenant: str, **fields: Any) -> Subscription:
    return Subscription(
        id=sub_id,
        tenant_id=tenant,
        url="https://h.example/in",
        event_types=["*"],
        signing="prospektr",
        **fields,
    )


def record(n: int, sub: Subscription) -> bytes:
    return Delivery(
        delivery_id=f"msg_{n}",
        event_id=f"evt_{n}",
        event_type="alert.fired",
        tenant_id=sub.tenant_id,
        subscription_id=sub.id,
        body="{}",
    ).to_bytes()


async def flood_engine(
    limit: int, subs: dict[str, Subscription]
) -> tuple[FakePipeline, Hanging, DeliveryEngine]:
    settings = dataclasses.replace(FakePipeline().settings, tenant_max_in_flight=limit)
    p = FakePipeline(settings=settings, subscriptions=subs)
    sender = Hanging()
    eng = DeliveryEngine(p, sender, jitter=lambda: 0.0, clock=Clock())  # type: ignore[arg-type]
    eng.dispatcher.tenant_queue = max(20, 2 * limit)  # a small share, to fill in a test
    return p, sender, eng


async def test_a_flooding_tenants_excess_is_deferred_and_the_quiet_tenant_is_sent_at_once() -> None:
    subs = {f"f{n}": subscription(f"f{n}", "flood") for n in range(40)}
    subs["q"] = subscription("q", "quiet")
    p, sender, eng = await flood_engine(4, subs)
    acks = OrderedAcks(max_pending=5000, on_fatal=lambda exc: None)
    bound = eng.dispatcher.tenant_queue
    flood = 4 + bound + 30
    for n in range(flood):
        message = Message(offset=n)
        await eng.handle(
            record(n, subs[f"f{n % 40}"]), message, await acks.track(Event(message)), acks
        )
    message = Message(offset=flood)
    await eng.handle(record(flood, subs["q"]), message, await acks.track(Event(message)), acks)
    await asyncio.sleep(0)
    assert sender.requests == 4 + 1  # the flood's share, and the quiet tenant's one
    deferred = [orjson.loads(v or b"") for t, v in p.sent if t.startswith("p.deliveries.retry")]
    assert len(deferred) == 30
    assert {d["tenant_id"] for d in deferred} == {"flood"}
    assert all(d["deferrals"] == 1 and d["attempt"] == 1 for d in deferred)  # no attempt made
    assert p.stats["deferred.tenant"] == 30
    assert p.stats["deferred"] == 30
    sender.release.set()
    for _ in range(200):
        await asyncio.sleep(0)
    assert sender.requests == 4 + bound + 1  # everything kept was sent


async def test_an_ordered_subscription_is_never_deferred_for_its_tenant() -> None:
    subs = {f"f{n}": subscription(f"f{n}", "flood") for n in range(20)}
    subs["o"] = subscription("o", "flood", ordering="ordered")
    p, sender, eng = await flood_engine(2, subs)
    acks = OrderedAcks(max_pending=5000, on_fatal=lambda exc: None)
    bound = eng.dispatcher.tenant_queue
    for n in range(2 + bound):
        message = Message(offset=n)
        await eng.handle(
            record(n, subs[f"f{n % 20}"]), message, await acks.track(Event(message)), acks
        )
    assert eng.dispatcher.tenant_full("flood")
    message = Message(offset=999)
    await eng.handle(record(999, subs["o"]), message, await acks.track(Event(message)), acks)
    assert p.stats["deferred.tenant"] == 0  # it waits its turn instead (deferring would reorder)
    sender.release.set()
    for _ in range(200):
        await asyncio.sleep(0)
    assert sender.requests == 2 + bound + 1


async def test_a_tenant_limit_of_zero_is_the_old_dispatcher() -> None:
    _p, _sender, eng = await flood_engine(0, {})
    assert eng.dispatcher.tenant_limit is None
    _p, _sender, eng = await flood_engine(7, {})
    assert eng.dispatcher.tenant_limit == 7


# -- settings ------------------------------------------------------------------------------------


def test_both_quotas_have_defaults_and_one_setting_each() -> None:
    s = Settings.from_env({})
    assert (s.tenant_max_subscriptions, s.tenant_max_in_flight) == (100, 64)
    s = Settings.from_env(
        {"STREAMS_TENANT_MAX_SUBSCRIPTIONS": "0", "STREAMS_TENANT_MAX_IN_FLIGHT": "0"}
    )
    assert (s.tenant_max_subscriptions, s.tenant_max_in_flight) == (0, 0)
    for var in ("STREAMS_TENANT_MAX_SUBSCRIPTIONS", "STREAMS_TENANT_MAX_IN_FLIGHT"):
        with pytest.raises(ConfigError, match=var):
            Settings.from_env({var: "-1"})


# -- the subscription quota in the API ---------------------------------------------------------


@contextlib.asynccontextmanager
async def api_with(tmp_path: Path, quota: str) -> AsyncIterator[TestClient[Any, Any]]:
    # Subscriptions are read back a little after they are written, as from Kafka.
    settings = dev_settings(tmp_path, STREAMS_TENANT_MAX_SUBSCRIPTIONS=quota)
    pipeline = fake_pipeline(settings, apply_delay=0.02)
    async with TestClient(TestServer(pipeline.app.web.web_app)) as client:
        yield client


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with api_with(tmp_path, "3") as client:
        yield client


AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def create(client: TestClient[Any, Any], tenant: str, **extra: Any) -> Any:
    body = {"tenant_id": tenant, "url": "https://example.com/in", "event_types": ["*"], **extra}
    return await client.post("/v1/subscriptions", json=body, headers=AUTH)


async def test_one_subscription_over_the_quota_is_a_409_naming_the_setting(api: Any) -> None:
    first = await create(api, "acme")
    assert first.status == 201
    assert (await create(api, "acme", enabled=False)).status == 201  # disabled ones count
    assert (await create(api, "acme")).status == 201
    resp = await create(api, "acme")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "quota_exceeded"
    assert "STREAMS_TENANT_MAX_SUBSCRIPTIONS=3" in error["message"]
    assert "has 3 subscriptions" in error["message"]
    assert (await create(api, "other")).status == 201  # another tenant's quota is its own
    # Deleting one makes room again.
    sub_id = (await first.json())["id"]
    assert (await api.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH)).status == 204
    assert (await create(api, "acme")).status == 201


async def test_creates_racing_on_one_worker_cannot_pass_the_quota_together(api: Any) -> None:
    answers = await asyncio.gather(*(create(api, "acme") for _ in range(8)))
    assert sorted(r.status for r in answers) == [201] * 3 + [409] * 5


async def test_a_quota_of_zero_is_no_limit(tmp_path: Path) -> None:
    async with api_with(tmp_path, "0") as client:
        answers = await asyncio.gather(*(create(client, "acme") for _ in range(12)))
        assert [r.status for r in answers] == [201] * 12


# -- the benchmark's scenario ------------------------------------------------------------------


def test_the_neighbours_scenario_refuses_a_run_with_no_quiet_event_or_no_burst() -> None:
    from streams.tools.bench.config import BenchConfigError, resolve

    full = resolve("neighbours")
    assert (full.subscriptions, full.events, full.rounds) == (400, 20, 2)  # issue 17's flood
    with pytest.raises(BenchConfigError, match="publishes no event of the quiet tenant"):
        resolve("neighbours", overrides={"rate": "0.01", "duration": 10})
    with pytest.raises(BenchConfigError, match="ends before the first flood burst"):
        resolve("neighbours", overrides={"duration": 2})


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], None), ([3.0], 3.0), ([5.0, 1.0], 3.0), ([9.0, 1.0, 4.0], 4.0)],
)
def test_the_rounds_are_summarised_by_their_median(
    values: list[float], expected: float | None
) -> None:
    from streams.tools.bench.scenarios import _median

    assert _median(values) == expected


async def test_openapi_documents_the_quota_answer_of_a_create(api: TestClient[Any, Any]) -> None:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    create = (await resp.json())["paths"]["/v1/subscriptions"]["post"]
    assert "quota_exceeded" in create["responses"]["409"]["description"]
