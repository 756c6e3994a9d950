"""Pure parts of the console: charts (fixed vectors), links, sessions, headers, verify recipes."""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from streams.api.stats import failing, window_stats
from streams.console import charts, figures, security
from streams.console import live as live_module
from streams.console.sessions import ConsoleLedger, Grant, LinkRefused, SessionCodec
from streams.console.verify import RECIPES
from streams.log.attempts import AttemptLog
from streams.records import Attempt
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


def attempt(at: float, sub: str = "sub_a", *, ok: bool = True, ms: float = 10.0) -> Attempt:
    return Attempt(
        delivery_id=f"d{at}{sub}",
        event_id="e",
        event_type="alert.fired",
        tenant_id="acme",
        subscription_id=sub,
        attempt=1,
        at=at,
        duration_ms=ms,
        outcome="delivered" if ok else "retry",
        status=200 if ok else 503,
        error=None if ok else "HTTP 503",
    )


def rows_of(*attempts: Attempt) -> list[tuple[Any, ...]]:
    log = AttemptLog(len(attempts) + 1)
    for a in attempts:
        log.add(a)
    return log.newest(len(attempts))


def test_latency_bins_are_eighths_of_an_octave_from_half_a_millisecond() -> None:
    assert [figures.latency_bin(ms) for ms in (0.0, 0.49, 0.5, 0.99, 1.0, 2.0)] == [
        0, 0, 1, 8, 9, 17,
    ]  # fmt: skip
    assert figures.latency_bin(float("nan")) == 0
    assert figures.latency_bin(1e12) == figures.HIST_BINS - 1
    assert figures.bin_ms(0) == 0.5
    assert figures.bin_ms(9) == pytest.approx(0.5 * 2 ** (8.5 / 8))
    assert figures.hist_percentile({}, 0.5) is None
    # Nearest rank: of 4 values, p50 is the 2nd and p99 the 4th.
    assert figures.hist_percentile({1: 1, 9: 2, 17: 1}, 0.5) == round(figures.bin_ms(9), 3)
    assert figures.hist_percentile({1: 1, 9: 2, 17: 1}, 0.99) == round(figures.bin_ms(17), 3)


def test_figures_count_minutes_windows_failing_endpoints_and_series() -> None:
    now = 6000.0  # minute 100 starts at 6000
    live = figures.LiveFigures()
    counted = live.fold(
        rows_of(
            attempt(now - 7200),  # older than an hour and the lateness allowed: dropped
            attempt(now - 3000, "sub_b", ok=False),  # an hour's minute, outside 5 minutes
            attempt(now - 250, ok=False, ms=100.0),
            attempt(now - 200, ms=1.0),
            attempt(now - 30, "sub_b", ok=False, ms=2.0),
            attempt(now + 5, ms=4.0),  # a later clock counts, as in /v1/stats
        ),
        now,
    )
    assert counted == 5
    five = live.window(now, 300)
    assert (five["attempts"], five["delivered"], five["success_rate"]) == (4, 2, 0.5)
    assert five["latency_ms"] == {
        "p50": round(figures.bin_ms(figures.latency_bin(2.0)), 3),
        "p99": round(figures.bin_ms(figures.latency_bin(100.0)), 3),
    }
    assert live.failing(now, 3600, limit=10) == [
        {
            "subscription_id": "sub_b",
            "tenant_id": "acme",
            "attempts": 2,
            "failures": 2,
            "last_error": {"at": now - 30, "status": 503, "error": "HTTP 503"},
            "success_rate": 0.0,
        },
        {
            "subscription_id": "sub_a",
            "tenant_id": "acme",
            "attempts": 3,
            "failures": 1,
            "last_error": {"at": now - 250, "status": 503, "error": "HTTP 503"},
            "success_rate": round(2 / 3, 6),
        },
    ]
    assert live.failing(now, 3600, limit=1)[0]["subscription_id"] == "sub_b"
    series = live.series(now, count=6)  # minutes 95..100
    assert series == [
        charts.Bucket(1, 0),  # 5750 (-250): minute 95 starts at 5700
        charts.Bucket(1, 1),  # 5800 (-200)
        charts.Bucket(),
        charts.Bucket(),
        charts.Bucket(1, 0),  # 5970 (-30)
        charts.Bucket(1, 1),  # 6005 (+5): the minute in progress
    ]
    # An hour and five minutes later, only the minute that old is kept.
    live.fold([], now + 3900)
    assert sorted(live.minutes) == [6000]


