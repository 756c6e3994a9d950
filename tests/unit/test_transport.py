"""HttpSender against real local HTTP servers: caps, redirects, timeouts, errors, policy.

Every server listens on 127.0.0.1 (or 127.0.0.2, which the allowlist leaves out)
on a port the kernel picks, and is started and stopped by the test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from streams.config import Settings
from streams.delivery import transport
from streams.delivery.engine import SendResult
from streams.delivery.outcome import Delivered, ErrorKind, classify
from streams.delivery.request import PreparedRequest
from streams.delivery.transport import MAX_RESPONSE_BYTES, HttpSender, PolicyResolver
from streams.destinations import resolve_and_check

DEV = {"STREAMS_ENV": "development", "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32"}
PROD = {"STREAMS_ENV": "production", "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32"}
HEADERS = {
    "content-type": "application/json",
    "user-agent": "streams-test/1.0",
    "webhook-id": "msg_1",
    "X-Custom": "custom value",
}
BODY = b'{"type":"order.created","data":{"id":"ord_1"}}'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Server:
    host: str
    port: int
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def serve(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """An aiohttp server recording every request it gets, on a free port."""
    seen: list[Seen] = []

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers), body))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        yield Server(host, port, seen)
    finally:
        await runner.cleanup()


@dataclass
class RawServer:
    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def serve_raw(answer: bytes | None, *, host: str = "127.0.0.1") -> AsyncIterator[RawServer]:
    """A TCP server that reads the request head, writes ``answer`` and closes."""
    state = RawServer(port=0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def sender_for(environ: dict[str, str]) -> AsyncIterator[HttpSender]:
    sender = HttpSender(Settings.from_env(environ))
    try:
        yield sender
    finally:
        await sender.close()


async def send(
    sender: HttpSender,
    url: str,
    *,
    timeout_s: float = 2.0,
    headers: dict[str, str] | None = None,
    body: bytes = BODY,
) -> SendResult:
    request = PreparedRequest(
        url=url, headers=dict(HEADERS if headers is None else headers), body=body
    )
    # The sender bounds itself; this only keeps a broken sender from hanging the suite.
    return await asyncio.wait_for(sender.send(request, timeout_s=timeout_s), timeout_s + 3)


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


# --- answers --------------------------------------------------------------------------


async def test_a_large_answer_is_read_only_up_to_4096_bytes() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload)

    async with serve(large) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert MAX_RESPONSE_BYTES == 4096
    assert result.status == 200
    assert result.error is None
    assert result.body == payload[:4096]


async def test_an_endless_answer_is_cut_at_4096_bytes_and_released() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                await response.write(b"x" * 1024)
                await asyncio.sleep(0.001)
        return response

    async with serve(endless) as server, sender_for(DEV) as sender:
        started = time.monotonic()
        result = await send(sender, server.url(), timeout_s=3.0)
        elapsed = time.monotonic() - started
    assert result.status == 200
    assert result.body == b"x" * 4096
    assert elapsed < 2.0


async def test_a_small_answer_is_returned_whole() -> None:
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert (result.status, result.body, result.error) == (200, b"ok", None)
    assert result.duration_ms > 0


async def test_a_compressed_looking_answer_is_returned_as_sent() -> None:
    raw = b"\x1f\x8b not really gzip"

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, headers={"Content-Encoding": "gzip"})

    async with serve(gzipped) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert result.status == 200
    assert result.body == raw


async def test_a_redirect_is_returned_as_the_answer_and_not_followed() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/target":
            return web.Response(text="followed")
        raise web.HTTPFound("/target")

    async with serve(redirect) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url("/hook"))
    assert result.status == 302
    assert result.error is None
    assert [seen.path for seen in server.seen] == ["/hook"]


async def test_a_redirect_to_another_server_sends_nothing_there() -> None:
    async with serve(ok) as target:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPTemporaryRedirect(target.url("/elsewhere"))

        async with serve(redirect) as server, sender_for(DEV) as sender:
            result = await send(sender, server.url())
    assert result.status == 307
    assert target.seen == []


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_passed_through_verbatim(status: int) -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Retry-After": "120"}, text="slow down")

    async with serve(busy) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert result.status == status
    assert result.retry_after == "120"
    assert result.body == b"slow down"


async def test_an_http_date_retry_after_is_passed_through_verbatim() -> None:
    when = "Wed, 21 Oct 2026 07:28:00 GMT"

    async def busy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, headers={"Retry-After": when})

    async with serve(busy) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert result.retry_after == when


async def test_an_answer_without_retry_after_has_none() -> None:
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url())
    assert result.retry_after is None


# --- timeouts and broken connections --------------------------------------------------


async def test_an_answer_slower_than_the_timeout_is_a_timeout_within_the_timeout() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    async with serve(slow) as server, sender_for(DEV) as sender:
        try:
            started = time.monotonic()
            result = await send(sender, server.url(), timeout_s=0.5)
            elapsed = time.monotonic() - started
        finally:
            release.set()
    assert result.status is None
    assert result.error in {ErrorKind.TOTAL_TIMEOUT, ErrorKind.READ_TIMEOUT}
    assert elapsed < 0.5 + 1.0


async def test_a_body_trickling_in_is_bounded_by_the_whole_request_timeout() -> None:
    # Each chunk arrives well within the read timeout; only the total bound stops it.
    release = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                if release.is_set():
                    break
                await response.write(b".")
                await asyncio.sleep(0.1)
        return response

    async with serve(trickle) as server, sender_for(DEV) as sender:
        try:
            started = time.monotonic()
            result = await send(sender, server.url(), timeout_s=0.6)
            elapsed = time.monotonic() - started
        finally:
            release.set()
    assert result.error in {ErrorKind.TOTAL_TIMEOUT, ErrorKind.READ_TIMEOUT}
    assert result.status == 200  # the status line had arrived: it is kept
    assert elapsed < 0.6 + 1.0


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with sender_for(DEV) as sender:
        result = await send(sender, f"http://127.0.0.1:{free_port()}/hook")
    assert result.status is None
    assert result.error == ErrorKind.CONNECT_ERROR


async def test_a_body_cut_off_mid_answer_is_a_reset_that_keeps_the_status() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with serve_raw(head + b"only part of it") as server, sender_for(DEV) as sender:
        result = await send(sender, f"http://127.0.0.1:{server.port}/hook")
    assert result.error in {ErrorKind.CONNECTION_RESET, ErrorKind.PROTOCOL_ERROR}
    # The receiver answered: a status wins over the error (see streams.delivery.outcome).
    assert result.status == 200
    assert classify(result.status, result.error, None) == Delivered(200)


async def test_a_cut_off_answer_keeps_its_retry_after() -> None:
    head = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 500\r\n\r\n"
    async with serve_raw(head + b"partial") as server, sender_for(DEV) as sender:
        result = await send(sender, f"http://127.0.0.1:{server.port}/hook")
    assert result.error in {ErrorKind.CONNECTION_RESET, ErrorKind.PROTOCOL_ERROR}
    assert (result.status, result.retry_after) == (503, "30")


async def test_a_connection_closed_before_any_answer_is_a_reset() -> None:
    async with serve_raw(None) as server, sender_for(DEV) as sender:
        result = await send(sender, f"http://127.0.0.1:{server.port}/hook")
    assert server.connections == 1
    assert result.status is None
    assert result.error in {ErrorKind.CONNECTION_RESET, ErrorKind.PROTOCOL_ERROR}


async def test_a_garbled_answer_is_an_error_not_an_exception() -> None:
    async with serve_raw(b"NOT HTTP AT ALL\r\n\r\n") as server, sender_for(DEV) as sender:
        result = await send(sender, f"http://127.0.0.1:{server.port}/hook")
    assert result.status is None
    assert result.error in {ErrorKind.CONNECTION_RESET, ErrorKind.PROTOCOL_ERROR}


# --- the destination policy -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://0x7f000002/hook",
    ],
)
async def test_a_refused_ip_literal_is_refused_before_connecting(url: str) -> None:
    async with sender_for(DEV) as sender:
        started = time.monotonic()
        result = await send(sender, url)
        elapsed = time.monotonic() - started
    assert result.status is None
    assert result.error == ErrorKind.DESTINATION_REFUSED
    assert elapsed < 0.5  # a connection attempt to 10.0.0.1 would hang until the timeout


async def test_a_listening_loopback_address_outside_the_allowlist_gets_no_connection() -> None:
    # 127.0.0.2 is loopback but only 127.0.0.1/32 is allowed.
    async with serve_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", host="127.0.0.2") as raw:
        async with sender_for(DEV) as sender:
            result = await send(sender, f"http://127.0.0.2:{raw.port}/hook")
        await asyncio.sleep(0.05)
    assert result.error == ErrorKind.DESTINATION_REFUSED
    assert "127.0.0.2" in (result.detail or "")
    assert raw.connections == 0


async def test_plain_http_is_refused_in_production_without_a_connection() -> None:
    async with serve(ok) as server, sender_for(PROD) as sender:
        result = await send(sender, server.url())
    assert result.error == ErrorKind.DESTINATION_REFUSED
    assert server.seen == []


async def test_the_socket_guard_refuses_an_address_that_slipped_past_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A resolver that forgets the policy: the connect-time guard is the last line.
    async def unchecked(host: str, port: int, *, allowlist: Any = ()) -> Any:
        return [ipaddress.ip_address("127.0.0.2")]

    monkeypatch.setattr(transport, "resolve_and_check", unchecked)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    async with serve_raw(answer, host="127.0.0.2") as raw, sender_for(DEV) as sender:
        result = await send(sender, f"http://sneaky.test:{raw.port}/hook")
        await asyncio.sleep(0.05)
    assert result.error == ErrorKind.DESTINATION_REFUSED
    assert "127.0.0.2" in (result.detail or "")
    assert raw.connections == 0


class FakeDNS:
    """Answers for ``rebind.test`` in turn; the policy check itself stays the real one."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def resolver(
        self, host: str, port: int
    ) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        self.asked.append(host)
        if host != "rebind.test" or not self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ips = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)) for ip in ips
        ]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def patched(host: str, port: int, *, allowlist: Any = ()) -> Any:
            return await resolve_and_check(host, port, allowlist=allowlist, resolver=self.resolver)

        monkeypatch.setattr(transport, "resolve_and_check", patched)


