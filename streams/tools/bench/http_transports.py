#!/usr/bin/env python3
"""Benchmark HTTP client stacks for the webhook delivery stage.

Sends signed 1 KiB JSON POSTs to one URL with a fixed number of requests in
flight and reports throughput, client CPU time per 1,000 requests and latency
percentiles. Every variant does the same work per request: sign the payload
(HMAC-SHA256, Standard-Webhooks style headers), send it, read at most
``--max-body`` bytes of the response body and release the connection.

Variants (``--variant``):

  httpx-default               httpx.AsyncClient with its default (httpcore) transport
  httpx-aiohttp               httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport)
  aiohttp-transport-direct    httpx.Request -> AiohttpTransport.handle_async_request
                              (no AsyncClient)
  httpx-request-aiohttp-lean  httpx.Request -> thin adapter that calls aiohttp directly
  httpx-request-aiohttp-lean-cached-url
                              same, endpoint URL parsed once (httpx.URL + yarl.URL)
  aiohttp-raw                 aiohttp.ClientSession only (baseline)
  httpx-pyreqwest             httpx.AsyncClient(transport=pyreqwest HttpxTransport)
                              (the pyreqwest variants need `pip install pyreqwest`)
  httpx-curl-cffi             httpx.AsyncClient(transport=httpx_curl_cffi.AsyncCurlTransport)
  curl-cffi-transport-direct  httpx.Request -> AsyncCurlTransport.handle_async_request
                              (the curl-cffi variants need `pip install httpx-curl-cffi`)
  pyreqwest-transport-direct  httpx.Request -> pyreqwest HttpxTransport.handle_async_request
  pyreqwest-raw               pyreqwest Client only

The run stops after ``--requests`` requests or ``--seconds`` seconds, whichever
comes first, so it is always bounded. It is a load generator: it refuses
URLs whose host is not a loopback address unless --allow-non-loopback is given.

Example:
  taskset -c 1 python -m streams.tools.bench.http_transports --variant aiohttp-raw \
      --concurrency 64 --requests 30000 --seconds 5 --runs 3 \
      --url http://127.0.0.1:18080/
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import aiohttp
import httpx
import yarl

try:
    import orjson

    def dumps(obj: object) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - orjson is optional here

    def dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


SECRET = b"benchmark-signing-secret-0123456789abcdef"
CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0


# --------------------------------------------------------------------------
# Payload and signing (identical for every variant)
# --------------------------------------------------------------------------


def make_payload(size: int) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "order.created", "id": "evt_0", "data": {"pad": ""}}
    pad = max(0, size - len(dumps(base)))
    base["data"]["pad"] = "x" * pad
    return base


def signed_message(payload: dict[str, Any], seq: int) -> tuple[bytes, dict[str, str]]:
    payload["id"] = f"evt_{seq:012d}"
    body = dumps(payload)
    msg_id = payload["id"]
    ts = str(int(time.time()))
    mac = hmac.new(SECRET, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    return body, headers


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------


def httpx_timeout() -> httpx.Timeout:
    # httpx has no "total" timeout; callers wrap with asyncio.timeout for that.
    return httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT)


def timeout_extension() -> dict[str, Any]:
    return {"timeout": httpx_timeout().as_dict()}


async def read_capped_httpx(response: httpx.Response, cap: int) -> int:
    """Read at most `cap` raw bytes, then close the response."""
    got = 0
    try:
        async for chunk in response.aiter_raw():
            got += len(chunk)
            if got >= cap:
                break
    finally:
        await response.aclose()
    return min(got, cap)


async def read_capped_aiohttp(response: aiohttp.ClientResponse, cap: int) -> int:
    """Read at most `cap` body bytes (the caller's `async with` releases it).

    `StreamReader.read(n)` returns what is buffered, up to n bytes, so loop.
    """
    got = 0
    stream = response.content
    while got < cap:
        chunk = await stream.read(cap - got)
        if not chunk:
            break
        got += len(chunk)
        if stream.at_eof():
            break
    return got


def make_aiohttp_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=concurrency,
        use_dns_cache=False,  # resolution must be re-checked per new connection
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # never replay receivers' cookies
        timeout=aiohttp.ClientTimeout(total=TOTAL_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
        auto_decompress=False,
    )


class Variant:
    """Owns client objects for one run; `send` is the per-request hot path."""

    def __init__(self, url: str, concurrency: int, max_body: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.max_body = max_body

    async def open(self) -> None:  # pragma: no cover - overridden
        pass

    async def close(self) -> None:  # pragma: no cover - overridden
        pass

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        raise NotImplementedError


class HttpxDefault(Variant):
    async def open(self) -> None:
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        self.client = httpx.AsyncClient(
            limits=limits, timeout=httpx_timeout(), follow_redirects=False
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        request = self.client.build_request("POST", self.url, content=body, headers=headers)
        response = await self.client.send(request, stream=True)
        return response.status_code, await read_capped_httpx(response, self.max_body)


class HttpxAiohttp(HttpxDefault):
    async def open(self) -> None:
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(client=lambda: make_aiohttp_session(self.concurrency))
        self.client = httpx.AsyncClient(
            transport=transport, timeout=httpx_timeout(), follow_redirects=False
        )


class AiohttpTransportDirect(Variant):
    async def open(self) -> None:
        from httpx_aiohttp import AiohttpTransport

        self.transport = AiohttpTransport(client=lambda: make_aiohttp_session(self.concurrency))

    async def close(self) -> None:
        await self.transport.aclose()

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        request = httpx.Request(
            "POST", self.url, content=body, headers=headers, extensions=timeout_extension()
        )
        response = await self.transport.handle_async_request(request)
        return response.status_code, await read_capped_httpx(response, self.max_body)


class HttpxRequestAiohttpLean(Variant):
    """httpx.Request stays the API; a ~15-line adapter hands it to aiohttp."""

    async def open(self) -> None:
        self.session = make_aiohttp_session(self.concurrency)

    async def close(self) -> None:
        await self.session.close()

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        request = httpx.Request("POST", self.url, content=body, headers=headers)
        async with self.session.request(
            request.method,
            str(request.url),
            headers=request.headers.multi_items(),
            data=request.content,
            allow_redirects=False,
        ) as response:
            return response.status, await read_capped_aiohttp(response, self.max_body)


class HttpxRequestAiohttpLeanCachedUrl(HttpxRequestAiohttpLean):
    """As above, but the endpoint URL is parsed once (httpx.URL and yarl.URL),
    as a delivery engine can do per subscription endpoint."""

    async def open(self) -> None:
        await super().open()
        self.httpx_url = httpx.URL(self.url)
        self.yarl_url = yarl.URL(str(self.httpx_url))

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        request = httpx.Request("POST", self.httpx_url, content=body, headers=headers)
        async with self.session.request(
            request.method,
            self.yarl_url,
            headers=request.headers.multi_items(),
            data=request.content,
            allow_redirects=False,
        ) as response:
            return response.status, await read_capped_aiohttp(response, self.max_body)


class AiohttpRaw(Variant):
    async def open(self) -> None:
        self.session = make_aiohttp_session(self.concurrency)

    async def close(self) -> None:
        await self.session.close()

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        async with self.session.post(
            self.url, data=body, headers=headers, allow_redirects=False
        ) as response:
            return response.status, await read_capped_aiohttp(response, self.max_body)


def make_pyreqwest_client(concurrency: int) -> Any:
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    return (
        ClientBuilder()
        .follow_redirects(False)
        .max_connections(concurrency)
        .connect_timeout(timedelta(seconds=CONNECT_TIMEOUT))
        .timeout(timedelta(seconds=TOTAL_TIMEOUT))
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
        .build()
    )


class HttpxPyreqwest(HttpxDefault):
    async def open(self) -> None:
        from pyreqwest.compatibility.httpx import HttpxTransport

        transport = HttpxTransport(make_pyreqwest_client(self.concurrency))
        self.client = httpx.AsyncClient(
            transport=transport, timeout=httpx_timeout(), follow_redirects=False
        )


class PyreqwestTransportDirect(AiohttpTransportDirect):
    async def open(self) -> None:
        from pyreqwest.compatibility.httpx import HttpxTransport

        self.transport = HttpxTransport(make_pyreqwest_client(self.concurrency))


class PyreqwestRaw(Variant):
    async def open(self) -> None:
        self.client = make_pyreqwest_client(self.concurrency)

    async def close(self) -> None:
        await self.client.close()

    async def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        builder = self.client.post(self.url).headers(headers).body_bytes(body)
        async with builder.build_streamed() as response:
            got = 0
            while got < self.max_body:
                chunk = await response.body_reader.read(self.max_body - got)
                if chunk is None:  # end of body
                    break
                got += len(chunk)
            return response.status, got


def make_curl_transport(concurrency: int) -> Any:
    from httpx_curl_cffi import AsyncCurlTransport

    return AsyncCurlTransport(max_connections=concurrency)


class HttpxCurlCffi(HttpxDefault):
    async def open(self) -> None:
        self.client = httpx.AsyncClient(
            transport=make_curl_transport(self.concurrency),
            timeout=httpx_timeout(),
            follow_redirects=False,
        )


class CurlCffiTransportDirect(AiohttpTransportDirect):
    async def open(self) -> None:
        self.transport = make_curl_transport(self.concurrency)


VARIANTS: dict[str, type[Variant]] = {
    "httpx-default": HttpxDefault,
    "httpx-aiohttp": HttpxAiohttp,
    "aiohttp-transport-direct": AiohttpTransportDirect,
    "httpx-request-aiohttp-lean": HttpxRequestAiohttpLean,
    "httpx-request-aiohttp-lean-cached-url": HttpxRequestAiohttpLeanCachedUrl,
    "aiohttp-raw": AiohttpRaw,
    "httpx-pyreqwest": HttpxPyreqwest,
    "pyreqwest-transport-direct": PyreqwestTransportDirect,
    "pyreqwest-raw": PyreqwestRaw,
    "httpx-curl-cffi": HttpxCurlCffi,
    "curl-cffi-transport-direct": CurlCffiTransportDirect,
}


# --------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------


@dataclass
class RunResult:
    variant: str
    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    cpu_s: float
    rps: float
    cpu_ms_per_req: float  # == CPU seconds per 1,000 requests
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return ru.ru_utime + ru.ru_stime


async def drive(
    variant: Variant,
    name: str,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    payload: dict[str, Any],
) -> RunResult:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    issued = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            seq = issued
            issued += 1
            body, headers = signed_message(payload, seq)
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(TOTAL_TIMEOUT):
                    status, _ = await variant.send(body, headers)
            except Exception as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0

    latencies.sort()
    done = len(latencies)
    total = done + sum(errors.values())
    return RunResult(
        variant=name,
        concurrency=concurrency,
        requests=total,
        ok=statuses.get(200, 0),
        errors=dict(errors),
        wall_s=round(wall, 3),
        cpu_s=round(cpu, 3),
        rps=round(total / wall, 1) if wall else 0.0,
        cpu_ms_per_req=round(1000 * cpu / total, 3) if total else float("nan"),
        p50_ms=round(1000 * percentile(latencies, 0.50), 2),
        p99_ms=round(1000 * percentile(latencies, 0.99), 2),
        max_ms=round(1000 * latencies[-1], 2) if latencies else float("nan"),
        statuses={str(k): v for k, v in statuses.items()},
    )


async def one_run(args: argparse.Namespace) -> RunResult:
    variant = VARIANTS[args.variant](args.url, args.concurrency, args.max_body)
    payload = make_payload(args.body_size)
    await variant.open()
    try:
        # Warm-up: open the connection pool and JIT-free caches; not measured.
        await drive(variant, args.variant, args.concurrency, args.warmup, 30.0, payload)
        return await drive(
            variant, args.variant, args.concurrency, args.requests, args.seconds, payload
        )
    finally:
        await variant.close()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("httpx", "httpcore", "aiohttp", "httpx-aiohttp", "uvloop", "sniffio", "pyreqwest"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def is_loopback_url(url: str) -> bool:
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    p.add_argument("--concurrency", "-c", type=int, default=64, help="requests in flight")
    p.add_argument("--requests", "-n", type=int, default=20000, help="max requests per run")
    p.add_argument("--seconds", type=float, default=5.0, help="max seconds per run")
    p.add_argument("--runs", type=int, default=3, help="measured runs; median is reported")
    p.add_argument("--warmup", type=int, default=None, help="warm-up requests (default 4*C)")
    p.add_argument("--url", default="http://127.0.0.1:18080/")
    p.add_argument("--body-size", type=int, default=1024)
    p.add_argument("--max-body", type=int, default=4096, help="response bytes to read at most")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--json-out", help="append one JSON line per run to this file")
    p.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --url whose host is not 127.0.0.0/8, ::1 or localhost",
    )
    args = p.parse_args(argv)
    if not args.allow_non_loopback and not is_loopback_url(args.url):
        p.error(f"--url {args.url!r} is not a loopback address (see --allow-non-loopback)")
    if args.warmup is None:
        args.warmup = 4 * args.concurrency
    if args.requests < 1 or args.concurrency < 1 or args.runs < 1 or args.seconds <= 0:
        p.error("--requests, --concurrency, --runs and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner: Callable[[Coroutine[Any, Any, RunResult]], RunResult]
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run

    results = []
    for i in range(args.runs):
        r = runner(one_run(args))
        results.append(r)
        print(
            f"run {i + 1}: {r.variant} c={r.concurrency} n={r.requests} "
            f"rps={r.rps:.0f} cpu/1k={r.cpu_ms_per_req:.3f}s "
            f"p50={r.p50_ms}ms p99={r.p99_ms}ms errors={r.errors}",
            file=sys.stderr,
        )
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps({**asdict(r), "run": i + 1, "versions": versions()}) + "\n")

    med = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "concurrency": args.concurrency,
                "median_rps": statistics.median(r.rps for r in results),
                "median_cpu_s_per_1k": statistics.median(r.cpu_ms_per_req for r in results),
                "median_p50_ms": statistics.median(r.p50_ms for r in results),
                "median_p99_ms": statistics.median(r.p99_ms for r in results),
                "median_run": asdict(med),
                "loop": args.loop,
                "versions": versions(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