def test_figures_agree_with_the_api_statistics_on_the_same_attempts() -> None:
    """The reference is /v1/stats's exact code: counts and the failing list are equal,
    percentiles within the histogram's 4.5%."""
    rnd = random.Random(3)
    now = 1_800_000_000.0  # on a minute: the 5-minute window is 5 whole minutes
    attempts = [
        attempt(
            now - 299.5 + i * 0.1,
            f"sub_{rnd.randrange(5)}",
            ok=rnd.random() < 0.9,
            ms=rnd.lognormvariate(3.4, 0.8),
        )
        for i in range(2995)
    ]
    live = figures.LiveFigures()
    live.fold(rows_of(*attempts[:1000]), now)
    live.fold(rows_of(*attempts[1000:]), now)  # in two parts, as samples fold them
    exact = window_stats(attempts, now=now, seconds=300)
    got = live.window(now, 300)
    assert (got["attempts"], got["delivered"], got["success_rate"]) == (
        exact["attempts"],
        exact["delivered"],
        exact["success_rate"],
    )
    for q in ("p50", "p99"):
        assert got["latency_ms"][q] == pytest.approx(exact["latency_ms"][q], rel=0.045), q
    assert live.failing(now, 300, limit=3) == failing(attempts, now=now, seconds=300, limit=3)


def test_the_attempt_log_hands_out_only_its_newest_rows() -> None:
    log = AttemptLog(3)
    for i in range(5):
        log.add(attempt(float(i)))
    assert log.appended == 5
    assert [row[6] for row in log.newest(2)] == [3.0, 4.0]
    assert [row[6] for row in log.newest(99)] == [2.0, 3.0, 4.0]  # what memory still holds
    assert log.newest(0) == []


class _FakeMonitor:
    """The Kafka half of a sample (streams monitor's Monitor), without Kafka."""

    def __init__(self, settings: Any, fetch_stats: Any) -> None:
        self.fetch_stats = fetch_stats

    def sample(self) -> Any:
        return SimpleNamespace(
            kafka_error=None,
            events_in_per_s=1.0,
            deliveries_out_per_s=2.0,
            dlq_depth=0,
            stages=[],
        )

    def close(self) -> None:
        pass


async def test_each_live_sample_folds_in_only_the_attempts_logged_since_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_module, "Monitor", _FakeMonitor)
    log = AttemptLog(1000)
    asked: list[int] = []
    newest = log.newest
    monkeypatch.setattr(log, "newest", lambda n: asked.append(n) or newest(n))
    pipeline = SimpleNamespace(
        settings=None, extras={}, subscriptions=SimpleNamespace(get=lambda _id: None)
    )
    view = live_module.LiveView(pipeline, log)  # type: ignore[arg-type]
    now = time.time()
    for i in range(3):
        log.add(attempt(now - 10 + i, ok=i != 1))
    first = await view.current()
    assert (first.attempts_5m, first.success_rate_5m) == (3, round(2 / 3, 6))
    assert first.failing[0]["subscription_id"] == "sub_a"
    for i in range(2):
        log.add(attempt(now - 5 + i))
    view._last = None  # as if the first sample were older than FRESH_S
    second = await view.current()
    assert second.attempts_5m == 5  # the first three are not counted twice
    assert asked == [3, 2]
    assert "Attempts per minute, last hour: 5" in second.chart_attempts


def test_server_timing_is_the_servers_milliseconds() -> None:
    assert security.server_timing(0.01234) == "app;dur=12.3"
    assert security.server_timing(-1.0) == "app;dur=0.0"  # a clock step backwards
