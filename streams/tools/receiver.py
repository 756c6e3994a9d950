"""A webhook receiver for tests, benchmarks, fault injection and the demo.

``streams receiver`` runs it as its own process. Endpoints live under
``/hooks/<name>`` and are configured at run time through a control API, so a
test or benchmark can register the secret of each subscription it creates
and choose how that endpoint behaves:

``POST /_control/endpoints/<name>`` with JSON::

    {"secret": "whsec_...", "profile": "standard",   # verify signatures (optional)
     "status": 200,                                  # the answer
     "fail_first": 0, "fail_status": 500,            # the first N requests fail
     "fail_rate": 0.0,                               # then fail this fraction (seeded)
     "latency_ms": 0,                                # answer after a delay
     "mode": "normal"}                               # or hang | close | reset | trickle | flap

- ``hang``: never answer (the sender's timeout fires);
- ``close``: send the status line (``status``, or ``fail_status`` when failing)
  and headers, then close the connection in the middle of the body;
- ``reset``: close the connection before sending any byte of a response;
- ``trickle``: send headers, then the body one byte every 500 ms (slow loris);
- ``flap``: cycle 500, timeout (hang 15 s), 200.

``POST /_control/endpoints/*`` sets the behaviour of every endpoint not
configured by name (e.g. one secret shared by thousands of subscriptions).

Every request is verified (when a secret is set) and recorded in a ledger:
``GET /_ledger?endpoint=<name>`` returns ``{"entries": [...]}`` with
``(event_id, webhook_id, attempt, received_at, valid, status)``;
``GET /_ledger?since=<n>`` returns entries from the n-th on, and ``next``, the
value of ``since`` for the following call. With ``--ledger FILE`` entries are
also appended to a JSON-lines file (large runs read that file instead; a
receiver made with ``keep_entries=False`` keeps none in memory).
``GET /_stats`` counts requests per endpoint.

It only answers on the address it binds (127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web


@dataclass
class Behaviour:
    secret: str | None = None
    profile: str = "standard"
    status: int = 200
    fail_first: int = 0
    fail_status: int = 500
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    mode: str = "normal"
    retry_after: str | None = None
    seen: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311 - seeded test faults


def verify(profile: str, secret: str, headers: Any, body: bytes) -> bool:
    """Verify a request the way a receiver of each profile would."""
    if profile == "standard":
        msg_id = headers.get("webhook-id", "")
        ts = headers.get("webhook-timestamp", "")
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = base64.b64encode(
            hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        sigs = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
        return any(hmac.compare_digest(expected, s) for s in sigs)
    if profile == "prowlo":
        ts = headers.get("Prowlo-Timestamp", "")
        sig = headers.get("Prowlo-Signature", "").removeprefix("v1=")
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(sig, expected)
    if profile in ("prospektr", "github"):
        name = "X-Prospektr-Signature" if profile == "prospektr" else "X-Hub-Signature-256"
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get(name, ""), expected)
    if profile == "stripe":
        parts = dict(
            p.split("=", 1) for p in headers.get("Stripe-Signature", "").split(",") if "=" in p
        )
        expected = hmac.new(
            secret.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        v1s = [
            p.split("=", 1)[1]
            for p in headers.get("Stripe-Signature", "").split(",")
            if p.startswith("v1=")
        ]
        return any(hmac.compare_digest(expected, v) for v in v1s)
    return False


#: The name under which ``POST /_control/endpoints/<name>`` sets the default behaviour.
DEFAULT_ENDPOINT = "*"


class Receiver:
    def __init__(self, ledger_file: Path | None = None, *, keep_entries: bool = True) -> None:
        self.endpoints: dict[str, Behaviour] = {}
        self.default: dict[str, Any] | None = None  # behaviour of endpoints not named
        self.keep_entries = keep_entries
        self.entries: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._ledger: IO[bytes] | None = open(ledger_file, "ab") if ledger_file else None  # noqa: SIM115

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/hooks/{name}", self.hook)
        app.router.add_post("/_control/endpoints/{name}", self.configure)
        app.router.add_get("/_ledger", self.ledger)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset)
        return app

    async def configure(self, request: web.Request) -> web.Response:
        body = await request.json()
        known = {f for f in Behaviour.__dataclass_fields__ if f not in ("seen", "rng")}
        unknown = set(body) - known
        if unknown:
            return web.json_response({"error": f"unknown fields: {sorted(unknown)}"}, status=422)
        name = request.match_info["name"]
        behaviour = Behaviour(**body)  # checks the fields before anything is stored
        if name == DEFAULT_ENDPOINT:
            self.default = dict(body)
        else:
            self.endpoints[name] = behaviour
        return web.json_response({"ok": True})

    def _behaviour(self, name: str) -> Behaviour:
        behaviour = self.endpoints.get(name)
        if behaviour is None:
            behaviour = Behaviour(**self.default) if self.default else Behaviour()
            self.endpoints[name] = behaviour
        return behaviour

    async def reset(self, request: web.Request) -> web.Response:
        self.endpoints.clear()
        self.default = None
        self.entries.clear()
        self.counts.clear()
        return web.json_response({"ok": True})

    async def ledger(self, request: web.Request) -> web.Response:
        name = request.query.get("endpoint")
        try:
            since = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "`since` must be a whole number"}, status=422)
        total = len(self.entries)
        window = self.entries[since:] if since else self.entries
        entries = [e for e in window if name is None or e["endpoint"] == name]
        return web.Response(
            body=orjson.dumps({"entries": entries, "next": max(total, since)}),
            content_type="application/json",
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": dict(self.counts), "total": sum(self.counts.values())}
        )

    async def hook(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        received = time.time()
        body = await request.read()
        behaviour = self._behaviour(name)
        behaviour.seen += 1
        self.counts[name] += 1
        valid = (
            verify(behaviour.profile, behaviour.secret, request.headers, body)
            if behaviour.secret
            else None
        )
        try:
            event_id = orjson.loads(body).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            event_id = None
        status = behaviour.status
        if behaviour.seen <= behaviour.fail_first or (
            behaviour.fail_rate and behaviour.rng.random() < behaviour.fail_rate
        ):
            status = behaviour.fail_status
        entry = {
            "endpoint": name,
            "event_id": event_id,
            "webhook_id": request.headers.get("webhook-id"),
            "attempt": int(request.headers.get("webhook-attempt", "0") or 0),
            "replay": request.headers.get("webhook-replay") == "true",
            "received_at": received,
            "valid": valid,
            "status": status,
            "mode": behaviour.mode,
        }
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        mode = behaviour.mode
        if mode == "flap":
            mode = ("fail", "hang", "normal")[(behaviour.seen - 1) % 3]
            status = 500 if mode == "fail" else status
            entry["status"] = status if mode != "hang" else None
        self._record(entry)
        if mode == "hang":
            await asyncio.sleep(15 if behaviour.mode == "flap" else 3600)
            return web.Response(status=504)
        if mode in ("close", "reset"):
            transport = request.transport
            if transport is not None:
                if mode == "close":
                    try:
                        reason = HTTPStatus(status).phrase
                    except ValueError:
                        reason = "Status"
                    transport.write(
                        f"HTTP/1.1 {status} {reason}\r\nContent-Length: 100\r\n\r\npartial".encode()
                    )
                transport.close()
            return web.Response(status=500)
        if mode == "trickle":
            response = web.StreamResponse(status=status, headers={"Content-Length": "64"})
            await response.prepare(request)
            for _ in range(64):
                await asyncio.sleep(0.5)
                await response.write(b"x")
            return response
        headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
        return web.Response(status=status, text="ok" if status < 300 else "failed", headers=headers)

    def _record(self, entry: dict[str, Any]) -> None:
        if self.keep_entries:
            self.entries.append(entry)
        if self._ledger is not None:
            self._ledger.write(orjson.dumps(entry) + b"\n")
            self._ledger.flush()


def run(host: str, port: int, ledger_file: Path | None) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a faust dependency
        pass
    web.run_app(Receiver(ledger_file).app(), host=host, port=port, print=None, access_log=None)
