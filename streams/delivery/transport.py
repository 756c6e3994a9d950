"""How webhook requests are sent: the one place the HTTP transport is chosen.

httpx is the HTTP API of the delivery stage: each attempt is built as an
``httpx.Request`` (URL parsed once per destination and cached). It is sent by
a thin adapter over one shared ``aiohttp.ClientSession`` per process, not by
``httpx.AsyncClient``: measured on this machine (docs/transport-measurements.md),
``AsyncClient`` with its default transport managed ~295 req/s at 64 in flight
(its pool is rescanned on every request), ``AsyncClient`` over
httpx-aiohttp's transport ~2,300, that transport called directly ~4,300, and
this adapter ~4,900-6,000. The adapter also classifies aiohttp's own errors
(httpx-aiohttp 0.2.0 reports refused connections, DNS and TLS failures all as
``ConnectTimeout``) and keeps no cookie jar (receivers' ``Set-Cookie`` must
never be replayed to them on later deliveries).

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
  checked by :func:`~streams.destinations.check_url` (a pure check of the
  URL text, so its pass is cached per URL) before requests, and a
  ``socket_factory`` guard checks the final address of every connect attempt,
  literal or resolved, as the last line;
- with ``STREAMS_EGRESS_PROXY`` set, every request goes through that CONNECT
  proxy to an address checked (and pinned) before the proxy is asked, TLS
  verified against the destination's name (:mod:`streams.delivery.proxy`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from streams.config import Settings
from streams.delivery.engine import SendResult
from streams.delivery.outcome import ErrorKind
from streams.delivery.proxy import EgressRouter
from streams.delivery.request import PreparedRequest
from streams.destinations import IPNetwork, check_url, refusal_reason, resolve_and_check
from streams.errors import DestinationRefusedError
from streams.ops.logs import redact

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


def guarded_socket_factory(allowlist: tuple[IPNetwork, ...]) -> Any:
    """aiohttp ``socket_factory``: refuse to open a socket to a refused address."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _canon, sockaddr = addr_info
        reason = refusal_reason(ipaddress.ip_address(sockaddr[0]), allowlist)
        if reason is not None:
            raise DestinationRefusedError(f"refused to connect to {sockaddr[0]}: {reason}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


class HttpSender:
    """Send prepared requests; every failure becomes a :class:`SendResult`, never an exception."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, tuple[httpx.URL, URL]] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self.egress = EgressRouter.from_setting(
            settings.egress_proxy.reveal(), settings.destination_allowlist
        )

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None:
            allowlist = self.settings.destination_allowlist
            resolver: AbstractResolver = PolicyResolver(allowlist)
            socket_factory = guarded_socket_factory(allowlist)
            if self.egress is not None:
                # Only the proxy is ever connected to; destinations are checked in send().
                resolver, socket_factory = self.egress.resolver, self.egress.socket_factory()
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS,
                limit_per_host=0,  # lanes bound each subscription
                use_dns_cache=False,  # resolve (and check) for every new connection
                resolver=resolver,
                socket_factory=socket_factory,
                ssl=_ssl_context(self.settings),
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, url: str) -> tuple[httpx.URL, URL]:
        """The URL checked (:func:`check_url`) and parsed, once per distinct URL.

        Both depend only on the URL text and this sender's settings, so a URL
        that passed once passes again; refusals are not cached (they raise).
        Names are still resolved and checked at every new connection.
        """
        cached = self._urls.get(url)
        if cached is None:
            check_url(
                url,
                allow_http=self.settings.development,
                allowlist=self.settings.destination_allowlist,
            )
            if len(self._urls) > 100_000:
                self._urls.clear()
            cached = (httpx.URL(url), URL(url, encoded=False))
            self._urls[url] = cached
        return cached

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        """aiohttp's part of the timeouts: connecting only, one object per request timeout.

        The whole request is bounded by ``asyncio.timeout`` in :meth:`send`, which
        starts first, so a read timeout of the same length could never fire first;
        leaving it out spares aiohttp a timer reset on every chunk it reads.
        """
        cached = self._timeouts.get(timeout_s)
        if cached is None:
            if len(self._timeouts) > 1000:  # one per distinct subscription timeout
                self._timeouts.clear()
            connect = min(self.settings.connect_timeout_s, timeout_s)
            cached = self._timeouts[timeout_s] = aiohttp.ClientTimeout(sock_connect=connect)
        return cached

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
            http_url, yarl_url = self._url(request.url)
        except DestinationRefusedError as exc:
            return result(error=ErrorKind.DESTINATION_REFUSED, detail=str(exc))
        except (httpx.InvalidURL, ValueError) as exc:
            return result(error=ErrorKind.INVALID_URL, detail=_describe(exc))
        try:
            http_request = _http_request(http_url, request)
        except ValueError as exc:  # UnicodeEncodeError included; never the header's value
            return result(
                error=ErrorKind.INVALID_URL, detail=f"request headers: {type(exc).__name__}"
            )
        session = self._ensure()
        # Kept when the body then fails: a status wins over a later error (outcome.classify).
        status: int | None = None
        retry_after: str | None = None
        try:
            async with asyncio.timeout(timeout_s):
                via: dict[str, Any] = {}
                if self.egress is not None:
                    # Resolved and checked before the proxy hears of it (streams.delivery.proxy).
                    yarl_url, via = await self.egress.route(yarl_url)
                async with session.request(
                    http_request.method,
                    yarl_url,
                    headers=http_request.headers.multi_items(),
                    data=http_request.content,
                    allow_redirects=False,
                    timeout=self._timeout(timeout_s),
                    **via,
                ) as response:
                    status = response.status
                    retry_after = response.headers.get("retry-after")
                    body = await _read_capped(response, MAX_RESPONSE_BYTES)
                    return result(status=status, body=body, retry_after=retry_after)
        except DestinationRefusedError as exc:
            return result(error=ErrorKind.DESTINATION_REFUSED, detail=str(exc))
        except Exception as exc:
            proxy_failure = None if self.egress is None else self.egress.failure(exc)
            if proxy_failure is not None:
                return result(error=ErrorKind.PROXY_ERROR, detail=proxy_failure)
            kind, detail = classify_exception(exc, timeout_s)
            return result(status=status, error=kind, detail=detail, retry_after=retry_after)


def _http_request(url: httpx.URL, request: PreparedRequest) -> httpx.Request:
    """The attempt as an ``httpx.Request``, the API type: headers checked, body framed.

    Header names are RFC 9110 tokens (checked when a subscription is saved), so
    ASCII. Values go as UTF-8: a custom header value with non-ASCII text is sent
    as its UTF-8 bytes (httpx's own str handling would refuse it, and the attempt
    with it). Handing httpx bytes also skips its per-value encoding: 25 instead of
    37 us per request (docs/benchmarks.md).
    """
    headers = [(k.encode("ascii"), v.encode("utf-8")) for k, v in request.headers.items()]
    return httpx.Request("POST", url, headers=headers, content=request.body)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; ``read(n)`` returns what is buffered, so loop."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """The exception as a short detail; credentials in URLs it names are masked."""
    text = str(exc) or type(exc).__name__
    return redact(text)[:300]


def _describe_connect(exc: aiohttp.ClientConnectorError) -> str:
    """A failed connection without aiohttp's ``ssl:default``: its text names the session's
    TLS setting even for a plain-http URL, where no TLS was ever involved."""
    reason = exc.strerror or str(exc.os_error) or type(exc.os_error).__name__
    return _describe(ValueError(f"cannot connect to {exc.host}:{exc.port} [{reason}]"))


def _refusal_in(exc: BaseException) -> DestinationRefusedError | None:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, DestinationRefusedError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def classify_exception(exc: BaseException, timeout_s: float) -> tuple[ErrorKind, str]:
    """aiohttp's (and asyncio's) failures as an error kind and a detail without secrets."""
    refused = _refusal_in(exc)
    if refused is not None:
        return ErrorKind.DESTINATION_REFUSED, str(refused)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorKind.CONNECT_TIMEOUT, "connect timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ErrorKind.READ_TIMEOUT, "read timeout"
    if isinstance(exc, TimeoutError):
        return ErrorKind.TOTAL_TIMEOUT, f"no complete answer within {timeout_s:g}s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS_ERROR, f"DNS lookup failed: {_describe_connect(exc)}"
    if isinstance(exc, socket.gaierror):
        return ErrorKind.DNS_ERROR, f"DNS lookup failed: {_describe(exc)}"
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return ErrorKind.TLS_ERROR, f"TLS: {_describe(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT_ERROR, f"connection refused: {_describe_connect(exc)}"
    if isinstance(
        exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError)
    ):
        return ErrorKind.CONNECTION_RESET, f"connection reset: {_describe(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorKind.PROTOCOL_ERROR, f"invalid HTTP response: {_describe(exc)}"
    if isinstance(exc, (aiohttp.InvalidURL, ValueError)):
        return ErrorKind.INVALID_URL, _describe(exc)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return ErrorKind.CONNECTION_RESET, _describe(exc)
    return ErrorKind.PROTOCOL_ERROR, _describe(exc)
