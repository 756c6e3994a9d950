"""Deliveries through an egress proxy (``STREAMS_EGRESS_PROXY``), with the SSRF rules kept.

Receivers that allowlist their callers need fixed source addresses; workers
that scale and move have none. With ``STREAMS_EGRESS_PROXY=http://host:port``
every delivery goes through that HTTP CONNECT proxy, whose addresses are
fixed, so the addresses to publish are the proxy's.

How a delivery goes through it (:class:`EgressRouter`, used by
:class:`~streams.delivery.transport.HttpSender`):

1. **Resolve and check first.** The destination's name is resolved and every
   address checked by :func:`~streams.destinations.resolve_and_check`, the
   same rule as direct connections, *before* the proxy is asked for anything.
   A refused destination never produces a CONNECT: the proxy is never asked
   to reach a loopback, private or metadata address (it usually sits inside
   the network such addresses belong to).
2. **Pin the checked address.** The CONNECT names that checked IP
   (``CONNECT 93.184.216.34:443``), not the host name, so the proxy cannot
   resolve the name again to something else (DNS rebinding between our check
   and its lookup). An IPv4 address is preferred when the name has both: the
   proxy's fixed addresses and the receivers' allowlists are mostly IPv4.
   The ``Host`` header (also sent on the CONNECT) keeps the name.
3. **TLS end to end, verified against the name.** The tunnel carries the
   destination's TLS; the certificate is checked against the destination's
   host name (aiohttp's ``server_hostname``), exactly as without a proxy. The
   proxy sees only ciphertext. Pooled tunnels are keyed by address, port and
   name, so one name's verified connection never carries another's request.
4. **Only the proxy is connected to.** The session's resolver answers only
   for the proxy's host and its socket guard opens sockets only to the
   proxy's addresses: the proxy's own (typically private) address is exempt
   from the destination rules, and nothing can bypass it.

Checked answers are kept for :data:`PIN_TTL_S` (a resolution per request
would cost a DNS round trip each time); since the pinned address itself was
checked, keeping it cannot let a refused address through.

Failures of the proxy itself are retryable like any connection failure, with
an error that says what to fix (:meth:`EgressRouter.failure`): the proxy
unreachable (down, wrong address), or refusing the tunnel (``407``: its
credentials; ``403``: its rules; ``502``/``503``/``504``: it could not reach
the destination).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from streams.destinations import (
    EgressProxy,
    IPAddress,
    IPNetwork,
    Resolver,
    ip_literal,
    resolve_and_check,
)
from streams.errors import DestinationRefusedError
from streams.ops.logs import register_secret

#: How long a checked (name, port) -> address answer is reused, in seconds.
PIN_TTL_S = 30.0
#: Answers kept at most (one per destination host and port).
MAX_PINS = 10_000

_TUNNEL_HINTS = {
    407: "the proxy wants credentials: check the user and password in STREAMS_EGRESS_PROXY",
    403: "the proxy's rules refuse this destination: allow it on the proxy",
    502: "the proxy could not reach the destination",
    503: "the proxy could not reach the destination",
    504: "the proxy timed out reaching the destination",
}


class ProxyOnlyResolver(AbstractResolver):
    """aiohttp resolver of a proxied session: it resolves the proxy's host and nothing else.

    The addresses it hands out are the only ones :meth:`EgressRouter.socket_factory`
    lets a socket connect to.
    """

    def __init__(self, proxy: EgressProxy, allowed: set[IPAddress]) -> None:
        self.proxy = proxy
        self.allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self.proxy.host.rstrip("."):
            raise DestinationRefusedError(
                f"with STREAMS_EGRESS_PROXY set, connections go only to the proxy; refused a "
                f"direct connection to {host}"
            )
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        out: list[ResolveResult] = []
        for info_family, _type, proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            self.allowed.add(address)
            out.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=info_family,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        return out

    async def close(self) -> None:
        return None


class EgressRouter:
    """Routes every request of a session through the proxy, pinned to a checked address."""

    def __init__(
        self,
        proxy: EgressProxy,
        allowlist: tuple[IPNetwork, ...],
        *,
        resolver: Resolver | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.proxy = proxy
        self.allowlist = allowlist
        self._resolver = resolver
        self._clock = clock
        self._pins: dict[tuple[str, int], tuple[float, IPAddress]] = {}
        literal = ip_literal(proxy.host)
        self.allowed: set[IPAddress] = {literal} if literal is not None else set()
        self.resolver = ProxyOnlyResolver(proxy, self.allowed)
        # aiohttp copies proxy_headers into each request (and adds Host to the copy).
        url = URL.build(scheme="http", host=proxy.host, port=proxy.port)
        self._request_kwargs: dict[str, Any] = {"proxy": url}
        if proxy.headers:
            self._request_kwargs["proxy_headers"] = proxy.headers

    @classmethod
    def from_setting(cls, text: str, allowlist: tuple[IPNetwork, ...]) -> EgressRouter | None:
        """The router for ``STREAMS_EGRESS_PROXY``'s value, or None when it is empty."""
        if not text:
            return None
        proxy = EgressProxy.parse(text)
        if proxy.password:
            register_secret(proxy.password)  # masked in every log line (streams.ops.logs)
        return cls(proxy, allowlist)

    def socket_factory(self) -> Any:
        """aiohttp ``socket_factory``: sockets only to the proxy's addresses."""

        def factory(addr_info: Any) -> socket.socket:
            family, type_, proto, _canon, sockaddr = addr_info
            address = ipaddress.ip_address(sockaddr[0])
            if address not in self.allowed:
                raise DestinationRefusedError(
                    f"with STREAMS_EGRESS_PROXY set, connections go only to the proxy; refused "
                    f"a socket to {address}"
                )
            return socket.socket(family=family, type=type_, proto=proto)

        return factory

    async def pin(self, host: str, port: int) -> IPAddress:
        """The checked address to tunnel to for ``host``; raises DestinationRefusedError
        (a refused address) or OSError (the name does not resolve)."""
        key = (host, port)
        now = self._clock()
        cached = self._pins.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await resolve_and_check(
            host, port, allowlist=self.allowlist, resolver=self._resolver
        )
        chosen = next((a for a in addresses if a.version == 4), addresses[0])
        if len(self._pins) >= MAX_PINS:
            self._pins.clear()
        self._pins[key] = (now + PIN_TTL_S, chosen)
        return chosen

    async def route(self, url: URL) -> tuple[URL, dict[str, Any]]:
        """The URL to request (its host replaced by the checked address) and the
        ``session.request`` arguments that send it through the proxy."""
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self.pin(host, port)
        kwargs = dict(self._request_kwargs)
        if ip_literal(host) is None:
            kwargs["server_hostname"] = host.rstrip(".")
        return url.with_host(str(address)), kwargs

    def failure(self, exc: BaseException) -> str | None:
        """What a failure of the proxy itself means, or None when it is not one."""
        where = f"egress proxy {self.proxy.describe()}"
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            hint = _TUNNEL_HINTS.get(exc.status, "see the proxy's log")
            reason = (exc.message or "").strip()[:100]
            return f"{where} refused the tunnel: HTTP {exc.status} {reason}; {hint}".replace(
                "  ", " "
            )
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            why = exc.os_error.strerror or type(exc.os_error).__name__
            return (
                f"{where} is unreachable ({why}); deliveries are retried until it answers "
                "(check that it runs and STREAMS_EGRESS_PROXY)"
            )
        return None
