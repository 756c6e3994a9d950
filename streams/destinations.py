"""The destination policy: which URLs and addresses webhooks may be sent to.

A webhook URL is chosen by a customer, so without a policy the platform could
be pointed at anything it can reach: its own loopback services, the private
network, the cloud metadata endpoint that hands out credentials. This module
refuses those destinations (server-side request forgery, SSRF) in two places:

1. :func:`check_url` when a subscription is created or changed: the URL's
   shape (scheme, credentials, port, length, characters) and, when the host is
   an IP literal, the address itself. Names are not resolved here: what a name
   resolves to can change at any time.
2. :func:`resolve_and_check` before every connection: the name is resolved and
   refused if **any** of its addresses is refused. The caller must then
   connect only to the returned addresses (pin them); resolving again to
   connect would reopen the door to DNS rebinding.

:func:`refusal_reason` is the address rule shared by both. An operator can
allow otherwise refused networks (a receiver on the same host or network)
with ``STREAMS_DESTINATION_ALLOWLIST``, parsed by :func:`parse_allowlist`.

:class:`EgressProxy` is ``STREAMS_EGRESS_PROXY`` parsed. The proxy's own
address is exempt from these rules (it usually is private); destinations
reached through it are not: :mod:`streams.delivery.proxy` resolves and checks
each one before the proxy is asked to connect.

IP literals are recognised the way the C resolver recognises them, because
that is what the connection will use: ``2130706433``, ``0177.0.0.1``,
``0x7f.1`` and ``127.1`` are all 127.0.0.1 to ``getaddrinfo``. A host whose
last label is numeric but is not a valid address (``1.2.3.256``, ``08.1``) is
refused outright: no top-level domain is numeric, so it can only be a mistake
or an attempt to confuse parsers.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from streams.errors import ConfigError, DestinationRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The longest URL accepted, in characters.
MAX_URL_LENGTH = 2048

#: ``resolver(host, port)`` returning ``getaddrinfo``-shaped tuples
#: ``(family, type, proto, canonname, sockaddr)``; ``sockaddr[0]`` is the address.
Resolver = Callable[[str, int], Awaitable[Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_IPV4_LEGACY_CHARS = frozenset("0123456789abcdefxABCDEFX.")
_FIX_ALLOWLIST = (
    "webhooks can only go to public addresses (an operator can allow a network with "
    "STREAMS_DESTINATION_ALLOWLIST)"
)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a checked URL points.

    ``host`` is the host as written, lowercased, without IPv6 brackets
    (``0x7f.1`` stays ``0x7f.1``). ``literal_ip`` is the address the host
    denotes when it is an IP literal in any form, else ``None``. ``port`` is
    explicit or the scheme's default.
    """

    scheme: str
    host: str
    port: int
    literal_ip: IPAddress | None = None


# --- the allowlist ------------------------------------------------------------------------


def parse_allowlist(text: str) -> tuple[IPNetwork, ...]:
    """Parse ``STREAMS_DESTINATION_ALLOWLIST``: CIDRs separated by commas.

    Blank entries are ignored; an address without a prefix length is a single
    host (``/32`` or ``/128``). Entries with host bits set (``10.0.0.5/8``) are
    refused rather than silently widened. Raises :class:`ConfigError` naming
    the bad entry.
    """
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            hint = ""
            if "host bits set" in str(exc):
                wide = ipaddress.ip_network(entry, strict=False)
                hint = f" (host bits are set: did you mean {wide}?)"
            raise ConfigError(
                f"{entry!r} is not a CIDR network{hint}; expected networks such as "
                "10.0.0.0/8, 127.0.0.1 or fd00::/8, separated by commas"
            ) from None
        networks.append(network)
    return tuple(networks)


# --- the address rule ---------------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Most specific first: the first network containing the address names the reason.
_IPV4_RULES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified address"),
    (_V4("0.0.0.0/8"), '"this network" address (0.0.0.0/8)'),
    (_V4("127.0.0.0/8"), "loopback address"),
    (_V4("10.0.0.0/8"), "private address (RFC 1918)"),
    (_V4("172.16.0.0/12"), "private address (RFC 1918)"),
    (_V4("192.168.0.0/16"), "private address (RFC 1918)"),
    (_V4("100.100.100.200/32"), "cloud metadata address"),  # Alibaba Cloud
    (_V4("100.64.0.0/10"), "carrier-grade NAT address (RFC 6598)"),
    (_V4("169.254.169.254/32"), "cloud metadata address"),  # AWS, GCP, Azure, OCI, ...
    (_V4("169.254.170.2/32"), "cloud metadata address"),  # AWS ECS task credentials
    (_V4("169.254.0.0/16"), "link-local address"),
    (_V4("192.0.0.0/24"), "reserved address (IETF protocol assignments)"),
    (_V4("192.0.2.0/24"), "documentation address (RFC 5737)"),
    (_V4("198.51.100.0/24"), "documentation address (RFC 5737)"),
    (_V4("203.0.113.0/24"), "documentation address (RFC 5737)"),
    (_V4("192.88.99.0/24"), "reserved address (deprecated 6to4 relay anycast)"),
    (_V4("198.18.0.0/15"), "benchmarking address (RFC 2544)"),
    (_V4("224.0.0.0/4"), "multicast address"),
    (_V4("255.255.255.255/32"), "broadcast address"),
    (_V4("240.0.0.0/4"), "reserved address"),
)

