"""Deliveries through STREAMS_EGRESS_PROXY: a real CONNECT proxy process, a real HTTPS receiver.

The proxy (tests/connect_proxy.py) runs in its own process on 127.0.0.1 and logs
every request line before acting on it, so a test can show what it was (and was
not) asked. The receiver is an aiohttp HTTPS server with a certificate from a CA
made for the test, trusted through SSL_CERT_FILE, in production mode: TLS is
verified, through the tunnel, against the destination's name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from streams.config import Settings
from streams.delivery.outcome import ErrorKind, Retry, classify
from streams.delivery.proxy import PIN_TTL_S, EgressRouter
from streams.delivery.request import PreparedRequest
from streams.delivery.transport import HttpSender
from streams.destinations import EgressProxy
from streams.errors import ConfigError, DestinationRefusedError
from tests.certs import Authority
from tests.connect_proxy import ProxyProcess

HEADERS = {"content-type": "application/json", "user-agent": "streams-test/1.0"}
BODY = b'{"type":"a.b"}'
LOCAL = "127.0.0.1/32,::1/128"


@asynccontextmanager
async def https_receiver(
    authority: Authority, names: tuple[str, ...] | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, list[web.Request]]]:
    """An HTTPS receiver on ``host`` answering 200; yields its port and what it saw."""
    chain, key = authority.issue("receiver", server=True, names=names)
    directory = authority.directory
    (directory / "receiver.pem").write_bytes(chain)
    (directory / "receiver.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "receiver.pem", directory / "receiver.key")
    seen: list[web.Request] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


@pytest.fixture
def authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Authority:
    ca = Authority(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.file))  # what create_default_context trusts
    return ca


def sender_for(proxy_url: str, allowlist: str = LOCAL) -> HttpSender:
    return HttpSender(
        Settings.from_env(
            {
                "STREAMS_ENV": "production",
                "STREAMS_DESTINATION_ALLOWLIST": allowlist,
                "STREAMS_EGRESS_PROXY": proxy_url,
                "STREAMS_CONNECT_TIMEOUT": "3s",
            }
        )
    )


def request(url: str) -> PreparedRequest:
    return PreparedRequest(url=url, headers=HEADERS, body=BODY)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- through a real proxy -------------------------------------------------------------------


async def test_a_delivery_goes_through_the_tunnel_to_the_checked_address_tls_verified(
    tmp_path: Path, authority: Authority
) -> None:
    # The certificate names only `localhost`: it verifies only against the name.
    async with https_receiver(authority, names=("localhost",)) as (port, seen):
        with ProxyProcess(tmp_path / "proxy") as proxy:
            sender = sender_for(proxy.url)
            try:
                result = await sender.send(request(f"https://localhost:{port}/hook"), timeout_s=10)
            finally:
                await sender.close()
            lines = proxy.requests()
    assert (result.status, result.error, result.body) == (200, None, b"ok"), result.detail
    # The proxy was asked for the pinned, checked address, never to resolve the name.
    assert lines == [f"CONNECT 127.0.0.1:{port} host=localhost:{port}"]
    assert seen[0].headers["Host"] == f"localhost:{port}"
    assert await seen[0].read() == BODY


async def test_the_proxy_is_exempt_from_the_destination_rules_and_the_only_connection(
    tmp_path: Path, authority: Authority
) -> None:
    # Only the receiver's 127.0.0.2 is allowed; the proxy's 127.0.0.1 is loopback, refused
    # as a destination, yet it must be reachable as the proxy.
    async with https_receiver(authority, names=("127.0.0.2",), host="127.0.0.2") as (port, seen):
        with ProxyProcess(tmp_path / "proxy") as proxy:
            sender = sender_for(proxy.url, allowlist="127.0.0.2/32")
            try:
                result = await sender.send(request(f"https://127.0.0.2:{port}/hook"), timeout_s=10)
                direct = await sender.send(request(f"https://127.0.0.1:{port}/hook"), timeout_s=5)
            finally:
                await sender.close()
            lines = proxy.requests()
    assert result.status == 200, result.detail
    assert lines == [f"CONNECT 127.0.0.2:{port} host=127.0.0.2:{port}"]
    assert direct.error == ErrorKind.DESTINATION_REFUSED  # the proxy's address, as a destination
    assert len(seen) == 1


async def test_the_certificate_must_match_the_destination_name(
    tmp_path: Path, authority: Authority
) -> None:
    async with https_receiver(authority, names=("elsewhere.test",)) as (port, seen):
        with ProxyProcess(tmp_path / "proxy") as proxy:
            sender = sender_for(proxy.url)
            try:
                result = await sender.send(request(f"https://localhost:{port}/hook"), timeout_s=10)
            finally:
                await sender.close()
            lines = proxy.requests()
    assert result.error == ErrorKind.TLS_ERROR, result.detail
    assert lines == [f"CONNECT 127.0.0.1:{port} host=localhost:{port}"]  # tunnel made
    assert seen == []


async def test_a_forbidden_destination_is_refused_before_any_connect(
    tmp_path: Path, authority: Authority
) -> None:
    async with https_receiver(authority) as (port, seen):
        with ProxyProcess(tmp_path / "proxy") as proxy:
            sender = sender_for(proxy.url, allowlist="")  # loopback is forbidden now
            try:
                by_name = await sender.send(request(f"https://localhost:{port}/hook"), timeout_s=5)
                literal = await sender.send(request("https://169.254.169.254/latest"), timeout_s=5)
                legacy = await sender.send(request(f"https://0x7f.1:{port}/hook"), timeout_s=5)
            finally:
                await sender.close()
            lines = proxy.requests()
    assert by_name.error == ErrorKind.DESTINATION_REFUSED
    assert "localhost resolves to" in str(by_name.detail)
    assert "loopback" in str(by_name.detail)
    assert literal.error == ErrorKind.DESTINATION_REFUSED
    assert "cloud metadata" in str(literal.detail)
    assert legacy.error == ErrorKind.DESTINATION_REFUSED
    assert lines == []  # the proxy was never asked anything
    assert seen == []
    assert classify(by_name.status, by_name.error, None).__class__.__name__ == "GiveUp"


async def test_the_proxy_being_down_is_a_retryable_failure_that_says_so(
    tmp_path: Path, authority: Authority
) -> None:
    async with https_receiver(authority) as (port, seen):
        sender = sender_for(f"http://127.0.0.1:{closed_port()}")
        try:
            result = await sender.send(request(f"https://localhost:{port}/hook"), timeout_s=5)
        finally:
            await sender.close()
    assert result.error == ErrorKind.PROXY_ERROR
    assert "egress proxy 127.0.0.1:" in str(result.detail)
    assert "is unreachable (Connect call failed" in str(result.detail) or "refused" in str(
        result.detail
    )
    assert isinstance(classify(result.status, result.error, None), Retry)
    assert seen == []


async def test_a_407_is_a_retryable_failure_naming_the_credentials(
    tmp_path: Path, authority: Authority
) -> None:
    async with https_receiver(authority) as (port, seen):
        with ProxyProcess(tmp_path / "proxy", auth="egress:s3cret-pass") as proxy:
            wrong = sender_for(proxy.url.replace("http://", "http://egress:wrong-pass@"))
            right = sender_for(proxy.url.replace("http://", "http://egress:s3cret-pass@"))
            try:
                refused = await wrong.send(request(f"https://localhost:{port}/hook"), timeout_s=5)
                accepted = await right.send(request(f"https://localhost:{port}/hook"), timeout_s=5)
            finally:
                await wrong.close()
                await right.close()
            lines = proxy.requests()
    assert refused.error == ErrorKind.PROXY_ERROR
    assert "HTTP 407 Proxy Authentication Required" in str(refused.detail)
    assert "credentials" in str(refused.detail)
    assert "s3cret" not in str(refused.detail)
    assert "wrong-pass" not in str(refused.detail)
    assert isinstance(classify(refused.status, refused.error, None), Retry)
    assert accepted.status == 200, accepted.detail
    assert len(seen) == 1
    assert len(lines) == 2


async def test_a_403_is_a_retryable_failure_naming_the_proxys_rules(
    tmp_path: Path, authority: Authority
) -> None:
    async with https_receiver(authority) as (port, seen):
        with ProxyProcess(tmp_path / "proxy", deny=f"127.0.0.1:{port}") as proxy:
            sender = sender_for(proxy.url)
            try:
                result = await sender.send(request(f"https://localhost:{port}/hook"), timeout_s=5)
            finally:
                await sender.close()
    assert result.error == ErrorKind.PROXY_ERROR
    assert "HTTP 403 Forbidden; the proxy's rules refuse this destination" in str(result.detail)
    assert seen == []


# --- the parts, without a network -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://proxy:3128", "only http:// proxies"),
        ("socks5://proxy:1080", "only http:// proxies"),
        ("http://proxy", "explicit port"),
        ("http://proxy:99999", "valid port"),
        ("http://:3128", "no host"),
        ("http://proxy:3128/path", "path, query or fragment"),
        ("http://user:hunter22@proxy:3128/x", "path, query or fragment"),
    ],
)
def test_a_bad_proxy_setting_says_what_to_fix_without_its_password(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        EgressProxy.parse(text)
    assert "hunter22" not in str(err.value)
    with pytest.raises(ConfigError, match=message) as config_err:
        Settings.from_env({"STREAMS_EGRESS_PROXY": text})
    assert "STREAMS_EGRESS_PROXY (value hidden) is not valid" in str(config_err.value)
    assert "hunter22" not in str(config_err.value)


def test_the_proxy_setting_is_parsed_and_never_shown() -> None:
    proxy = EgressProxy.parse("http://egress%40corp:p%3Ass@Proxy.Internal:3128/")
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == (
        "proxy.internal",
        3128,
        "egress@corp",
        "p:ss",
    )
    assert "p:ss" not in repr(proxy)
    assert proxy.describe() == "proxy.internal:3128"
    settings = Settings.from_env({"STREAMS_EGRESS_PROXY": "http://u:p4ss@proxy:3128"})
    assert settings.public_view()["STREAMS_EGRESS_PROXY"] == "(set)"
    assert "p4ss" not in repr(settings)


async def test_checked_answers_are_pinned_for_a_while_ipv4_first() -> None:
    calls: list[str] = []
    now = [1000.0]

    async def resolver(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        calls.append(host)
        return [
            (socket.AF_INET6, 1, 6, "", ("2606:4700::1", port, 0, 0)),
            (socket.AF_INET, 1, 6, "", ("93.184.216.34", port)),
        ]

    router = EgressRouter(
        EgressProxy.parse("http://10.0.0.5:3128"), (), resolver=resolver, clock=lambda: now[0]
    )
    from yarl import URL

    url, kwargs = await router.route(URL("https://hooks.example.com/in?a=1"))
    assert str(url) == "https://93.184.216.34/in?a=1"
    assert kwargs["server_hostname"] == "hooks.example.com"
    assert str(kwargs["proxy"]) == "http://10.0.0.5:3128"
    await router.route(URL("https://hooks.example.com/other"))
    assert calls == ["hooks.example.com"]
    now[0] += PIN_TTL_S + 1
    await router.route(URL("https://hooks.example.com/in"))
    assert calls == ["hooks.example.com", "hooks.example.com"]
    literal, kwargs = await router.route(URL("https://93.184.216.34:8443/x"))
    assert str(literal) == "https://93.184.216.34:8443/x"
    assert "server_hostname" not in kwargs


async def test_a_name_with_one_refused_address_is_refused_and_not_pinned() -> None:
    async def resolver(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return [
            (socket.AF_INET, 1, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, 1, 6, "", ("10.1.2.3", port)),
        ]

    router = EgressRouter(EgressProxy.parse("http://10.0.0.5:3128"), (), resolver=resolver)
    with pytest.raises(DestinationRefusedError, match=r"10\.1\.2\.3, a private address"):
        await router.pin("rebinding.example", 443)
    assert router._pins == {}


async def test_a_proxied_session_connects_to_nothing_but_the_proxy() -> None:
    router = EgressRouter(EgressProxy.parse("http://127.0.0.1:3128"), ())
    with pytest.raises(DestinationRefusedError, match="only to the proxy"):
        await router.resolver.resolve("example.com", 443)
    factory = router.socket_factory()
    with pytest.raises(DestinationRefusedError, match="only to the proxy"):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)))
    factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 3128))).close()
    named = EgressRouter(EgressProxy.parse("http://localhost:3128"), ())
    answers = await named.resolver.resolve("localhost", 3128)
    assert {a["host"] for a in answers} <= {"127.0.0.1", "::1"}
    named.socket_factory()((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 3128))).close()