async def closing(request: web.Request) -> web.StreamResponse:
    response = web.Response(text="ok")
    response.force_close()  # Connection: close, so every request needs a new connection
    return response


async def test_a_name_rebound_to_a_refused_address_is_refused_at_connect_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = FakeDNS(["127.0.0.1"], ["10.0.0.5"])
    dns.install(monkeypatch)
    async with serve(closing) as server, sender_for(DEV) as sender:
        first = await send(sender, server.url(host="rebind.test"))
        started = time.monotonic()
        second = await send(sender, server.url(host="rebind.test"))
        elapsed = time.monotonic() - started
    assert first.status == 200
    assert second.status is None
    assert second.error == ErrorKind.DESTINATION_REFUSED
    assert "10.0.0.5" in (second.detail or "")
    assert dns.asked == ["rebind.test", "rebind.test"]  # resolved for each new connection
    assert len(server.seen) == 1
    assert elapsed < 0.5  # no connection was attempted to 10.0.0.5


async def test_a_name_resolving_to_an_allowed_and_a_refused_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = FakeDNS(["127.0.0.1", "10.0.0.5"])
    dns.install(monkeypatch)
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url(host="rebind.test"))
    assert result.error == ErrorKind.DESTINATION_REFUSED
    assert "10.0.0.5" in (result.detail or "")
    assert server.seen == []


