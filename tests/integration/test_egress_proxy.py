"""A worker with STREAMS_EGRESS_PROXY: deliveries leave through the proxy, and only through it.

A real CONNECT proxy process (tests/connect_proxy.py) logs every request; an
HTTPS receiver runs in this process. tests/unit/test_egress_proxy.py covers
TLS verification, refusals before any CONNECT, 403 and 407 at the sender.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from streams.config import Settings
from streams.kafka.topics import create_topics
from streams.publish import EventPublisher
from streams.schemas import SchemaRegistry
from tests.certs import Authority
from tests.connect_proxy import ProxyProcess
from tests.integration.harness import Api, WorkerProcess

pytestmark = pytest.mark.integration

REGISTRY = SchemaRegistry.load()


class Receiver:
    """An HTTPS receiver on 127.0.0.1 in a background thread, recording request bodies."""

    def __init__(self, authority: Authority) -> None:
        chain, key = authority.issue("receiver", server=True)
        (authority.directory / "r.pem").write_bytes(chain)
        (authority.directory / "r.key").write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(authority.directory / "r.pem", authority.directory / "r.key")
        self.bodies: list[bytes] = []
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()

    async def hook(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(text="ok")

    async def serve(self, started: threading.Event) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.port = runner.addresses[0][1]
        started.set()
        await self.stop.wait()
        await runner.cleanup()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    made = Receiver(Authority(tmp_path_factory.mktemp("ca")))
    started = threading.Event()
    thread = threading.Thread(
        target=lambda: made.loop.run_until_complete(made.serve(started)), daemon=True
    )
    thread.start()
    assert started.wait(10)
    yield made
    made.loop.call_soon_threadsafe(made.stop.set)
    thread.join(10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with ProxyProcess(tmp_path_factory.mktemp("proxy")) as started:
        yield started


@pytest.fixture(scope="module")
def proxied(worker_settings: Settings, proxy: ProxyProcess) -> Iterator[tuple[WorkerProcess, Api]]:
    create_topics(worker_settings)
    worker = WorkerProcess(
        worker_settings,
        worker_settings.state_dir / "worker.log",
        extra_env={"STREAMS_EGRESS_PROXY": proxy.url},
    ).start()
    token = (worker_settings.state_dir / "dev-admin-token").read_text().strip()
    try:
        yield worker, Api(worker.base_url, token)
    finally:
        worker.stop()


def wait_for(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_deliveries_leave_through_the_proxy(
    proxied: tuple[WorkerProcess, Api],
    proxy: ProxyProcess,
    receiver: Receiver,
    worker_settings: Settings,
) -> None:
    _worker, admin = proxied
    url = f"https://127.0.0.1:{receiver.port}/hook"
    admin.create(tenant_id="egress", url=url, event_types=["alert.fired"])
    with EventPublisher(worker_settings) as pub:
        sent = pub.publish("alert.fired", "egress", REGISTRY.sample("alert.fired"))
    assert wait_for(lambda: receiver.bodies), "nothing arrived"
    assert sent.event.id.encode() in receiver.bodies[0]
    connects = [line for line in proxy.requests() if line.startswith("CONNECT ")]
    assert connects
    assert all(line.startswith(f"CONNECT 127.0.0.1:{receiver.port} ") for line in connects)


def test_a_proxy_that_is_down_means_retries_with_a_clear_error(
    proxied: tuple[WorkerProcess, Api],
    proxy: ProxyProcess,
    receiver: Receiver,
    worker_settings: Settings,
) -> None:
    _worker, admin = proxied
    sub = admin.create(
        tenant_id="egress-down",
        url=f"https://127.0.0.1:{receiver.port}/hook",
        event_types=["alert.fired"],
    )
    before = len(receiver.bodies)
    proxy.__exit__()  # the proxy goes away
    with EventPublisher(worker_settings) as pub:
        pub.publish("alert.fired", "egress-down", REGISTRY.sample("alert.fired"))

    def attempts() -> list[dict[str, Any]]:
        rows = admin.call("GET", "/v1/deliveries", subscription_id=sub["id"]).json()["data"]
        return [
            a
            for row in rows
            for a in admin.call("GET", f"/v1/deliveries/{row['delivery_id']}").json()["attempts"]
        ]

    seen = wait_for(lambda: len(attempts()) >= 2 and attempts())
    assert seen, "no attempts recorded"
    for attempt in seen:
        assert attempt["outcome"] in ("retry", "give_up")
        assert attempt["status"] is None
        assert f"egress proxy 127.0.0.1:{proxy.port} is unreachable" in attempt["error"]
    assert sorted(a["outcome"] for a in seen)[0] == "retry"  # retried, not given up at once
    assert len(receiver.bodies) == before