# IPv6 networks judged by themselves, after :: and ::1 and after the embedding
# prefixes (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) of _embedded_ipv4.
_IPV6_UNSPECIFIED = ipaddress.IPv6Address("::")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")
_IPV6_RULES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("64:ff9b:1::/48"), "local-use NAT64 address (RFC 8215)"),
    (_V6("100::/64"), "discard-only address (RFC 6666)"),
    (_V6("2001:2::/48"), "benchmarking address (RFC 5180)"),
    (_V6("2001:10::/28"), "reserved address (ORCHID)"),
    (_V6("2001:20::/28"), "reserved address (ORCHIDv2)"),
    (_V6("2001:db8::/32"), "documentation address (RFC 3849)"),
    (_V6("3fff::/20"), "documentation address (RFC 9637)"),
    (_V6("5f00::/16"), "reserved address (SRv6 SIDs, RFC 9602)"),
    (_V6("fd00:ec2::254/128"), "cloud metadata address"),  # AWS (IPv6 IMDS)
    (_V6("fc00::/7"), "private address (unique local, RFC 4193)"),
    (_V6("fe80::/10"), "link-local address"),
    (_V6("fec0::/10"), "site-local address (deprecated)"),
    (_V6("ff00::/8"), "multicast address"),
)
_GLOBAL_UNICAST = _V6("2000::/3")