async def test_a_name_that_does_not_resolve_is_a_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = FakeDNS(["127.0.0.1"])
    dns.install(monkeypatch)
    async with sender_for(DEV) as sender:
        result = await send(sender, f"http://no-such-name.test:{free_port()}/hook")
    assert result.status is None
    assert result.error == ErrorKind.DNS_ERROR
    assert dns.asked == ["no-such-name.test"]


async def test_the_policy_resolver_returns_only_the_checked_addresses_pinned() -> None:
    resolver = PolicyResolver((ipaddress.ip_network("127.0.0.1/32"),))
    answers = await resolver.resolve("127.0.0.1", 8080)
    assert [(a["host"], a["port"], a["family"]) for a in answers] == [
        ("127.0.0.1", 8080, socket.AF_INET)
    ]
    assert answers[0]["flags"] & socket.AI_NUMERICHOST
    with pytest.raises(Exception, match=r"10\.0\.0\.5"):
        await resolver.resolve("10.0.0.5", 80)
    await resolver.close()


# --- what is sent ---------------------------------------------------------------------


async def test_the_headers_and_body_arrive_as_given_with_the_urls_host() -> None:
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url("/in/hook?tenant=acme"))
    assert result.status == 200
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/in/hook?tenant=acme"
    assert seen.body == BODY
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "streams-test/1.0"
    assert seen.headers["webhook-id"] == "msg_1"
    assert seen.headers["X-Custom"] == "custom value"
    assert seen.headers["Host"] == f"127.0.0.1:{server.port}"
    assert seen.headers["Content-Length"] == str(len(BODY))
    assert seen.headers.getall("User-Agent") == ["streams-test/1.0"]


