"""The worker's Faust consumer fetches with a short broker wait (streams.kafka.faust_consumer)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streams.app import faust_settings
from streams.config import Settings
from streams.kafka.faust_consumer import FETCH_MAX_WAIT_MS, App, finish
from streams.kafka.output import KafkaOutput


def _app(tmp_path: Path) -> App:
    settings = Settings.from_env(
        {"STREAMS_STATE_DIR": str(tmp_path), "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )
    return App("test-fetch-wait", **faust_settings(settings))


async def test_the_worker_consumer_is_built_with_the_short_fetch_wait(tmp_path: Path) -> None:
    app = _app(tmp_path)
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    try:
        # Faust alone would build it with 1500 ms.
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
        assert FETCH_MAX_WAIT_MS <= 200
        # Nothing else of Faust's consumer configuration changed.
        assert consumer._group_id == "test-fetch-wait"
        assert consumer._enable_auto_commit is False
    finally:
        await consumer.stop()


async def test_the_fetch_wait_and_size_come_from_the_app(tmp_path: Path) -> None:
    app = _app(tmp_path)
    app.fetch_max_wait_ms = 20
    app.fetch_min_bytes = 65_536
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 20
        assert consumer._fetch_min_bytes == 65_536
    finally:
        await consumer.stop()


def test_fetch_settings_are_bounded() -> None:
    defaults = Settings.from_env({})
    assert defaults.kafka_fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    assert defaults.kafka_fetch_min_bytes == 1
    for name, bad in (
        ("STREAMS_KAFKA_FETCH_MAX_WAIT_MS", "0"),
        ("STREAMS_KAFKA_FETCH_MAX_WAIT_MS", "1501"),
        ("STREAMS_KAFKA_FETCH_MIN_BYTES", "0"),
        ("STREAMS_KAFKA_FETCH_MIN_BYTES", "2000000"),
    ):
        with pytest.raises(Exception, match=name):
            Settings.from_env({name: bad})


def test_producer_linger_setting_is_bounded() -> None:
    assert Settings.from_env({}).kafka_linger_ms == 8
    assert Settings.from_env({"STREAMS_KAFKA_LINGER_MS": "0"}).kafka_linger_ms == 0
    for bad in ("-1", "1001", "2.5", "soon"):
        with pytest.raises(Exception, match="STREAMS_KAFKA_LINGER_MS"):
            Settings.from_env({"STREAMS_KAFKA_LINGER_MS": bad})


def test_the_worker_producer_uses_the_linger_setting() -> None:
    settings = Settings.from_env({"STREAMS_KAFKA_LINGER_MS": "25"})
    output = KafkaOutput(settings)
    try:
        assert output.linger_ms == 25
    finally:
        output._producer.flush(0)


# -- the drain loop's per-record wait_first -----------------------------------------------


async def _consumer(tmp_path: Path) -> Any:
    app = _app(tmp_path)
    return app.consumer


async def test_a_callback_that_does_not_wait_runs_inline_without_tasks(tmp_path: Path) -> None:
    consumer = await _consumer(tmp_path)
    seen: list[int] = []

    async def callback(n: int) -> str:
        seen.append(n)
        return f"took {n}"

    before = len(asyncio.all_tasks())
    tasks_during: list[int] = []

    async def probe() -> str:
        tasks_during.append(len(asyncio.all_tasks()))
        return "ok"

    result = await consumer.wait_first(callback(7), consumer.suspend_flow.wait())
    assert seen == [7]
    assert result.results == ["took 7"]
    assert not result.stopped
    # No task was left behind (Faust's own path leaves three cancelled ones to unwind).
    assert len(asyncio.all_tasks()) == before
    await consumer.wait_first(probe(), consumer.suspend_flow.wait())
    assert tasks_during == [before]  # ran inside this task, not a new one


async def test_a_callback_that_waits_finishes_as_a_task(tmp_path: Path) -> None:
    consumer = await _consumer(tmp_path)
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)  # full: the callback has to wait for room
    done: list[str] = []

    async def callback() -> None:
        await queue.put(1)
        await asyncio.sleep(0)  # a bare yield on the way
        done.append("put")

    async def drain() -> None:
        await asyncio.sleep(0.01)
        assert queue.get_nowait() == 0

    drainer = asyncio.ensure_future(drain())
    result = await asyncio.wait_for(
        consumer.wait_first(callback(), consumer.suspend_flow.wait()), 5
    )
    await drainer
    assert done == ["put"]
    assert not result.stopped
    assert queue.get_nowait() == 1


async def test_suspend_flow_interrupts_a_waiting_callback_as_in_faust(tmp_path: Path) -> None:
    consumer = await _consumer(tmp_path)
    cancelled: list[bool] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        try:
            await never
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def rebalance() -> None:
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()

    setter = asyncio.ensure_future(rebalance())
    result = await asyncio.wait_for(
        consumer.wait_first(callback(), consumer.suspend_flow.wait()), 5
    )
    await setter
    await asyncio.sleep(0)  # let the cancelled callback unwind
    assert cancelled == [True]
    assert never.cancelled()
    assert not result.stopped
    consumer.suspend_flow.clear()


async def test_errors_of_the_callback_propagate_inline_and_after_waiting(tmp_path: Path) -> None:
    consumer = await _consumer(tmp_path)

    async def fails_at_once() -> None:
        raise ValueError("bad record")

    async def fails_later() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("later")

    with pytest.raises(ValueError, match="bad record"):
        await consumer.wait_first(fails_at_once(), consumer.suspend_flow.wait())
    with pytest.raises(KeyError, match="later"):
        await consumer.wait_first(fails_later(), consumer.suspend_flow.wait())


async def test_a_suspended_flow_takes_faust_s_own_path(tmp_path: Path) -> None:
    consumer = await _consumer(tmp_path)
    consumer.suspend_flow.set()
    ran: list[bool] = []

    async def callback() -> None:
        ran.append(True)

    result = await consumer.wait_first(callback(), consumer.suspend_flow.wait())
    # Faust's race ran both as tasks, and the already-set event finished too; the
    # inline path would have reported the callback alone.
    assert ran == [True]
    assert len(result.done) == 2
    consumer.suspend_flow.clear()


async def test_finish_raises_for_a_coroutine_yielding_a_non_future() -> None:
    import types

    @types.coroutine
    def odd() -> Any:
        yield "not a future"

    async def coro() -> None:
        await odd()

    c = coro()
    first = c.send(None)
    with pytest.raises(RuntimeError, match="not a future"):
        await finish(c, first)


def test_the_attempts_linger_is_minus_one_or_a_linger() -> None:
    assert Settings.from_env({}).kafka_attempts_linger_ms == -1
    assert Settings.from_env({"STREAMS_KAFKA_ATTEMPTS_LINGER_MS": "100"}).kafka_attempts_linger_ms
    for bad in ("-2", "1001", "soon"):
        with pytest.raises(Exception, match="STREAMS_KAFKA_ATTEMPTS_LINGER_MS"):
            Settings.from_env({"STREAMS_KAFKA_ATTEMPTS_LINGER_MS": bad})


def test_the_app_monitor_has_no_sampler_but_keeps_its_hooks(tmp_path: Path) -> None:
    from faust.sensors.monitor import Monitor

    from streams.kafka.faust_consumer import QuietMonitor

    app = _app(tmp_path)
    monitor = app.monitor
    assert isinstance(monitor, QuietMonitor)
    assert isinstance(monitor, Monitor)  # the per-record hooks Faust's livelock check reads
    assert asyncio.run(QuietMonitor._sampler.fun(monitor)) is None


async def test_the_livelock_check_runs_for_every_partition_without_sleeping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path)
    consumer = app.consumer
    checked: list[Any] = []
    monkeypatch.setattr(consumer, "assignment", lambda: {"a", "b", "c"})
    monkeypatch.setattr(consumer, "verify_event_path", lambda now, tp: checked.append(tp))

    async def no_sleep(n: float) -> None:
        raise AssertionError("slept")

    monkeypatch.setattr(consumer, "sleep", no_sleep)
    await consumer.verify_all_partitions_active()
    assert sorted(checked) == ["a", "b", "c"]
