"""Pure parts of the console: charts (fixed vectors), links, sessions, headers, verify recipes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from streams.console import charts, security
from streams.console.sessions import ConsoleLedger, Grant, LinkRefused, SessionCodec
from streams.console.verify import RECIPES
from streams.signing import SignatureInput, generate_secret, get_profile


def test_bucketize_counts_each_point_once_in_its_bucket() -> None:
    points = [(10.0, True), (10.5, False), (59.9, True), (60.0, True), (0.0, True), (61.0, True)]
    got = charts.bucketize(points, now=60.0, span_s=60.0, count=3)
    # (0, 20]: 10, 10.5 | (20, 40]: none | (40, 60]: 59.9, 60; 0.0 and 61.0 are outside.
    assert got == [charts.Bucket(2, 1), charts.Bucket(0, 0), charts.Bucket(2, 2)]
    assert got[0].success_rate == 0.5
    assert got[1].success_rate is None


def test_bar_chart_fixed_vector() -> None:
    svg = charts.bar_chart(
        [charts.Bucket(4, 3), charts.Bucket(0, 0), charts.Bucket(2, 2)],
        width=30,
        height=20,
        label="a <b> & c",
    )
    assert svg == (
        '<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="30" height="20" '
        'viewBox="0 0 30 20" role="img" aria-label="a &lt;b&gt; &amp; c">'
        "<title>a &lt;b&gt; &amp; c</title>"
        '<rect class="chart-frame" x="0" y="0" width="30" height="20"/>'
        '<rect class="bar-failed" x="0.5" y="0" width="9" height="5"/>'
        '<rect class="bar-ok" x="0.5" y="5" width="9" height="15"/>'
        '<rect class="bar-ok" x="20.5" y="10" width="9" height="10"/>'
        "</svg>"
    )


def test_line_chart_leaves_gaps_and_marks_lone_points() -> None:
    svg = charts.line_chart([0.0, 1.0, None, 0.5], width=30, height=12, label="x", ceiling=1.0)
    assert '<polyline class="line" fill="none" points="0,11 10,1"/>' in svg
    assert '<circle class="dot" cx="30" cy="6" r="2"/>' in svg
    assert "style" not in svg


@pytest.fixture
def codec() -> SessionCodec:
    return SessionCodec(MultiFernet([Fernet(Fernet.generate_key())]), session_s=3600)


def test_links_expire_after_ten_minutes_and_are_not_sessions(codec: SessionCodec) -> None:
    token, link = codec.issue_link(Grant("acme", admin=False), now=1_800_000_000.0)
    assert codec.open_link(token, now=1_800_000_599.0).grant == Grant("acme", admin=False)
    with pytest.raises(LinkRefused, match="expired"):
        codec.open_link(token, now=1_800_000_600.0)
    assert codec.open_session(token, now=1_800_000_001.0) is None
    value, session = codec.issue_session(link.grant, now=1_800_000_000.0)
    assert codec.open_session(value, now=1_800_003_599.0) == session
    assert codec.open_session(value, now=1_800_003_600.0) is None
    with pytest.raises(LinkRefused, match="not valid"):
        codec.open_link(value, now=1_800_000_001.0)
    other = SessionCodec(MultiFernet([Fernet(Fernet.generate_key())]), session_s=3600)
    assert other.open_session(value, now=1_800_000_001.0) is None


async def test_the_first_claim_in_the_topic_wins() -> None:
    ledger = ConsoleLedger()
    codec = SessionCodec(MultiFernet([Fernet(Fernet.generate_key())]), session_s=60)
    _, link = codec.issue_link(Grant("acme", admin=False), now=time.time())
    topic: list[tuple[str, bytes]] = []
    written = asyncio.Event()

    async def send(key: str, value: bytes) -> None:
        topic.append((key, value))
        written.set()

    async def reader() -> None:  # another worker's claim lands first, then ours
        await written.wait()
        rival = (topic[0][0], topic[0][1].replace(b'"nonce":"', b'"nonce":"x'))
        for key, value in (rival, *topic):
            ledger.apply(key, value)

    task = asyncio.create_task(reader())
    assert await ledger.claim(link, send) is False
    await task
    assert ledger.used(link.id)


async def test_a_claim_alone_wins_and_a_second_one_loses() -> None:
    ledger = ConsoleLedger()
    codec = SessionCodec(MultiFernet([Fernet(Fernet.generate_key())]), session_s=60)
    _, link = codec.issue_link(Grant("acme", admin=False), now=time.time())

    async def send(key: str, value: bytes) -> None:
        asyncio.get_running_loop().call_soon(ledger.apply, key, value)

    assert await ledger.claim(link, send) is True
    assert await ledger.claim(link, send) is False


def test_cookies_and_origin() -> None:
    top = security.cookie_header("c", "v", max_age=5, embed=False, secure=True)
    assert top == "c=v; Path=/console; Max-Age=5; HttpOnly; SameSite=Strict; Secure"
    framed = security.cookie_header("c", "v", max_age=5, embed=True, secure=False)
    assert framed == "c=v; Path=/console; Max-Age=5; HttpOnly; SameSite=None; Secure; Partitioned"
    assert security.same_origin(None, "http", "a:1")
    assert security.same_origin("http://A:1", "http", "a:1")
    assert not security.same_origin("https://a:1", "http", "a:1")
    assert not security.same_origin("null", "http", "a:1")
    assert not security.csrf_ok("t", None)
    assert not security.csrf_ok("t", "")
    assert security.csrf_ok("t", "t")


@pytest.mark.parametrize("profile", sorted(RECIPES))
def test_the_python_verify_example_accepts_our_signature_and_refuses_a_change(
    profile: str,
) -> None:
    secret = generate_secret(profile)
    body = b'{"type":"alert.fired","data":{"x":1}}'
    inp = SignatureInput(
        msg_id="msg_1",
        timestamp=int(time.time()),
        body=body,
        event_type="alert.fired",
        secrets=(secret,),
    )
    headers = {k.lower(): v for k, v in get_profile(profile).headers(inp).items()}
    headers.setdefault("webhook-id", "msg_1")
    scope: dict[str, Any] = {}
    exec(RECIPES[profile].python, scope)  # noqa: S102 - our own documentation's example
    assert scope["verify"](secret, headers, body) is True
    assert scope["verify"](secret, headers, body + b" ") is False


# -- the live view's figures ------------------------------------------------------------


def test_server_timing_is_the_servers_milliseconds() -> None:
    assert security.server_timing(0.01234) == "app;dur=12.3"
    assert security.server_timing(-1.0) == "app;dur=0.0"  # a clock step backwards