async def test_a_custom_header_value_with_non_ascii_text_is_sent_as_utf8() -> None:
    # The API accepts such values. httpx's str path refused them, and the exception
    # escaped send() and stopped the worker (OrderedAcks.fail), again at each restart.
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url(), headers={**HEADERS, "X-Team": "Zoë ☃"})
    assert (result.status, result.error) == (200, None)
    [seen] = server.seen
    assert seen.headers["X-Team"] == "Zoë ☃"  # aiohttp's server decodes UTF-8


async def test_a_header_that_cannot_be_sent_is_a_result_not_an_exception() -> None:
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url(), headers={**HEADERS, "X-Ünicode": "v"})
    assert result.error is ErrorKind.INVALID_URL
    assert result.detail == "request headers: UnicodeEncodeError"
    assert server.seen == []


async def test_the_host_header_is_the_name_in_the_url_not_the_pinned_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeDNS(["127.0.0.1"]).install(monkeypatch)
    async with serve(ok) as server, sender_for(DEV) as sender:
        result = await send(sender, server.url(host="rebind.test"))
    assert result.status == 200
    [seen] = server.seen
    assert seen.headers["Host"] == f"rebind.test:{server.port}"


async def test_cookies_set_by_a_receiver_are_never_sent_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A name, not an IP literal: cookie jars keep no cookies for IP hosts anyway.
    FakeDNS(["127.0.0.1"]).install(monkeypatch)

    async def cookie(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="ok")
        response.set_cookie("session", "abc123", path="/")
        return response

    async with serve(cookie) as server, sender_for(DEV) as sender:
        first = await send(sender, server.url(host="rebind.test"))
        second = await send(sender, server.url(host="rebind.test"))
    assert (first.status, second.status) == (200, 200)
    assert [seen.headers.get("Cookie") for seen in server.seen] == [None, None]


# --- TLS ------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_a_self_signed_certificate_is_a_tls_error_in_production(tmp_path: Path) -> None:
    async with serve(ok, ssl_context=_self_signed(tmp_path)) as server, sender_for(PROD) as sender:
        result = await send(sender, f"https://127.0.0.1:{server.port}/hook")
    assert result.status is None
    assert result.error == ErrorKind.TLS_ERROR
    assert server.seen == []


async def test_a_self_signed_certificate_is_accepted_in_development(tmp_path: Path) -> None:
    async with serve(ok, ssl_context=_self_signed(tmp_path)) as server, sender_for(DEV) as sender:
        result = await send(sender, f"https://127.0.0.1:{server.port}/hook")
    assert result.status == 200
    assert len(server.seen) == 1
