"""Pure parts of the console: charts (fixed vectors), links, sessions, headers, verify recipes."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from streams.console import charts, listing, security
from streams.console.sessions import ConsoleLedger, Grant, LinkRefused, SessionCodec
from streams.console.verify import RECIPES
from streams.errors import InvalidRequestError
from streams.records import Subscription
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


# -- the endpoint page's delivery chart: hours or UTC days, axes, legend, tooltips ------------

#: 2025-12-02 00:00 UTC.
DEC_02 = 1_764_633_600


def test_history_chart_fixed_vector() -> None:
    B = charts.Bucket
    svg = charts.history_chart(
        [B(4, 3), B(0, 0), B(2, 2), B(1, 0)],
        start=DEC_02 + 5 * 3600,  # 05:00 UTC: the 06:00 bar is the one labelled
        span_s=3600,
        period="4 hours",
        label_every=6,
        width=120,
        height=100,
    )
    # Plot: x 48..112 (4 slots of 16, bars 14 wide), y 28 (peak) .. 78 (0).
    label = "4 hours: 7 attempts, 5 delivered (71.4%); busiest hour 05:00 UTC with 4 attempts"
    assert svg == (
        '<svg class="chart history" xmlns="http://www.w3.org/2000/svg" width="120" '
        f'height="100" viewBox="0 0 120 100" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
        '<rect class="chart-frame" x="0" y="0" width="120" height="100"/>'
        '<rect class="bar-ok" x="48" y="6" width="10" height="10"/>'
        '<text class="chart-legend" x="62" y="15">delivered</text>'
        '<rect class="bar-failed" x="138" y="6" width="10" height="10"/>'
        '<text class="chart-legend" x="152" y="15">failed or retried</text>'
        '<line class="chart-grid" x1="48" y1="28" x2="112" y2="28"/>'
        '<line class="chart-axis" x1="48" y1="78" x2="112" y2="78"/>'
        '<text class="chart-tick" x="42" y="32" text-anchor="end">4</text>'
        '<text class="chart-tick" x="42" y="82" text-anchor="end">0</text>'
        '<g class="bar"><title>Dec 02 05:00 UTC: 4 attempts, 3 delivered</title>'
        '<rect class="bar-hit" x="48" y="28" width="16" height="50"/>'
        '<rect class="bar-failed" x="49" y="28" width="14" height="12.5"/>'
        '<rect class="bar-ok" x="49" y="40.5" width="14" height="37.5"/></g>'
        '<text class="chart-tick" x="64" y="94" text-anchor="middle">06:00</text>'
        '<g class="bar"><title>Dec 02 06:00 UTC: no attempts</title>'
        '<rect class="bar-hit" x="64" y="28" width="16" height="50"/></g>'
        '<g class="bar"><title>Dec 02 07:00 UTC: 2 attempts, 2 delivered</title>'
        '<rect class="bar-hit" x="80" y="28" width="16" height="50"/>'
        '<rect class="bar-ok" x="81" y="53" width="14" height="25"/></g>'
        '<g class="bar"><title>Dec 02 08:00 UTC: 1 attempt, 0 delivered</title>'
        '<rect class="bar-hit" x="96" y="28" width="16" height="50"/>'
        '<rect class="bar-failed" x="97" y="65.5" width="14" height="12.5"/></g>'
        "</svg>"
    )


def bars_of(svg: str, cls: str) -> list[tuple[str, str, str, str]]:
    """(x, y, width, height) of each rect of class ``cls`` in a bar (not the legend)."""
    return re.findall(
        rf'<rect class="{cls}" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/>',
        svg.split("</text>", 2)[-1],
    )


def test_history_chart_of_a_day_labels_every_6_hours_and_names_the_busiest() -> None:
    hours = [charts.Bucket()] * 24
    hours[14] = charts.Bucket(40, 36)
    hours[15] = charts.Bucket(90, 85)
    hours[23] = charts.Bucket(0, 0)
    svg = charts.history_chart(hours, start=DEC_02, span_s=3600, period="24 hours", label_every=6)
    ticks = re.findall(r'<text class="chart-tick" x="([\d.]+)" y="194"[^>]*>([^<]+)<', svg)
    # 960 wide: 24 slots of 904 / 24 = 37.67 px from x = 48; a label at its hour's start,
    # midnight's named by its day.
    assert ticks == [("48", "Dec 02"), ("274", "06:00"), ("500", "12:00"), ("726", "18:00")]
    assert re.search(r'aria-label="([^"]+)"', svg).group(1) == (  # type: ignore[union-attr]
        "24 hours: 130 attempts, 121 delivered (93.1%); busiest hour 15:00 UTC with 90 attempts"
    )
    assert '<text class="chart-tick" x="42" y="32" text-anchor="end">90</text>' in svg
    # Two bars only (gaps elsewhere); the hour of 90 is the whole height (150 px).
    assert bars_of(svg, "bar-ok") == [
        ("576.3", "118", "35.7", "60"),
        ("614", "36.3", "35.7", "141.7"),
    ]
    assert bars_of(svg, "bar-failed") == [
        ("576.3", "111.3", "35.7", "6.7"),
        ("614", "28", "35.7", "8.3"),
    ]
    assert svg.count("<title>") == 25  # the chart's, and one per hour
    assert "<title>Dec 02 15:00 UTC: 90 attempts, 85 delivered</title>" in svg
    assert "style" not in svg


def test_history_chart_of_7_days_names_each_day_under_its_bar() -> None:
    days = [charts.Bucket(10 * d, 10 * d - (d % 2)) for d in range(7)]
    svg = charts.history_chart(days, start=DEC_02, span_s=86_400, period="7 days")
    ticks = re.findall(r'<text class="chart-tick" x="([\d.]+)" y="194"[^>]*>([^<]+)<', svg)
    # 7 slots of 904 / 7 = 129.14 px: each name centred under its bar.
    assert ticks == [
        ("112.6", "Dec 02"),
        ("241.7", "Dec 03"),
        ("370.9", "Dec 04"),
        ("500", "Dec 05"),
        ("629.1", "Dec 06"),
        ("758.3", "Dec 07"),
        ("887.4", "Dec 08"),
    ]
    label = re.search(r'aria-label="([^"]+)"', svg)
    assert label is not None
    assert label.group(1) == (
        "7 days: 210 attempts, 207 delivered (98.6%); busiest day Dec 08 with 60 attempts"
    )
    assert "<title>Dec 03 (UTC): 10 attempts, 9 delivered</title>" in svg
    assert "<title>Dec 02 (UTC): no attempts</title>" in svg
    assert len(bars_of(svg, "bar-ok")) == 6  # Dec 02 is a gap


def test_history_chart_escapes_every_text() -> None:
    hostile = '<img src=x onerror="alert(1)"> & co'
    svg = charts.history_chart([charts.Bucket(1, 1)], start=DEC_02, span_s=3600, period=hostile)
    assert "<img" not in svg
    assert 'aria-label="&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co: 1 attempt,' in svg
    assert "<title>&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co: 1 attempt," in svg
    empty = charts.history_chart([charts.Bucket()], start=DEC_02, span_s=3600, period=hostile)
    assert empty == (
        '<p class="empty chart-empty">No attempts in the last '
        "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co.</p>"
    )


def test_history_chart_without_attempts_says_so_instead_of_an_empty_frame() -> None:
    for period, span in (("24 hours", 3600), ("7 days", 86_400)):
        got = charts.history_chart([charts.Bucket()] * 24, start=DEC_02, span_s=span, period=period)
        assert got == f'<p class="empty chart-empty">No attempts in the last {period}.</p>'
        assert charts.history_label([], start=DEC_02, span_s=span, period=period) == (
            f"No attempts in the last {period}"
        )


def test_history_chart_of_one_huge_bucket_keeps_the_small_ones_and_failures_visible() -> None:
    B = charts.Bucket
    svg = charts.history_chart(
        [B(10**9, 10**9 - 1), B(1, 1), B(), B(3, 0)],
        start=DEC_02,
        span_s=3600,
        period="4 hours",
        width=120,
        height=100,
    )
    assert '<text class="chart-tick" x="42" y="32" text-anchor="end">1,000,000,000</text>' in svg
    assert "4 hours: 1,000,000,004 attempts, 1,000,000,000 delivered (100.0%)" in svg
    # The huge hour: the whole height, its one failure a pixel; the others a pixel each.
    assert bars_of(svg, "bar-failed") == [("49", "28", "14", "1"), ("97", "77", "14", "1")]
    assert bars_of(svg, "bar-ok") == [("49", "29", "14", "49"), ("65", "77", "14", "1")]


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


# -- the endpoint list's filters: state tabs, search, counts ----------------------------------


def _listed(
    sub_id: str,
    url: str,
    description: str = "",
    *,
    disabled: bool = False,
    attempts: int = 0,
    delivered: int = 0,
) -> listing.Listed:
    sub = Subscription(
        id=sub_id,
        tenant_id="acme",
        url=url,
        event_types=["*"],
        description=description,
        state="disabled" if disabled else "enabled",
    )
    return listing.Listed(sub, attempts=attempts, delivered=delivered)


#: ok: all delivered; bad: one of 5 not delivered; off: disabled with failures (Disabled,
#: never Failing); idle: no attempts; umlaut: a description in another case and script.
LISTED = [
    _listed("sub_ok", "https://shop.example.com/hooks", "Orders", attempts=5, delivered=5),
    _listed("sub_bad", "https://crm.example.org/in", "CRM sync", attempts=5, delivered=4),
    _listed("sub_off", "https://old.example.net/x", "retired", disabled=True, attempts=3),
    _listed("sub_idle", "https://idle.example.com/", ""),
    _listed("sub_umlaut", "https://example.de/MÜNCHEN", "Straße orders"),
]


def _ids(found: listing.Filtered) -> list[str]:
    return [item.sub.id for item in found.shown]


def test_the_state_tabs_count_and_filter_fixed_vector() -> None:
    everything = listing.filter_endpoints(LISTED, listing.parse_filter({}))
    assert _ids(everything) == [item.sub.id for item in LISTED]
    assert everything.counts == {"all": 5, "enabled": 4, "disabled": 1, "failing": 1}
    assert everything.total == 5
    expected = {
        "all": ["sub_ok", "sub_bad", "sub_off", "sub_idle", "sub_umlaut"],
        "enabled": ["sub_ok", "sub_bad", "sub_idle", "sub_umlaut"],
        "disabled": ["sub_off"],
        "failing": ["sub_bad"],
    }
    for state, ids in expected.items():
        found = listing.filter_endpoints(LISTED, listing.parse_filter({"state": state}))
        assert _ids(found) == ids, state
        assert found.counts == everything.counts, state  # the tabs' counts stay
    assert listing.parse_filter({"state": ""}).state == "all"


def test_the_search_matches_url_description_and_id_ignoring_case_and_counts_within() -> None:
    def search(q: str, state: str = "all") -> listing.Filtered:
        return listing.filter_endpoints(LISTED, listing.parse_filter({"q": q, "state": state}))

    assert _ids(search("  ORDERS ")) == ["sub_ok", "sub_umlaut"]  # trimmed, any case
    assert _ids(search("münchen")) == ["sub_umlaut"]  # the URL, lower-cased
    assert _ids(search("STRASSE")) == ["sub_umlaut"]  # casefold: ß is ss
    assert _ids(search("sub_id")) == ["sub_idle"]  # the id
    assert _ids(search("example.org")) == ["sub_bad"]
    found = search("example.com")
    assert _ids(found) == ["sub_ok", "sub_idle"]
    assert found.counts == {"all": 2, "enabled": 2, "disabled": 0, "failing": 0}
    assert found.total == 5  # every endpoint, before the filters
    assert _ids(search("example", "failing")) == ["sub_bad"]
    assert _ids(search("retired", "enabled")) == []
    assert search("retired", "enabled").counts["disabled"] == 1
    assert _ids(search("nowhere")) == []


def test_a_filter_says_what_it_is_and_whether_it_is_active() -> None:
    assert not listing.parse_filter({}).active
    assert not listing.parse_filter({"q": "   "}).active
    assert listing.parse_filter({"state": "failing"}).words() == "Failing"
    both = listing.parse_filter({"state": "disabled", "q": " old "})
    assert both.active
    assert (both.search, both.typed) == ("old", "old")
    assert both.words() == "Disabled; search “old”"
    assert listing.parse_filter({"q": "x"}).words() == "search “x”"


def test_a_search_over_200_characters_is_not_applied_and_says_why() -> None:
    at_most = listing.parse_filter({"q": "a" * 200})
    assert (at_most.search, at_most.error) == ("a" * 200, None)
    long = listing.parse_filter({"q": " " + "a" * 201 + " ", "state": "disabled"})
    assert long.search == ""
    assert long.typed == "a" * 201
    assert long.state == "disabled"  # the state still applies
    assert long.error is not None
    assert long.error.startswith("A search is at most 200 characters (this one has 201)")
    assert _ids(listing.filter_endpoints(LISTED, long)) == ["sub_off"]


def test_an_unknown_state_is_refused_naming_the_choices() -> None:
    for bad in ("broken", "ALL", "failing "):
        with pytest.raises(InvalidRequestError) as caught:
            listing.parse_filter({"state": bad})
        assert str(caught.value) == (
            f"Unknown endpoint state {bad!r}: choose one of all, enabled, disabled, failing."
        )
    with pytest.raises(InvalidRequestError) as caught:
        listing.parse_filter({"state": "x" * 5000})
    assert len(str(caught.value)) < 120  # the value is cut, not echoed whole


def test_each_tenants_counts_are_its_own_lists_tab_counts() -> None:
    def of(tenant: str, item: listing.Listed) -> listing.Listed:
        return dataclasses.replace(item, sub=dataclasses.replace(item.sub, tenant_id=tenant))

    beta = [
        of("beta", _listed("sub_b1", "https://b.example/1", attempts=2, delivered=0)),
        of("beta", _listed("sub_b2", "https://b.example/2", attempts=1, delivered=0)),
        of("beta", _listed("sub_b3", "https://b.example/3", disabled=True, attempts=9)),
    ]
    quiet = [of("quiet", _listed("sub_q", "https://q.example/", disabled=True, attempts=4))]
    counts = listing.by_tenant([*LISTED, *quiet, *beta])
    # The most failing first (beta 2, acme 1), then by tenant.
    assert counts == [
        listing.TenantCounts("beta", endpoints=3, enabled=2, failing=2),
        listing.TenantCounts("acme", endpoints=5, enabled=4, failing=1),
        listing.TenantCounts("quiet", endpoints=1, enabled=0, failing=0),
    ]
    # Each is what that tenant's own list counts under its All, Enabled and Failing tabs.
    for tenant, items in (("acme", LISTED), ("beta", beta), ("quiet", quiet)):
        tabs = listing.filter_endpoints(items, listing.parse_filter({})).counts
        found = next(c for c in counts if c.tenant == tenant)
        assert (found.endpoints, found.enabled, found.failing) == (
            tabs["all"],
            tabs["enabled"],
            tabs["failing"],
        )
    assert listing.by_tenant([]) == []
