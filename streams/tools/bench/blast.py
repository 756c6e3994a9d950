"""A raw aiohttp load generator for the receiver's ceiling when ``wrk`` is missing.

``python -m streams.tools.bench.blast --url http://127.0.0.1:P/hooks/x --seconds 5``
POSTs the same signed body with C requests in flight for a bounded time and
prints one JSON line: requests, rps, p50/p99 latency, non-2xx, errors.
Loopback URLs only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from streams.tools.bench.stats import percentile


async def blast(
    url: str, body: bytes, headers: dict[str, str], seconds: float, concurrency: int
) -> dict[str, object]:
    import aiohttp

    latencies: list[float] = []
    non_2xx = 0
    errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal non_2xx, errors
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if not 200 <= resp.status < 300:
                            non_2xx += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t)

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        took = time.monotonic() - started
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / took),
        "p50_ms": round((percentile(latencies, 50) or 0) * 1000, 2),
        "p99_ms": round((percentile(latencies, 99) or 0) * 1000, 2),
        "non_2xx": non_2xx,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.bench.blast")
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--headers", default="{}", help="JSON object of headers")
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost"):
        parser.error("only loopback URLs (127.0.0.1)")
    if not 0 < args.seconds <= 600 or not 1 <= args.concurrency <= 4096:
        parser.error("--seconds in (0, 600], --concurrency in [1, 4096]")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(
        blast(
            args.url,
            args.body_file.read_bytes(),
            orjson.loads(args.headers),
            args.seconds,
            args.concurrency,
        )
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