_MAPPED = _V6("::ffff:0:0/96")
_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, with the embedding's name."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return [("IPv4-mapped IPv6 address", low32)]
    if ip in _COMPATIBLE:
        return [("IPv4-compatible IPv6 address", low32)]
    if ip in _NAT64:
        return [("NAT64 address", low32)]
    if ip in _SIX_TO_FOUR:  # RFC 3056: 2002:AABB:CCDD::/48
        return [("6to4 address", ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))]
    if ip in _TEREDO:  # RFC 4380: server in bits 32-63, client (bits inverted) in 96-127
        server = ipaddress.IPv4Address((int(ip) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(ip) & 0xFFFFFFFF)
        return [
            ("Teredo address (client field)", client),
            ("Teredo address (server field)", server),
        ]
    return []


def _ipv4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _IPV4_RULES:
        if ip in network:
            return reason
    return None


def _in_allowlist(ip: IPAddress, allowlist: Iterable[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            candidates[0] = ipaddress.IPv6Address(int(ip))
        if ip in _MAPPED:  # the very same IPv4 host, seen through an IPv6 socket
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(c.version == n.version and c in n for n in allowlist for c in candidates)


def refusal_reason(ip: IPAddress, allowlist: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not receive webhooks, or ``None`` when it may.

    An address inside any ``allowlist`` network is allowed whatever it is (an
    IPv4-mapped IPv6 address also when the IPv4 address it maps is inside).
    Otherwise IPv4 addresses are judged by the special-purpose ranges
    (loopback, RFC 1918, CGNAT, link-local, cloud metadata, multicast,
    reserved, documentation, ...). IPv6 addresses that carry an IPv4 address
    (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, NAT64
    ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``: client and
    server) are judged by that IPv4 address; other IPv6 addresses by the
    special-purpose ranges, and anything outside global unicast ``2000::/3``
    is reserved.
    """
    allowlist = tuple(allowlist)
    if allowlist and _in_allowlist(ip, allowlist):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_reason(ip)
    if ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))
    if ip == _IPV6_UNSPECIFIED:  # :: and ::1 lie inside ::/96 but are no IPv4 embedding
        return "unspecified address"
    if ip == _IPV6_LOOPBACK:
        return "loopback address"
    for kind, inner in _embedded_ipv4(ip):
        inner_reason = _ipv4_reason(inner)
        if inner_reason is not None:
            return f"{inner_reason}, embedded as {inner} in {_a(kind)} {kind}"
    if ip in _MAPPED or ip in _COMPATIBLE or ip in _NAT64:
        return None  # nothing but the embedded public IPv4 address to judge
    for network, reason in _IPV6_RULES:
        if ip in network:
            return reason
    if ip not in _GLOBAL_UNICAST:
        return "reserved address"
    return None


def _a(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


# --- IP literals --------------------------------------------------------------------------


def _parse_ipv4_legacy(text: str) -> ipaddress.IPv4Address | None:
    """Parse ``text`` as the C library's ``inet_aton`` does, or return ``None``.

    One to four parts separated by dots, each decimal, octal (leading ``0``)
    or hexadecimal (``0x``); the last part fills the remaining bytes
    (``127.1`` is 127.0.0.1, ``2130706433`` is 127.0.0.1). Unlike glibc, no
    trailing text is tolerated after the address.
    """
    if not text or not set(text) <= _IPV4_LEGACY_CHARS:
        return None
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                value = int(lowered[2:], 16)  # "0x" alone raises: glibc refuses it too
            elif lowered.startswith("0") and len(lowered) > 1:
                value = int(lowered[1:], 8)
            else:
                value = int(lowered, 10)
        except ValueError:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` denotes if it is an IP literal in any form, else ``None``.

    ``host`` is a URL host: IPv6 addresses may be in brackets. IPv4 is
    recognised in every form ``inet_aton`` accepts, and with one trailing dot
    (``127.0.0.1.``), which some URL parsers also read as an address. Zone ids
    are refused by :func:`check_url`; here ``fe80::1%eth0`` is simply parsed.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    return _parse_ipv4_legacy(text)


# --- URLs ---------------------------------------------------------------------------------


def _refuse(message: str) -> DestinationRefusedError:
    return DestinationRefusedError(message, field="url")


def _check_characters(url: str) -> None:
    for index, char in enumerate(url):
        code = ord(char)
        if char.isspace() or code < 0x20 or 0x7F <= code <= 0x9F:
            raise _refuse(
                f"the URL contains whitespace or a control character ({char!r} at position "
                f"{index}); remove it or percent-encode it"
            )
        if char == "\\":
            raise _refuse(
                f"the URL contains a backslash (position {index}); use '/' in paths and "
                "percent-encode it (%5C) elsewhere"
            )


def _split_host_port(netloc: str) -> tuple[str, str | None]:
    """``host`` and the port text (``None`` when absent) of a URL authority."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise _refuse("the URL's IPv6 address has no closing ']'")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise _refuse(f"unexpected {rest!r} after the IPv6 address; write [address]:port")
        return host, rest[1:]
    if netloc.count(":") > 1:
        raise _refuse("an IPv6 address in a URL must be in brackets, e.g. https://[2001:db8::1]/")
    host, colon, port = netloc.partition(":")
    return host, (port if colon else None)


def _check_port(text: str | None, scheme: str) -> int:
    if text is None:
        return _DEFAULT_PORTS[scheme]
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 65535:
        raise _refuse(
            f"the URL's port {text!r} is not valid; use a number from 1 to 65535, or leave "
            "it out for the scheme's default"
        )
    return int(text)


def _check_bracketed(host: str) -> ipaddress.IPv6Address:
    inner = host[1:-1]
    if "%" in inner:
        raise _refuse(
            f"the URL's IPv6 address {host} has a zone id; zone ids (%...) are not allowed"
        )
    try:
        return ipaddress.IPv6Address(inner)
    except ValueError:
        raise _refuse(f"{host} is not a valid IPv6 address") from None


def _check_name(host: str) -> str:
    """Validate a host name; returns it in lowercase ASCII (IDNA) form."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refuse(f"the URL's host {host!r} is not a valid domain name") from None
    host = host.lower()
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _refuse(
            f"the URL's host {host!r} is not a valid host name; use letters, digits, '-', "
            "'_' and dots (labels of 1 to 63 characters), or an IP address"
        )
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise _refuse(
            f"the URL's host {host!r} looks like an IPv4 address but is not a valid one; "
            "use a dotted address such as 203.0.113.7, or a domain name"
        )
    return host


def check_url(url: str, *, allow_http: bool, allowlist: Iterable[IPNetwork] = ()) -> Destination:
    """Check the shape of a webhook URL and, for IP literals, its address.

    Raises :class:`DestinationRefusedError` (``field="url"``) saying what to
    fix when the URL is longer than :data:`MAX_URL_LENGTH` characters,
    contains whitespace, control characters or a backslash, is not http(s),
    is http while ``allow_http`` is false, has no host, has userinfo
    (``user:pass@``: credentials would leak into listings and logs), has a bad
    port, a malformed host, an IPv6 zone id, or an IP literal (in any form,
    see :func:`ip_literal`) that :func:`refusal_reason` refuses. Host names
    are not resolved: :func:`resolve_and_check` does that before each
    connection.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"the URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    _check_characters(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse(f"the URL cannot be parsed ({exc}); give an absolute http(s) URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"scheme is {parts.scheme!r}" if parts.scheme else "has no scheme"
        raise _refuse(
            f"the URL {shown}; webhook URLs must start with https:// (or http:// in development)"
        )
    if scheme == "http" and not allow_http:
        raise _refuse("plain http is not allowed: use https, or set STREAMS_ENV=development")
    netloc = parts.netloc
    if "@" in netloc:
        raise _refuse(
            "the URL contains credentials (user:password@); remove them, they would be "
            "shown in subscription listings and logs: use the signing secret or custom "
            "headers to authenticate"
        )
    host, port_text = _split_host_port(netloc)
    if not host:
        raise _refuse("the URL has no host; write it as https://host/path")
    port = _check_port(port_text, scheme)

    literal: IPAddress | None
    if host.startswith("["):
        literal = _check_bracketed(host)
        host = host[1:-1].lower()
    else:
        if "%" in host:
            raise _refuse(
                f"the URL's host {host!r} is percent-encoded; write the host name plainly"
            )
        literal = ip_literal(host)
        host = host.lower() if literal is not None else _check_name(host)
    if literal is not None:
        reason = refusal_reason(literal, allowlist)
        if reason is not None:
            written = "" if host == str(literal) else f" (written {host})"
            raise _refuse(
                f"the URL's host {literal}{written} is {_a(reason)} {reason}; {_FIX_ALLOWLIST}"
            )
    return Destination(scheme=scheme, host=host, port=port, literal_ip=literal)


# --- resolution ---------------------------------------------------------------------------


async def _system_resolver(
    host: str, port: int
) -> Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def resolve_and_check(
    host: str,
    port: int,
    *,
    allowlist: Iterable[IPNetwork] = (),
    resolver: Resolver | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if every one is allowed.

    Raises :class:`DestinationRefusedError` naming the host, the address and
    the reason if **any** resolved address is refused: a name with one
    private address among public ones is refused as a whole, since the
    connection could use any of them. IP literals (any form, brackets
    optional) are checked without resolving. Resolution failures propagate
    as :class:`OSError` (``socket.gaierror``), a name with no address included:
    that is a DNS failure for the caller to retry, not a refusal.

    ``resolver`` defaults to the running loop's ``getaddrinfo``. The returned
    addresses, in resolver order without duplicates, are the ones to connect
    to: resolving again at connect time would allow DNS rebinding.
    """
    allow = tuple(allowlist)
    literal = ip_literal(host)
    if literal is not None:
        reason = refusal_reason(literal, allow)
        if reason is not None:
            shown = host if host.strip("[]") == str(literal) else f"{host} is {literal}, which"
            raise _refuse(f"{shown} is {_a(reason)} {reason}; {_FIX_ALLOWLIST}")
        return [literal]
    infos = await (resolver or _system_resolver)(host, port)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
    for address in addresses:
        reason = refusal_reason(address, allow)
        if reason is not None:
            raise _refuse(f"{host} resolves to {address}, {_a(reason)} {reason}; {_FIX_ALLOWLIST}")
    return addresses


# --- the egress proxy ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EgressProxy:
    """``STREAMS_EGRESS_PROXY`` parsed; the password never shows in ``repr``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> EgressProxy:
        """Parse ``http://[user:password@]host:port``; ValueError says what to fix.

        Messages never repeat the value (it may hold a password).
        """
        example = "expected http://host:port (or http://user:password@host:port)"
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise ValueError(f"not a proxy URL with a valid port; {example}") from None
        if parts.scheme.lower() != "http":
            raise ValueError(
                "only http:// proxies are supported: the CONNECT tunnel carries the "
                f"destination's own TLS end to end; {example}"
            )
        if not parts.hostname:
            raise ValueError(f"the proxy URL has no host; {example}")
        if port is None:
            raise ValueError(f"the proxy URL needs an explicit port; {example}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"the proxy URL has a path, query or fragment; {example}")
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname.lower(), port, username, password)

    @property
    def headers(self) -> dict[str, str]:
        """Headers of the CONNECT request: ``Proxy-Authorization`` (Basic) with credentials."""
        if self.username is None:
            return {}
        pair = f"{self.username}:{self.password or ''}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def describe(self) -> str:
        """``host:port``: safe to log."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
