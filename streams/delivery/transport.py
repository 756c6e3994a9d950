"""How webhook requests are sent: the one place the HTTP transport is chosen.

httpx is the HTTP API of the delivery stage: each attempt is an
``httpx.Request`` and its answer an ``httpx.Response``. The transport under
it is aiohttp (``httpx_aiohttp.AiohttpTransport`` on one shared
``aiohttp.ClientSession`` per process), and requests go straight to the
transport's ``handle_async_request`` rather than through ``AsyncClient``:
httpx's default transport rescans its whole pool on every request and stops
scaling long before a webhook worker's concurrency (see docs/benchmarks.md for
the measurements behind this choice).

Guarantees of :class:`HttpSender`:

- timeouts: connect ``STREAMS_CONNECT_TIMEOUT``; the whole request bounded by
  the subscription's timeout (``STREAMS_REQUEST_TIMEOUT`` by default, at most
  30 s) through ``asyncio.timeout``;
- redirects are never followed (a 3xx is an answer like any other);
- at most the first 4 KiB of the response body are read, then the response
  is released;
- TLS is verified, except in development mode;
- destinations are checked again at connect time: names are resolved by
  :class:`PolicyResolver`, which refuses the connection if any address the
  name resolves to is refused (DNS rebinding cannot slip past the check made
  when the subscription was saved), and the socket connects only to the
  addresses it returned. IP literals never reach a resolver, so they are
  checked by :func:`~streams.destinations.check_url` before each request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from streams.config import Settings
from streams.delivery.engine import SendResult
from streams.delivery.outcome import ErrorKind
from streams.delivery.request import PreparedRequest
from streams.destinations import IPNetwork, check_url, resolve_and_check
from streams.errors import DestinationRefusedError

MAX_RESPONSE_BYTES = 4096
#: Connections open at once across all endpoints (lanes bound each endpoint).
MAX_CONNECTIONS = 1024


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that applies the destination policy to every answer."""

    def __init__(self, allowlist: tuple[IPNetwork, ...]) -> None:
        self.allowlist = allowlist

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve_and_check(host, port, allowlist=self.allowlist)
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


def _ssl_context(settings: Settings) -> ssl.SSLContext | bool:
    if settings.development:
        return False  # self-signed receivers are allowed only in development
    return ssl.create_default_context()


class HttpSender:
    """Send prepared requests; every failure becomes a :class:`SendResult`, never an exception."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._transport: AiohttpTransport | None = None

    def _ensure(self) -> AiohttpTransport:
        if self._transport is None:
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS,
                limit_per_host=0,
                use_dns_cache=False,  # resolve (and check) for every new connection
                resolver=PolicyResolver(self.settings.destination_allowlist),
                ssl=_ssl_context(self.settings),
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=False
            )
            self._transport = AiohttpTransport(client=self._session)
        return self._transport

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._transport = None

    async def send(self, request: PreparedRequest, *, timeout_s: float) -> SendResult:
        started = time.perf_counter()

        def result(
            status: int | None = None,
            body: bytes = b"",
            error: ErrorKind | None = None,
            detail: str | None = None,
            retry_after: str | None = None,
        ) -> SendResult:
            return SendResult(
                status=status,
                body=body,
                error=error,
                detail=detail,
                duration_ms=(time.perf_counter() - started) * 1000,
                retry_after=retry_after,
            )

        try:
            check_url(
                request.url,
                allow_http=self.settings.development,
                allowlist=self.settings.destination_allowlist,
            )
        except DestinationRefusedError as exc:
            return result(error=ErrorKind.DESTINATION_REFUSED, detail=str(exc))
        transport = self._ensure()
        connect = min(self.settings.connect_timeout_s, timeout_s)
        http_request = httpx.Request(
            "POST",
            request.url,
            headers=request.headers,
            content=request.body,
            extensions={"timeout": {"connect": connect, "read": timeout_s, "pool": timeout_s}},
        )
        try:
            async with asyncio.timeout(timeout_s):
                response = await transport.handle_async_request(http_request)
                try:
                    body = await _read_capped(response, MAX_RESPONSE_BYTES)
                finally:
                    await response.aclose()
        except DestinationRefusedError as exc:
            return result(error=ErrorKind.DESTINATION_REFUSED, detail=str(exc))
        except TimeoutError:
            return result(
                error=ErrorKind.TOTAL_TIMEOUT, detail=f"no complete answer within {timeout_s:g}s"
            )
        except httpx.HTTPError as exc:
            kind, detail = _classify_transport_error(exc)
            return result(error=kind, detail=detail)
        except (aiohttp.ClientError, OSError) as exc:
            return result(error=ErrorKind.CONNECTION_RESET, detail=_describe(exc))
        return result(
            status=response.status_code,
            body=body,
            retry_after=response.headers.get("retry-after"),
        )


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def _classify_transport_error(exc: httpx.HTTPError) -> tuple[ErrorKind, str]:
    cause: Any = exc.__cause__
    if isinstance(exc, httpx.ConnectTimeout):
        return ErrorKind.CONNECT_TIMEOUT, "connect timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return ErrorKind.READ_TIMEOUT, "read timeout"
    if isinstance(exc, httpx.WriteTimeout):
        return ErrorKind.WRITE_TIMEOUT, "write timeout"
    if isinstance(exc, httpx.PoolTimeout):
        return ErrorKind.POOL_TIMEOUT, "connection pool timeout"
    if isinstance(exc, httpx.TimeoutException):
        return ErrorKind.TOTAL_TIMEOUT, "timeout"
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS_ERROR, f"DNS lookup failed: {_describe(cause)}"
    if isinstance(cause, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return ErrorKind.TLS_ERROR, f"TLS: {_describe(cause)}"
    if isinstance(exc, httpx.ConnectError):
        return ErrorKind.CONNECT_ERROR, _describe(cause or exc)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return ErrorKind.CONNECTION_RESET, _describe(cause or exc)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ErrorKind.INVALID_URL, _describe(exc)
    return ErrorKind.PROTOCOL_ERROR, _describe(cause or exc)
