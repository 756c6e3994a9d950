"""The destination (SSRF) policy: URL shapes, the address rule, resolution."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

import pytest

from streams.destinations import (
    MAX_URL_LENGTH,
    Destination,
    Resolver,
    check_url,
    ip_literal,
    parse_allowlist,
    refusal_reason,
    resolve_and_check,
)
from streams.errors import ConfigError, DestinationRefusedError

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address

LOOPBACK = "loopback address"
PRIVATE = "private address (RFC 1918)"
LINK_LOCAL = "link-local address"
CGNAT = "carrier-grade NAT address (RFC 6598)"
MULTICAST = "multicast address"
METADATA = "cloud metadata address"
UNSPECIFIED = "unspecified address"
RESERVED = "reserved address"
ULA = "private address (unique local, RFC 4193)"


def answering(*addresses: str) -> Resolver:
    """A resolver that answers every name with ``addresses``, getaddrinfo-shaped."""

    async def resolve(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port),
            )
            for address in addresses
        ]

    return resolve


async def must_not_resolve(
    host: str, port: int
) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
    raise AssertionError(f"{host} is an IP literal and must not be resolved")


# --- the address rule ---------------------------------------------------------------------

ADDRESS_RULE = [
    # IPv4
    ("0.0.0.0", UNSPECIFIED),
    ("0.1.2.3", '"this network" address (0.0.0.0/8)'),
    ("127.0.0.1", LOOPBACK),
    ("127.255.255.254", LOOPBACK),
    ("10.0.0.5", PRIVATE),
    ("172.16.0.1", PRIVATE),
    ("172.31.255.255", PRIVATE),
    ("192.168.1.1", PRIVATE),
    ("100.64.0.1", CGNAT),
    ("100.127.255.255", CGNAT),
    ("100.100.100.200", METADATA),
    ("169.254.169.254", METADATA),
    ("169.254.170.2", METADATA),
    ("169.254.1.1", LINK_LOCAL),
    ("224.0.0.1", MULTICAST),
    ("239.255.255.250", MULTICAST),
    ("240.0.0.1", RESERVED),
    ("255.255.255.255", "broadcast address"),
    ("192.0.0.8", "reserved address (IETF protocol assignments)"),
    ("192.0.2.1", "documentation address (RFC 5737)"),
    ("198.51.100.7", "documentation address (RFC 5737)"),
    ("203.0.113.9", "documentation address (RFC 5737)"),
    ("198.18.0.1", "benchmarking address (RFC 2544)"),
    ("198.19.255.255", "benchmarking address (RFC 2544)"),
    ("192.88.99.1", "reserved address (deprecated 6to4 relay anycast)"),
    ("8.8.8.8", None),
    ("172.32.0.1", None),
    ("100.128.0.1", None),
    ("198.20.0.1", None),
    # IPv6
    ("::", UNSPECIFIED),
    ("::1", LOOPBACK),
    ("fc00::1", ULA),
    ("fd12:3456::1", ULA),
    ("fd00:ec2::254", METADATA),
    ("fe80::1", LINK_LOCAL),
    ("fe80::1%eth0", LINK_LOCAL),
    ("fec0::1", "site-local address (deprecated)"),
    ("ff02::1", MULTICAST),
    ("2001:db8::1", "documentation address (RFC 3849)"),
    ("3fff::1", "documentation address (RFC 9637)"),
    ("100::1", "discard-only address (RFC 6666)"),
    ("64:ff9b:1::1", "local-use NAT64 address (RFC 8215)"),
    ("4000::1", RESERVED),
    ("2606:4700:4700::1111", None),
    # IPv6 carrying an IPv4 address: the IPv4 address is judged
    ("::ffff:127.0.0.1", f"{LOOPBACK}, embedded as 127.0.0.1 in an IPv4-mapped IPv6 address"),
    ("::ffff:a9fe:a9fe", f"{METADATA}, embedded as 169.254.169.254 in an IPv4-mapped IPv6 address"),
    ("::ffff:8.8.8.8", None),
    ("::a00:1", f"{PRIVATE}, embedded as 10.0.0.1 in an IPv4-compatible IPv6 address"),
    ("::808:808", None),
    ("64:ff9b::a00:1", f"{PRIVATE}, embedded as 10.0.0.1 in a NAT64 address"),
    ("64:ff9b::808:808", None),
    ("2002:a9fe:a9fe::", f"{METADATA}, embedded as 169.254.169.254 in a 6to4 address"),
    ("2002:808:808::1", None),
    (
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        f"{LOOPBACK}, embedded as 127.0.0.1 in a Teredo address (client field)",
    ),
    (
        "2001:0:a00:1:8000:63bf:f7f7:f7f7",
        f"{PRIVATE}, embedded as 10.0.0.1 in a Teredo address (server field)",
    ),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESS_RULE, ids=[a for a, _ in ADDRESS_RULE])
def test_refusal_reason_names_why_an_address_may_not_receive_webhooks(
    address: str, reason: str | None
) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("address", "allowlist"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("169.254.169.254", "169.254.169.254/32"),
        ("10.1.2.3", "192.168.0.0/16, 10.0.0.0/8"),
        ("::1", "::1/128"),
        ("fd00::7", "fd00::/8"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
    ],
)
def test_an_address_inside_an_allowlisted_network_is_allowed_whatever_it_is(
    address: str, allowlist: str
) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is not None
    assert refusal_reason(ip, parse_allowlist(allowlist)) is None


@pytest.mark.parametrize(
    ("address", "allowlist", "reason"),
    [
        ("127.0.0.2", "127.0.0.1/32", LOOPBACK),
        ("10.0.0.1", "::/0", PRIVATE),  # an IPv6 network never contains an IPv4 address
        ("::1", "0.0.0.0/0", LOOPBACK),
        ("64:ff9b::7f00:1", "127.0.0.0/8", f"{LOOPBACK}, embedded as 127.0.0.1 in a NAT64 address"),
    ],
)
def test_an_address_outside_every_allowlisted_network_is_still_refused(
    address: str, allowlist: str, reason: str
) -> None:
    assert refusal_reason(ipaddress.ip_address(address), parse_allowlist(allowlist)) == reason


# --- IP literals in every form ------------------------------------------------------------

LITERALS = [
    ("2130706433", IPv4("127.0.0.1")),
    ("0177.0.0.1", IPv4("127.0.0.1")),
    ("0x7f.1", IPv4("127.0.0.1")),
    ("0X7F.0.0.1", IPv4("127.0.0.1")),
    ("127.1", IPv4("127.0.0.1")),
    ("127.0.1", IPv4("127.0.0.1")),
    ("0x7f000001", IPv4("127.0.0.1")),
    ("017700000001", IPv4("127.0.0.1")),
    ("0", IPv4("0.0.0.0")),
    ("10.0.65535", IPv4("10.0.255.255")),
    ("169.16689662", IPv4("169.254.169.254")),
    ("8.8.8.8", IPv4("8.8.8.8")),
    ("127.0.0.1.", IPv4("127.0.0.1")),
    ("[::1]", IPv6("::1")),
    ("[::ffff:127.0.0.1]", IPv6("::ffff:7f00:1")),
    ("[::ffff:7f00:1]", IPv6("::ffff:7f00:1")),
    ("::1", IPv6("::1")),
    ("08.1", None),  # 8 is not an octal digit
    ("0x.1", None),
    ("1.2.3.256", None),
    ("1.2.65536", None),
    ("4294967296", None),
    ("1.2.3.4.5", None),
    ("1..2", None),
    ("+1", None),
    ("1.2.3.4 junk", None),  # glibc's inet_aton stops at the space; we do not
    ("example.com", None),
    ("deadbeef", None),
]


@pytest.mark.parametrize(("host", "expected"), LITERALS, ids=[h for h, _ in LITERALS])
def test_ip_literals_are_recognised_in_every_form_the_c_resolver_accepts(
    host: str, expected: IPv4 | IPv6 | None
) -> None:
    assert ip_literal(host) == expected


@pytest.mark.parametrize(
    "text",
    ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "10.0.65535", "0", "08.1", "0x.1", "1.2.3.256"],
)
def test_legacy_ipv4_parsing_agrees_with_the_platform_inet_aton(text: str) -> None:
    try:
        platform: IPv4 | None = IPv4(socket.inet_aton(text))
    except OSError:
        platform = None
    assert ip_literal(text) == platform


# --- URL shapes ---------------------------------------------------------------------------

ACCEPTED_URLS = [
    ("https://example.com/hook", Destination("https", "example.com", 443, None)),
    ("HTTPS://Example.COM:8443/h?a=1#f", Destination("https", "example.com", 8443, None)),
    ("https://hooks.example.com./x", Destination("https", "hooks.example.com.", 443, None)),
    ("https://my_host.example.com/", Destination("https", "my_host.example.com", 443, None)),
    ("https://bücher.example/", Destination("https", "xn--bcher-kva.example", 443, None)),
    ("https://8.8.8.8/", Destination("https", "8.8.8.8", 443, IPv4("8.8.8.8"))),
    ("https://134744072/", Destination("https", "134744072", 443, IPv4("8.8.8.8"))),
    (
        "https://[2606:4700:4700::1111]:444/",
        Destination("https", "2606:4700:4700::1111", 444, IPv6("2606:4700:4700::1111")),
    ),
    ("https://example.com:65535/", Destination("https", "example.com", 65535, None)),
]


@pytest.mark.parametrize(("url", "expected"), ACCEPTED_URLS, ids=[u for u, _ in ACCEPTED_URLS])
def test_check_url_returns_the_scheme_host_port_and_literal_address(
    url: str, expected: Destination
) -> None:
    assert check_url(url, allow_http=False) == expected


REFUSED_URLS = [
    ("ftp://example.com/", "the URL scheme is 'ftp'"),
    ("example.com/hook", "the URL has no scheme"),
    ("javascript:alert(1)", "the URL scheme is 'javascript'"),
    ("http://example.com/", "use https, or set STREAMS_ENV=development"),
    ("https:///hook", "the URL has no host"),
    ("https:example.com", "the URL has no host"),
    ("https://user:pass@example.com/", "the URL contains credentials"),
    ("https://token@example.com/", "the URL contains credentials"),
    ("https://example.com@10.0.0.1/", "the URL contains credentials"),
    ("https://example.com:0/", "port '0' is not valid"),
    ("https://example.com:65536/", "port '65536' is not valid"),
    ("https://example.com:+443/", "port '+443' is not valid"),
    ("https://example.com:http/", "port 'http' is not valid"),
    ("https://example.com:/", "port '' is not valid"),
    ("https://exa mple.com/", "whitespace or a control character (' ' at position 11)"),
    ("https://example.com/\thook", "whitespace or a control character ('\\t' at position 20)"),
    ("https://example.com/\x00", "whitespace or a control character ('\\x00' at position 20)"),
    ("https://example.com/\u00a0", "whitespace or a control character"),
    ("https://example.com\\@10.0.0.1/", "a backslash (position 19)"),
    ("https://::1/", "an IPv6 address in a URL must be in brackets"),
    ("https://[::1/", "the URL cannot be parsed"),
    ("https://[fe80::1%25eth0]/", "has a zone id"),
    ("https://[v1.x]/", "[v1.x] is not a valid IPv6 address"),
    ("https://[::1]x/", "unexpected 'x' after the IPv6 address"),
    ("https://%31%32%37.0.0.1/", "is percent-encoded"),
    ("https://exa!mple.com/", "is not a valid host name"),
    ("https://-example.com/", "is not a valid host name"),
    ("https://1.2.3.256/", "looks like an IPv4 address but is not a valid one"),
    ("https://08.1/", "looks like an IPv4 address but is not a valid one"),
    ("https://127.0.0.1/", "the URL's host 127.0.0.1 is a loopback address"),
    ("https://2130706433/", "the URL's host 127.0.0.1 (written 2130706433) is a loopback"),
    ("https://0x7f.1/", "the URL's host 127.0.0.1 (written 0x7f.1) is a loopback address"),
    ("https://[::ffff:7f00:1]/", "the URL's host ::ffff:7f00:1 is a loopback address"),
    ("https://0/", "the URL's host 0.0.0.0 (written 0) is an unspecified address"),
    ("https://169.254.169.254/latest/meta-data/", "is a cloud metadata address"),
]


@pytest.mark.parametrize(("url", "message"), REFUSED_URLS, ids=[u for u, _ in REFUSED_URLS])
def test_check_url_refuses_with_a_message_that_says_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(DestinationRefusedError) as caught:
        check_url(url, allow_http=False)
    assert message in str(caught.value)
    assert caught.value.field == "url"


def test_refusals_of_ip_literals_tell_how_an_operator_can_allow_them() -> None:
    with pytest.raises(DestinationRefusedError, match="STREAMS_DESTINATION_ALLOWLIST"):
        check_url("https://10.0.0.1/", allow_http=False)


def test_plain_http_is_accepted_only_when_allowed() -> None:
    assert check_url("http://example.com/", allow_http=True) == Destination(
        "http", "example.com", 80, None
    )
    with pytest.raises(DestinationRefusedError, match="use https"):
        check_url("http://example.com/", allow_http=False)


def test_an_allowlisted_ip_literal_is_accepted_in_any_form() -> None:
    allow = parse_allowlist("127.0.0.0/8")
    assert check_url("http://0x7f.1:8000/", allow_http=True, allowlist=allow) == Destination(
        "http", "0x7f.1", 8000, IPv4("127.0.0.1")
    )


def test_a_url_of_2048_characters_is_accepted_and_one_more_is_refused() -> None:
    base = "https://example.com/"
    longest = base + "a" * (MAX_URL_LENGTH - len(base))
    assert len(longest) == 2048
    assert check_url(longest, allow_http=False).host == "example.com"
    with pytest.raises(DestinationRefusedError, match="2049 characters long; the limit is 2048"):
        check_url(longest + "a", allow_http=False)


# --- the allowlist ------------------------------------------------------------------------


def test_the_allowlist_is_cidrs_separated_by_commas_with_blanks_ignored() -> None:
    assert parse_allowlist(" 127.0.0.0/8, ,::1/128,10.1.2.3,") == (
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
        ipaddress.IPv4Network("10.1.2.3/32"),
    )
    assert parse_allowlist("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.0/8,localhost", "'localhost' is not a CIDR network"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR network"),
        ("127.1/8", "'127.1/8' is not a CIDR network"),
        ("10.0.0.5/8", "host bits are set: did you mean 10.0.0.0/8?"),
    ],
)
def test_a_bad_allowlist_entry_is_a_config_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_allowlist(text)
    assert message in str(caught.value)


# --- resolution ---------------------------------------------------------------------------


async def test_a_name_resolving_to_a_private_address_is_refused_naming_host_and_reason() -> None:
    with pytest.raises(DestinationRefusedError) as caught:
        await resolve_and_check("example.test", 443, resolver=answering("10.0.0.5"))
    assert str(caught.value).startswith(
        "example.test resolves to 10.0.0.5, a private address (RFC 1918);"
    )


async def test_one_refused_address_among_public_ones_refuses_the_name() -> None:
    resolver = answering("93.184.216.34", "2606:2800:220:1::1", "169.254.169.254")
    with pytest.raises(
        DestinationRefusedError, match=re.escape("169.254.169.254, a cloud metadata address")
    ):
        await resolve_and_check("example.test", 443, resolver=resolver)


async def test_the_allowed_addresses_are_returned_once_each_in_resolver_order() -> None:
    resolver = answering("93.184.216.34", "2606:2800:220:1::1", "93.184.216.34")
    assert await resolve_and_check("example.test", 443, resolver=resolver) == [
        IPv4("93.184.216.34"),
        IPv6("2606:2800:220:1::1"),
    ]


async def test_dns_rebinding_to_a_private_address_is_refused_on_the_next_resolution() -> None:
    answers = iter([answering("93.184.216.34"), answering("127.0.0.1")])

    async def rebinding(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return list(await next(answers)(host, port))

    assert await resolve_and_check("rebind.test", 443, resolver=rebinding) == [
        IPv4("93.184.216.34")
    ]
    with pytest.raises(
        DestinationRefusedError, match=re.escape("rebind.test resolves to 127.0.0.1, a loop")
    ):
        await resolve_and_check("rebind.test", 443, resolver=rebinding)


async def test_an_ip_literal_host_is_checked_without_resolving() -> None:
    assert await resolve_and_check("8.8.8.8", 443, resolver=must_not_resolve) == [IPv4("8.8.8.8")]
    with pytest.raises(DestinationRefusedError, match=r"^0x7f\.1 is 127\.0\.0\.1, which is a loop"):
        await resolve_and_check("0x7f.1", 443, resolver=must_not_resolve)
    with pytest.raises(DestinationRefusedError, match=r"^\[::1\] is a loopback address"):
        await resolve_and_check("[::1]", 443, resolver=must_not_resolve)


async def test_a_name_that_resolves_to_nothing_is_a_dns_error_not_a_refusal() -> None:
    with pytest.raises(socket.gaierror, match=re.escape("empty.test resolves to no address")):
        await resolve_and_check("empty.test", 443, resolver=answering())


async def test_a_resolver_failure_propagates_unchanged() -> None:
    async def failing(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(socket.gaierror, match="Name or service not known"):
        await resolve_and_check("missing.test", 443, resolver=failing)


async def test_localhost_really_resolved_is_refused_as_loopback() -> None:
    with pytest.raises(DestinationRefusedError, match=r"^localhost resolves to .*loopback address"):
        await resolve_and_check("localhost", 80)


async def test_localhost_really_resolved_is_allowed_when_loopback_is_allowlisted() -> None:
    allow = parse_allowlist("127.0.0.0/8,::1/128")
    addresses = await resolve_and_check("localhost", 80, allowlist=allow)
    assert addresses
    assert set(addresses) <= {IPv4("127.0.0.1"), IPv6("::1")}


# --- the whole policy, table-driven -------------------------------------------------------

# (case, url, what the host resolves to (names only), allowlist, refusal reason or None)
POLICY = [
    ("public IPv4 literal", "https://93.184.216.34/", (), "", None),
    ("public IPv6 literal", "https://[2606:2800:220:1::1]/", (), "", None),
    ("public name", "https://hooks.example.com/", ("93.184.216.34",), "", None),
    ("public name, both families", "https://a.example/", ("1.1.1.1", "2606:4700::1111"), "", None),
    ("loopback", "https://127.0.0.1/", (), "", LOOPBACK),
    ("loopback, other end of /8", "https://127.255.255.254/", (), "", LOOPBACK),
    ("unspecified", "https://0.0.0.0/", (), "", UNSPECIFIED),
    ("RFC 1918 10/8", "https://10.0.0.5/", (), "", PRIVATE),
    ("RFC 1918 172.16/12", "https://172.20.1.1/", (), "", PRIVATE),
    ("RFC 1918 192.168/16", "https://192.168.0.10/", (), "", PRIVATE),
    ("CGNAT", "https://100.64.1.1/", (), "", CGNAT),
    ("link-local", "https://169.254.10.10/", (), "", LINK_LOCAL),
    ("AWS/GCP/Azure metadata", "https://169.254.169.254/", (), "", METADATA),
    ("Alibaba metadata", "https://100.100.100.200/", (), "", METADATA),
    ("multicast", "https://224.0.0.251/", (), "", MULTICAST),
    ("broadcast", "https://255.255.255.255/", (), "", "broadcast address"),
    ("class E", "https://240.0.0.1/", (), "", RESERVED),
    ("decimal loopback", "https://2130706433/", (), "", LOOPBACK),
    ("octal loopback", "https://0177.0.0.1/", (), "", LOOPBACK),
    ("hex loopback", "https://0x7f.1/", (), "", LOOPBACK),
    ("hex loopback, one part", "https://0x7f000001/", (), "", LOOPBACK),
    ("short loopback", "https://127.1/", (), "", LOOPBACK),
    ("decimal metadata", "https://2852039166/", (), "", METADATA),
    ("octal private", "https://012.0.0.1/", (), "", PRIVATE),
    ("hex private, mixed forms", "https://0xc0.0250.1.1/", (), "", PRIVATE),
    ("IPv6 unspecified", "https://[::]/", (), "", UNSPECIFIED),
    ("IPv6 loopback", "https://[::1]/", (), "", LOOPBACK),
    ("IPv6 unique local", "https://[fd00::1]/", (), "", ULA),
    ("IPv6 link-local", "https://[fe80::abcd]/", (), "", LINK_LOCAL),
    ("IPv6 multicast", "https://[ff05::2]/", (), "", MULTICAST),
    ("AWS IPv6 metadata", "https://[fd00:ec2::254]/", (), "", METADATA),
    ("IPv4-mapped dotted", "https://[::ffff:127.0.0.1]/", (), "", LOOPBACK),
    ("IPv4-mapped hex", "https://[::ffff:7f00:1]/", (), "", LOOPBACK),
    ("IPv4-mapped private", "https://[::ffff:10.0.0.1]/", (), "", PRIVATE),
    ("IPv4-mapped metadata", "https://[::ffff:a9fe:a9fe]/", (), "", METADATA),
    ("IPv4-mapped public", "https://[::ffff:8.8.8.8]/", (), "", None),
    ("NAT64 private", "https://[64:ff9b::c0a8:1]/", (), "", PRIVATE),
    ("6to4 loopback", "https://[2002:7f00:1::1]/", (), "", LOOPBACK),
    ("name to private", "https://intranet.example/", ("10.0.0.5",), "", PRIVATE),
    ("name to loopback", "https://local.example/", ("127.0.0.1",), "", LOOPBACK),
    ("name to metadata", "https://meta.example/", ("169.254.169.254",), "", METADATA),
    ("name to mapped loopback", "https://m.example/", ("::ffff:127.0.0.1",), "", LOOPBACK),
    ("name to ULA among public", "https://mix.example/", ("8.8.8.8", "fd00::5"), "", ULA),
    ("allowlisted loopback", "https://127.0.0.1/", (), "127.0.0.0/8", None),
    ("allowlisted hex loopback", "https://0x7f.1/", (), "127.0.0.0/8", None),
    ("allowlisted IPv6 loopback", "https://[::1]/", (), "::1/128", None),
    ("allowlisted name to loopback", "https://local.example/", ("127.0.0.1",), "127.0.0.0/8", None),
    ("allowlist too narrow", "https://127.0.0.2/", (), "127.0.0.1/32", LOOPBACK),
    ("allowlisted private", "https://10.0.0.1/", (), "10.0.0.0/8", None),
    ("allowlist of other range", "https://169.254.169.254/", (), "10.0.0.0/8", METADATA),
]


async def verdict(url: str, resolved: tuple[str, ...], allowlist: str) -> str | None:
    """The refusal message for ``url`` (resolving names to ``resolved``), or None."""
    allow = parse_allowlist(allowlist)
    try:
        destination = check_url(url, allow_http=False, allowlist=allow)
        if destination.literal_ip is None:
            await resolve_and_check(
                destination.host, destination.port, allowlist=allow, resolver=answering(*resolved)
            )
    except DestinationRefusedError as refused:
        return str(refused)
    return None


@pytest.mark.parametrize(
    ("url", "resolved", "allowlist", "reason"),
    [row[1:] for row in POLICY],
    ids=[row[0] for row in POLICY],
)
async def test_the_destination_policy_table(
    url: str, resolved: tuple[str, ...], allowlist: str, reason: str | None
) -> None:
    message = await verdict(url, resolved, allowlist)
    if reason is None:
        assert message is None
    else:
        assert message is not None
        assert f" {reason}" in message
