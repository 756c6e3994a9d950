"""``streams demo``: the whole pipeline on this machine, for a newcomer to watch.

It starts (or reuses) the local Kafka broker, creates the topics, starts a
worker and the sample receiver as child processes, registers one subscription
per signing style the reference products use (standard, prowlo, prospektr),
prints sign-in links to the web console (the operator's and the tenant's),
then publishes sample events of the three documented types every half second
and prints, once a second, what was published and what the receiver got and
verified. Ctrl-C stops the worker and the receiver (the broker keeps running:
``streams kafka stop``). ``--events N`` stops by itself after N events.

Everything runs in development mode on loopback: plain http to 127.0.0.1 is
allowed by ``STREAMS_ENV=development`` and ``STREAMS_DESTINATION_ALLOWLIST``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from streams.config import Settings
from streams.errors import StreamsError

SAMPLES = ("prospect.added", "crawl.run.completed", "alert.fired")
PROFILES = (("standard", "envelope"), ("prowlo", "envelope"), ("prospektr", "keyed"))


def stop_children(children: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """SIGTERM every child, wait up to ``grace_s`` each, SIGKILL what is left.

    Ctrl-C in a terminal signals the whole process group, and an impatient
    second Ctrl-C used to interrupt the waiting and leave the worker or the
    receiver running. Now an interrupt while waiting kills every child at
    once (further interrupts are ignored until they are gone), then re-raises.
    """
    for proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    try:
        for proc in children:
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc in children:
                if proc.poll() is None:
                    proc.kill()
            for proc in children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(
    url: str, timeout_s: float, proc: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StreamsError(f"the {what} exited during start; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise StreamsError(f"the {what} did not become ready within {timeout_s:g}s; see {log}")


def demo_env(base: Settings) -> dict[str, str]:
    """The settings the demo runs its worker with, over the user's own (``base``).

    Its own state directory (``<STREAMS_STATE_DIR>/demo``: the worker's tables and
    its generated admin token) and topic prefix, so the demo never touches a
    pipeline the user runs beside it.
    """
    return {
        "STREAMS_ENV": "development",
        "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8,::1/128",
        "STREAMS_TOPIC_PREFIX": base.topic_prefix or "demo.",
        "STREAMS_API_PORT": str(base.api_port),
        "STREAMS_STATE_DIR": str(base.state_dir / "demo"),
        "STREAMS_RETRY_SCHEDULE": "2s,10s,30s",
    }


def monitor_command(base: Settings) -> str:
    """The ``streams monitor`` command that watches the demo, API included.

    The monitor finds the API's token in ``$STREAMS_STATE_DIR/dev-admin-token``, which
    the demo's worker writes under the demo's own state directory; with only the
    topic prefix (the hint before), it looked in ``.streams/`` and found no token.
    """
    env = demo_env(base)
    parts = [f"STREAMS_TOPIC_PREFIX={env['STREAMS_TOPIC_PREFIX']}"]
    parts.append(f"STREAMS_STATE_DIR={shlex.quote(env['STREAMS_STATE_DIR'])}")
    api_url = f"http://127.0.0.1:{base.api_port}"
    if base.api_url != api_url:
        parts.append(f"STREAMS_API_URL={api_url}")
    return " ".join([*parts, "streams monitor"])


def run_demo(events: int | None, interval_s: float) -> None:
    from streams.kafka.local import LocalKafka
    from streams.kafka.topics import create_topics
    from streams.publish import EventPublisher
    from streams.schemas import SchemaRegistry

    base = Settings.from_env()
    env = {**os.environ, **demo_env(base)}
    settings = Settings.from_env(env)
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    if settings.kafka_bootstrap.startswith(("127.0.0.1:", "localhost:")):
        status, started = LocalKafka(base).start()
        click.echo(("started " if started else "using ") + status.describe())
    create_topics(settings)
    children: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        children.append(proc)
        return proc

    try:
        receiver_port = _free_port()
        receiver_log = state / "receiver.log"
        receiver = spawn(["receiver", "--port", str(receiver_port)], receiver_log)
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        _wait_http(receiver_url + "/_stats", 20, receiver, "receiver", receiver_log)
        worker_log = state / "worker.log"
        worker = spawn(["worker"], worker_log)
        api = f"http://127.0.0.1:{settings.api_port}"
        click.echo(f"worker starting (log: {worker_log}) ...")
        _wait_http(api + "/healthz", 120, worker, "worker", worker_log)
        token = (state / "dev-admin-token").read_text().strip()
        http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        # A fresh set of demo subscriptions each run (earlier runs' are removed).
        for old in (
            http.get("/v1/subscriptions", params={"tenant_id": "demo"}).json().get("data", [])
        ):
            http.delete(f"/v1/subscriptions/{old['id']}")
        for profile, body_format in PROFILES:
            created = http.post(
                "/v1/subscriptions",
                json={
                    "tenant_id": "demo",
                    "url": f"{receiver_url}/hooks/{profile}",
                    "event_types": ["*"],
                    "signing": profile,
                    "body_format": body_format,
                    "description": f"demo: {profile} signatures",
                },
            )
            if created.status_code != 201:
                raise StreamsError(f"creating the demo subscription failed: {created.text}")
            sub = created.json()
            httpx.post(
                f"{receiver_url}/_control/endpoints/{profile}",
                json={"secret": sub["signing_secret"], "profile": profile},
                timeout=10,
            )
        click.echo(
            f"API {api} (admin token in {state / 'dev-admin-token'}); receiver {receiver_url}\n"
            f"watch it in another terminal: {monitor_command(base)}   "
            "(Ctrl-C here stops the demo)"
        )
        registry = SchemaRegistry.from_settings(settings)
        for line in console_links(http, state):
            click.echo(line)
        published = 0
        last_print = 0.0
        with EventPublisher(settings, registry=registry) as publisher:
            for i in itertools.count():
                if events is not None and published >= events:
                    break
                event_type = SAMPLES[i % len(SAMPLES)]
                publisher.publish(
                    event_type, "demo", registry.sample(event_type), tenant_name="Demo Co."
                )
                published += 1
                if time.monotonic() - last_print >= 1:
                    last_print = time.monotonic()
                    _report(receiver_url, published)
                time.sleep(interval_s)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _received(receiver_url) < published * len(PROFILES):
            time.sleep(0.5)
        _report(receiver_url, published)
    except KeyboardInterrupt:
        click.echo("\nstopping the demo (the broker keeps running: `streams kafka stop`)")
    finally:
        stop_children(children)


def _received(receiver_url: str) -> int:
    try:
        total: int = httpx.get(receiver_url + "/_stats", timeout=2).json()["total"]
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return total


def _report(receiver_url: str, published: int) -> None:
    try:
        entries: list[dict[str, Any]] = httpx.get(receiver_url + "/_ledger", timeout=5).json()[
            "entries"
        ]
    except (httpx.HTTPError, ValueError):
        entries = []
    by_endpoint: dict[str, int] = {}
    valid = 0
    for entry in entries:
        by_endpoint[entry["endpoint"]] = by_endpoint.get(entry["endpoint"], 0) + 1
        valid += entry.get("valid") is True
    detail = ", ".join(f"{name} {count}" for name, count in sorted(by_endpoint.items()))
    click.echo(
        f"published {published:>5} events | received {len(entries):>5} webhooks "
        f"({detail or 'none yet'}) | signatures verified {valid}"
    )


def console_links(http: httpx.Client, state: Path) -> list[str]:
    """Sign-in links to the web console: the operator's, then the demo tenant's.

    ``http`` carries the demo worker's admin token. Each link opens once, within
    10 minutes, so the last line says how to ask for more.
    """
    lines = []
    for who, body in (("operator", {}), ("tenant demo", {"tenant_id": "demo"})):
        resp = http.post("/v1/console/sessions", json=body)
        if resp.status_code != 201:
            raise StreamsError(f"asking for a console link ({who}) failed: {resp.text}")
        lines.append(f"console, {who}: {resp.json()['url']}")
    more = f"STREAMS_STATE_DIR={shlex.quote(str(state))} streams console link"
    lines.append(
        f"(each link opens once, within 10 minutes; more: `{more} --operator` or `--tenant demo`)"
    )
    return lines
