"""The console in headless Chromium, against a real worker, receiver and broker.

Chromium and chromedriver are Debian's (``.ci/run`` installs them); Selenium
drives them. Third-party cookies are blocked in the browser's profile, as
more and more browsers do by default, so the embedded console is tested
where it is hardest. Screenshots of the main pages go to ``docs/console/``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from streams.config import Settings
from streams.publish import EventPublisher
from tests.integration.harness import ALERT, Api, ReceiverProcess, WorkerProcess, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
HOSTILE = "<img src=x onerror=alert(1)>"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def host_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def worker(worker_settings: Settings, host_port: int) -> Iterator[WorkerProcess]:
    """A worker whose console may be framed by the host page at http://localhost:<host_port>."""
    from streams.kafka.topics import create_topics

    create_topics(worker_settings)
    proc = WorkerProcess(
        worker_settings,
        worker_settings.state_dir / "worker.log",
        extra_env={"STREAMS_CONSOLE_FRAME_ANCESTORS": f"http://localhost:{host_port}"},
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


class _HostPage(BaseHTTPRequestHandler):
    """Another site's dashboard: frames the console, or links to it (``?src=`` / ``?link=``)."""

    def do_GET(self) -> None:
        q = parse_qs(urlsplit(self.path).query)
        if not q:
            self.send_error(404)
            return
        if "src" in q:
            src = q["src"][0]
            body = f'<h1>Host</h1><iframe id="console" src="{src}" width="1200" height="700">'
            body += "</iframe>"
        else:
            body = f'<h1>Host</h1><a id="go" href="{q["link"][0]}">Open the console</a>'
        raw = f"<!doctype html><title>host</title>{body}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def host(host_port: int) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", host_port), _HostPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{host_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver are missing (.ci/run installs them)")
        pytest.skip("chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    # Block third-party cookies, as the browsers the embedded console must survive do.
    options.add_experimental_option(
        "prefs", {"profile.cookie_controls_mode": 1, "profile.block_third_party_cookies": True}
    )
    drv = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def shot(browser: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def shot_whole_page(browser: Any, name: str) -> None:
    """A screenshot of the whole page, not only what fits in the window (long forms)."""
    size = browser.get_window_size()
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
    try:
        shot(browser, name)
    finally:
        browser.set_window_size(size["width"], size["height"])


def until(browser: Any, check: Callable[[Any], Any], timeout: float = 20, what: str = "") -> Any:
    try:
        # A polled fragment can replace an element between finding it and reading it:
        # that is a retry, not a failure (the check finds it afresh each time).
        return WebDriverWait(
            browser,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(check)
    except TimeoutException:
        raise AssertionError(
            f"timed out: {what}\n{browser.current_url}\n{browser.page_source[:3000]}"
        ) from None


def text_of(browser: Any, css: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, css)
    return str(found[0].text) if found else ""


def reload_until(
    browser: Any, check: Callable[[], bool], timeout: float = 30, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}\n{browser.page_source[:3000]}")
        time.sleep(0.7)
        browser.refresh()


def link_for(api: Api, **body: Any) -> str:
    resp = api.call("POST", "/v1/console/sessions", body)
    assert resp.status_code == 201, resp.text
    url: str = resp.json()["url"]
    return url


def tenant_api(admin: Api, tenant: str) -> Api:
    resp = admin.call("POST", "/v1/tokens", {"tenant_id": tenant})
    assert resp.status_code == 201, resp.text
    return admin.as_token(resp.json()["token"])


def publish(settings: Settings, tenant: str, n: int, prefix: str) -> None:
    with EventPublisher(settings) as pub:
        pub.publish_many(
            [pub.build("alert.fired", tenant, ALERT, event_id=f"{prefix}-{i}") for i in range(n)]
        )


def add_endpoint(browser: Any, url: str, description: str) -> str:
    browser.find_element(By.LINK_TEXT, "Add endpoint").click()
    browser.find_element(By.ID, "url").send_keys(url)
    browser.find_element(By.ID, "description").send_keys(description)
    browser.find_element(By.CSS_SELECTOR, 'input[value="alert.fired"]').click()
    browser.find_element(By.CSS_SELECTOR, "#endpoint-form button[type=submit]").click()
    dialog = until(browser, lambda b: b.find_element(By.ID, "secret-dialog"), what="secret dialog")
    assert dialog.is_displayed()
    secret = str(browser.find_element(By.ID, "secret-value").get_attribute("value"))
    assert secret.startswith("whsec_")
    return secret


@pytest.fixture(scope="module")
def acme(admin: Api) -> Api:
    return tenant_api(admin, "acme")


def test_tenant_flow_from_link_to_replay(
    browser: Any,
    worker: WorkerProcess,
    admin: Api,
    acme: Api,
    receiver: ReceiverProcess,
    worker_settings: Settings,
) -> None:
    # 1. A magic link opens the console; the session cookie is HttpOnly and Strict.
    link = link_for(acme)
    browser.get(link)
    until(browser, lambda b: b.current_url.endswith("/console/endpoints"), what="landing")
    assert "/login/" not in browser.current_url  # nothing secret left in the address bar
    cookie = next(c for c in browser.get_cookies() if c["name"] == "streams_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"

    # 2. Add an endpoint: the secret is shown once, never after a reload.
    secret = add_endpoint(browser, receiver.url("acme-ok"), HOSTILE)
    receiver.configure("acme-ok", secret=secret, profile="standard")
    shot(browser, "secret-once")
    browser.find_element(By.CSS_SELECTOR, "[data-close]").click()
    endpoint_url = browser.current_url
    browser.refresh()
    assert not browser.find_elements(By.ID, "secret-dialog")
    assert secret not in browser.page_source
    # The hostile description is text, not an element.
    assert text_of(browser, "p.description") == HOSTILE
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")

    # 3. Test: the outcome appears in place.
    browser.find_element(By.ID, "test-button").click()
    until(browser, lambda b: "Status 200" in text_of(b, "#test-status"), 40, "test result")
    shot(browser, "endpoint")

    # 4. Published events show in the log.
    publish(worker_settings, "acme", 3, "acme-ok")
    browser.get(worker.base_url + "/console/deliveries")
    reload_until(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")) >= 4,
        what="four deliveries in the log",
    )
    shot(browser, "delivery-log")
    # The Endpoint column names the endpoint by its URL, linked to the endpoint's page.
    cells = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody td.endpoint")
    assert [c.text for c in cells] == [receiver.url("acme-ok")] * len(cells)
    cells[-1].find_element(By.CSS_SELECTOR, "a.endpoint-link").click()
    until(
        browser,
        lambda b: urlsplit(b.current_url).path == urlsplit(endpoint_url).path,
        what="the endpoint's page from the log",
    )
    assert text_of(browser, "h1.url") == receiver.url("acme-ok")
    browser.get(worker.base_url + "/console/deliveries")

    # 4a. Find a delivery by its event's id (what a receiver logs); an unknown id is
    # answered on the log page, the id kept in the box.
    box = browser.find_element(By.CSS_SELECTOR, "#find-form input[name=find]")
    box.send_keys("acme-ok-1")
    browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
    until(browser, lambda b: "/console/deliveries/msg_" in b.current_url, what="found")
    assert text_of(browser, "dl.facts").count("acme-ok-1") == 1
    browser.get(worker.base_url + "/console/deliveries?find=acme-ok-404")
    assert "No delivery 'acme-ok-404'" in text_of(browser, "#find-error")
    assert browser.find_element(By.NAME, "find").get_attribute("value") == "acme-ok-404"
    shot(browser, "find-delivery")

    # 4b. Edit the endpoint: the form comes filled in (no secret in it); the endpoint's
    # page says what changed and shows the new description and event types.
    browser.get(endpoint_url)
    browser.find_element(By.ID, "edit-endpoint").click()
    until(browser, lambda b: text_of(b, "h1").startswith("Edit endpoint"), what="edit form")
    assert browser.find_element(By.ID, "url").get_attribute("value") == receiver.url("acme-ok")
    assert browser.find_element(By.ID, "description").get_attribute("value") == HOSTILE
    assert browser.find_element(By.CSS_SELECTOR, 'input[value="alert.fired"]').is_selected()
    assert secret not in browser.page_source
    description = browser.find_element(By.ID, "description")
    description.clear()
    description.send_keys("Orders to the warehouse")
    browser.find_element(By.CSS_SELECTOR, 'input[value="prospect.added"]').click()
    shot_whole_page(browser, "edit-endpoint")
    browser.find_element(By.CSS_SELECTOR, "#edit-form button[type=submit]").click()
    until(browser, lambda b: "Saved: description" in text_of(b, ".notice"), what="saved")
    assert browser.current_url.startswith(endpoint_url)
    assert text_of(browser, "p.description") == "Orders to the warehouse"
    tags = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "dl.facts code.tag")]
    assert tags == ["alert.fired", "prospect.added"], tags
    # The Test panel now offers both types; the picked one is sent.
    Select(browser.find_element(By.ID, "test-type")).select_by_value("prospect.added")
    browser.find_element(By.ID, "test-button").click()
    until(browser, lambda b: "Status 200" in text_of(b, "#test-status"), 40, "picked test")
    endpoint_id = urlsplit(endpoint_url).path.rsplit("/", 1)[-1]
    found = acme.call(
        "GET", f"/v1/deliveries?subscription_id={endpoint_id}&event_type=prospect.added"
    ).json()["data"]
    assert [d["event_id"][:9] for d in found] == ["evt_test_"], found
    # The statistics panel counts the two tests and the three published events.
    browser.get(endpoint_url)
    reload_until(
        browser,
        lambda: text_of(browser, "#attempts-1h") not in ("", "0", "1", "2", "3"),
        what="four attempts in the endpoint's statistics",
    )
    assert text_of(browser, "#rate-1h") == "100.0%"
    shot_whole_page(browser, "endpoint-stats")
    # Recent deliveries: the three events and the two tests, newest first (the picked
    # test last sent); none failed.
    recent = browser.find_elements(By.CSS_SELECTOR, "#recent-deliveries tbody tr")
    assert len(recent) == 5, text_of(browser, "#recent")
    assert text_of(recent[0], "code") == "prospect.added"
    assert [text_of(r, ".outcome") for r in recent] == ["delivered"] * 5
    browser.find_element(By.ID, "recent-tab-failed").click()
    until(browser, lambda b: "recent=failed" in b.current_url, what="the Failed tab")
    assert text_of(browser, "#recent-empty") == "No failed deliveries."
    browser.find_element(By.ID, "recent-tab-all").click()
    until(browser, lambda b: "recent=failed" not in b.current_url, what="the All tab")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#recent-deliveries tbody tr")) == 5
    browser.execute_script("document.getElementById('recent').scrollIntoView()")
    shot(browser, "endpoint-recent")
    # The Deliveries panel's chart counts the same five attempts, by hour and by day.
    chart = browser.find_element(By.CSS_SELECTOR, "#chart svg.chart.history")
    label = str(chart.get_attribute("aria-label"))
    assert label.startswith("24 hours: 5 attempts, 5 delivered (100.0%); busiest hour "), label
    assert text_of(browser, "#chart-summary") == label  # the same words, shown
    assert chart.get_attribute("role") == "img"
    assert len(chart.find_elements(By.CSS_SELECTOR, "g.bar")) == 24
    assert chart.find_elements(By.CSS_SELECTOR, "g.bar rect.bar-ok")
    assert text_of(browser, "#chart-title") == "Deliveries over the last 24 hours"
    browser.find_element(By.ID, "chart-tab-7d").click()
    until(browser, lambda b: "chart=7d" in b.current_url, what="the 7 days tab")
    chart = browser.find_element(By.CSS_SELECTOR, "#chart svg.chart.history")
    label = str(chart.get_attribute("aria-label"))
    assert label.startswith("7 days: 5 attempts, 5 delivered (100.0%); busiest day "), label
    assert text_of(browser, "#chart-summary") == label
    assert len(chart.find_elements(By.CSS_SELECTOR, "g.bar")) == 7
    assert text_of(browser, "#chart-title") == "Deliveries over the last 7 days"
    # The recent tabs keep the chart's choice, and the chart tabs keep theirs.
    browser.find_element(By.ID, "recent-tab-failed").click()
    until(browser, lambda b: "recent=failed" in b.current_url, what="Failed, 7 days kept")
    assert "chart=7d" in browser.current_url
    assert browser.find_element(By.ID, "chart-tab-7d").get_attribute("aria-current") == "page"
    browser.find_element(By.ID, "chart-tab-24h").click()
    until(browser, lambda b: "chart=7d" not in b.current_url, what="24 hours, Failed kept")
    assert "recent=failed" in browser.current_url
    browser.get(endpoint_url)
    chart = browser.find_element(By.ID, "chart")
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    chart.screenshot(str(SHOTS / "endpoint-chart.png"))

    # 5. A failing endpoint: its page lists the failed delivery under Failed, the delivery
    # log the panel links to lists the same; its attempts show the status and response.
    browser.get(worker.base_url + "/console/endpoints")
    bad_secret = add_endpoint(browser, receiver.url("acme-bad"), "always 503")
    receiver.configure("acme-bad", status=503, secret=bad_secret, profile="standard")
    bad_url = browser.current_url
    bad_id = urlsplit(bad_url).path.rsplit("/", 1)[-1]
    publish(worker_settings, "acme", 1, "acme-bad")
    browser.get(f"{worker.base_url}/console/endpoints/{bad_id}?recent=failed")
    reload_until(
        browser,
        lambda: text_of(browser, "#recent-deliveries tbody tr .outcome.give_up") == "failed",
        what="the given-up delivery under Failed",
    )
    row = browser.find_element(By.CSS_SELECTOR, "#recent-deliveries tbody tr")
    failed_id = row.get_attribute("data-delivery")
    assert text_of(row, "td.status") == "503"
    browser.execute_script("document.getElementById('recent').scrollIntoView({block: 'end'})")
    shot(browser, "endpoint-recent-failed")
    browser.find_element(By.ID, "recent-log").click()
    until(browser, lambda b: text_of(b, "h1").startswith("Delivery log"), what="the log")
    assert parse_qs(urlsplit(browser.current_url).query) == {
        "endpoint": [bad_id],
        "status": ["undelivered"],
    }
    listed = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
    assert [r.get_attribute("data-delivery") for r in listed] == [failed_id]
    browser.find_element(By.CSS_SELECTOR, "#deliveries tbody tr a").click()
    statuses = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#attempts td.status")]
    assert statuses == ["503", "503", "503"], statuses
    sent = text_of(browser, "#request-sent")
    assert "POST " + receiver.url("acme-bad") in sent
    assert '{\n  "' in sent  # the JSON body, indented

    # 5a. Copy payload and Copy as curl, read back from the clipboard (a sentinel first,
    # so a button that copies nothing fails); the curl command, run in a shell, sends a
    # request the receiver verifies: the same delivery id, body and a valid signature.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": worker.base_url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    clipboard_js = (
        "const done = arguments[arguments.length - 1];"
        "const w = arguments[0];"
        "(w === null ? navigator.clipboard.readText() : "
        "navigator.clipboard.writeText(w).then(() => w)).then(done, (e) => done('ERR ' + e));"
    )

    def clipboard(write: str | None = None) -> str:
        return str(browser.execute_async_script(clipboard_js, write))

    assert clipboard("sentinel") == "sentinel"
    browser.find_element(By.ID, "copy-payload").click()
    until(browser, lambda b: text_of(b, "#copy-status").startswith("Copied payload"), what="copy")
    payload = clipboard()
    assert payload != "sentinel"
    assert "\n" not in payload  # compact, as sent
    assert orjson.loads(payload)["id"] == "acme-bad-0"
    assert clipboard("sentinel") == "sentinel"
    browser.find_element(By.ID, "copy-curl").click()
    until(browser, lambda b: text_of(b, "#copy-status").startswith("Copied as curl"), what="curl")
    command = clipboard()
    argv = shlex.split(command.replace("\\\n", ""))
    assert argv[:4] == ["curl", "-X", "POST", receiver.url("acme-bad")], argv[:4]
    assert argv[-2:] == ["--data-raw", payload]
    assert f"webhook-id: {failed_id}" in argv
    before = len(receiver.ledger("acme-bad"))
    ran = subprocess.run(
        ["bash", "-c", command + " -sS -o /dev/null -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.stdout == "503", ran
    again = receiver.wait_for("acme-bad", before + 1, timeout_s=10)[before:]
    assert [(e["webhook_id"], e["event_id"], e["valid"]) for e in again] == [
        (failed_id, "acme-bad-0", True)
    ], again
    note = text_of(browser, "#outcome-note")
    assert note.startswith("Given up: at the last attempt ("), note
    assert "answered 503" in note, note
    browser.find_element(By.CSS_SELECTOR, "#curl-details summary").click()
    shot_whole_page(browser, "delivery")

    # 6. Redeliver; disable, publish (parked), re-enable, replay the parked ones.
    browser.find_element(By.ID, "redeliver").click()
    until(browser, lambda b: "Redelivery queued" in text_of(b, ".notice"), what="redeliver")
    browser.get(endpoint_url)
    browser.find_element(By.ID, "reason").send_keys("maintenance")
    browser.find_element(By.ID, "reason").submit()
    until(browser, lambda b: text_of(b, "#state") == "disabled", what="disabled")
    before = len(receiver.ledger("acme-ok"))
    publish(worker_settings, "acme", 2, "parked")
    time.sleep(3)  # the fan-out parks them (no request goes out)
    assert len(receiver.ledger("acme-ok")) == before
    browser.find_element(By.ID, "enable-button").click()
    until(browser, lambda b: text_of(b, "#state") == "enabled", what="enabled")
    assert text_of(browser, "#parked-count") == "2"
    browser.find_element(By.CSS_SELECTOR, "#parked button[type=submit]").click()
    until(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, "[data-finished=true]"),
        30,
        "parked replay",
    )
    assert receiver.wait_for("acme-ok", before + 2, timeout_s=30)[before:]

    # 7. Replay from the dead letters: a dry run, then the progress bar reaches the end.
    browser.get(f"{worker.base_url}/console/dlq?reason=exhausted")
    reload_until(
        browser,
        lambda: bool(browser.find_elements(By.CSS_SELECTOR, "#letters tbody tr")),
        what="the exhausted delivery in the DLQ",
    )
    shot(browser, "dead-letters")
    browser.find_element(By.ID, "dry-run").click()
    until(browser, lambda b: "would be replayed" in text_of(b, "#dry-run-count"), what="dry run")
    browser.find_element(By.ID, "start-replay").click()
    until(browser, lambda b: b.find_element(By.CSS_SELECTOR, "[data-finished=true]"), 30, "replay")
    bar = browser.find_element(By.ID, "replay-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    assert not browser.find_element(By.ID, "cancel-form").is_displayed()  # nothing to cancel
    shot(browser, "replay-progress")
    # The replay is listed with the dead letters; a finished one offers no Cancel.
    browser.get(f"{worker.base_url}/console/dlq")
    rows = browser.find_elements(By.CSS_SELECTOR, "#replays tbody tr")
    assert [text_of(r, ".replay-status") for r in rows][:1] == ["finished"]
    assert not browser.find_elements(By.CSS_SELECTOR, "#replays .cancel-replay")

    # 8. A slow replay, cancelled from its progress page; the dead letters offer to resume.
    browser.get(endpoint_url)
    browser.find_element(By.ID, "reason").send_keys("maintenance")
    browser.find_element(By.ID, "reason").submit()
    until(browser, lambda b: text_of(b, "#state") == "disabled", what="disabled again")
    publish(worker_settings, "acme", 3, "slow")
    time.sleep(3)  # the fan-out parks them
    browser.find_element(By.ID, "enable-button").click()
    until(browser, lambda b: text_of(b, "#state") == "enabled", what="enabled again")
    browser.get(f"{worker.base_url}/console/dlq?reason=subscription_disabled")
    browser.find_element(By.ID, "dry-run").click()
    until(browser, lambda b: "would be replayed" in text_of(b, "#dry-run-count"), what="dry run")
    assert int(text_of(browser, "#dry-run-count strong")) >= 3
    browser.find_element(By.ID, "rate").send_keys("0.2")  # one letter per 5 s
    browser.find_element(By.ID, "start-replay").click()
    until(browser, lambda b: "running" in text_of(b, "#replay-status"), what="slow replay")
    browser.find_element(By.ID, "cancel-replay").click()
    until(browser, lambda b: "cancelled" in text_of(b, ".notice"), what="cancelled")
    assert browser.find_elements(By.CSS_SELECTOR, "#replays .resume-replay")
    shot_whole_page(browser, "replays")

    browser.get(worker.base_url + "/console/endpoints")
    shot(browser, "endpoints")

    # 8a. The list's filters. acme-bad is disabled (by hand here: the breaker may have
    # done it already, after 5 consecutive 5xx); a new endpoint answering 503 has an
    # attempt not delivered in its last 24 hours and stays enabled: Failing.
    gone = acme.call("POST", f"/v1/subscriptions/{bad_id}/disable", {"reason": "filters"})
    assert gone.status_code == 200, gone.text
    # A dry run of the disabled endpoint's dead letters says it is disabled, links to
    # re-enabling it, and offers no confirm (the replay would be parked again).
    browser.get(f"{worker.base_url}/console/dlq?subscription_id={bad_id}")
    browser.find_element(By.ID, "dry-run").click()
    until(browser, lambda b: b.find_elements(By.ID, "disabled-warning"), what="the warning")
    assert "is disabled" in text_of(browser, "#disabled-warning")
    assert not browser.find_elements(By.ID, "confirm-form")
    shot(browser, "replay-disabled")
    browser.find_element(By.LINK_TEXT, "Re-enable it first").click()
    until(browser, lambda b: text_of(b, "#state") == "disabled", what="the endpoint page")
    browser.get(worker.base_url + "/console/endpoints")
    receiver.configure("acme-flaky", status=503)
    flaky = acme.create(
        url=receiver.url("acme-flaky"), description="Flaky partner", event_types=["*"]
    )
    reload_until(
        browser,
        lambda: text_of(browser, "#state-all") == "All (3)",
        what="the new endpoint listed",
    )
    publish(worker_settings, "acme", 1, "acme-flaky")
    reload_until(
        browser,
        lambda: text_of(browser, "#state-failing") == "Failing (1)",
        60,
        what="the 503 endpoint counted under Failing",
    )
    tabs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "nav.tabs a")]
    assert tabs == ["All (3)", "Enabled (2)", "Disabled (1)", "Failing (1)"], tabs
    assert not browser.find_elements(By.ID, "filter-summary")  # nothing filtered yet

    def listed() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")
        return [str(r.get_attribute("data-endpoint")) for r in rows]

    browser.find_element(By.ID, "state-disabled").click()
    until(browser, lambda b: "state=disabled" in b.current_url, what="the Disabled tab")
    assert listed() == [bad_id]
    assert text_of(browser, "#filter-summary") == (
        "Showing 1 of 3 endpoints (Disabled). Clear filters"
    )
    assert browser.find_element(By.ID, "state-disabled").get_attribute("aria-current") == "page"
    browser.find_element(By.ID, "state-failing").click()
    until(browser, lambda b: "state=failing" in b.current_url, what="the Failing tab")
    assert listed() == [flaky["id"]]
    shot(browser, "endpoints-filter")
    # Its page says failing by the same rule, and the word opens its failed deliveries.
    browser.find_element(By.CSS_SELECTOR, "#endpoints tbody tr a.url").click()
    until(browser, lambda b: bool(b.find_elements(By.ID, "failing")), what="the failing badge")
    # Every attempt answered 503 (its retries too, as they come): N of N.
    detail = text_of(browser, "#failing-detail")
    assert re.fullmatch(r"(\d+) of \1 attempts? in the last 24 hours not delivered", detail), detail
    shot(browser, "endpoint-failing")
    browser.find_element(By.ID, "failing").click()
    until(browser, lambda b: "recent=failed" in b.current_url, what="the failed deliveries")
    assert browser.find_element(By.ID, "recent-tab-failed").get_attribute("aria-current") == "page"
    browser.get(worker.base_url + "/console/endpoints?state=failing")
    browser.find_element(By.ID, "state-all").click()
    until(browser, lambda b: "state=" not in b.current_url, what="the All tab")
    box = browser.find_element(By.CSS_SELECTOR, "#endpoint-search input[name=q]")
    box.send_keys("  WAREHOUSE")  # acme-ok's description, in another case
    box.send_keys(Keys.ENTER)
    until(browser, lambda b: "q=" in b.current_url, what="the search")
    assert listed() == [endpoint_id]
    assert text_of(browser, "#filter-summary").startswith("Showing 1 of 3 endpoints")
    # The Disabled tab keeps the search: nothing matches both, said so with the Clear link.
    browser.find_element(By.ID, "state-disabled").click()
    until(browser, lambda b: "state=disabled" in b.current_url, what="Disabled, search kept")
    assert listed() == []
    assert text_of(browser, "#filter-summary") == (
        "No endpoints match the filter (Disabled; search “WAREHOUSE”). Clear filters"
    )
    assert browser.find_element(By.NAME, "q").get_attribute("value") == "WAREHOUSE"
    browser.find_element(By.ID, "clear-filters").click()
    until(browser, lambda b: urlsplit(b.current_url).query == "", what="filters cleared")
    assert len(listed()) == 3
    assert browser.find_element(By.NAME, "q").get_attribute("value") == ""

    # 9. Delete the failing endpoint: a confirmation page first, then the list without it.
    browser.get(f"{worker.base_url}/console/endpoints/{bad_id}")
    browser.find_element(By.ID, "delete-endpoint").click()
    until(browser, lambda b: text_of(b, "h1") == "Delete endpoint?", what="confirm page")
    assert "subscription_deleted" in text_of(browser, "#delete-consequences")
    assert acme.call("GET", f"/v1/subscriptions/{bad_id}").status_code == 200  # not yet
    shot(browser, "delete-endpoint")
    browser.find_element(By.ID, "confirm-delete").click()
    until(browser, lambda b: "deleted" in text_of(b, ".notice"), what="deleted")
    assert urlsplit(browser.current_url).path == "/console/endpoints"
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-endpoint="{bad_id}"]')
    assert browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")  # acme-ok stays
    assert acme.call("GET", f"/v1/subscriptions/{bad_id}").status_code == 404
    browser.get(worker.base_url + "/console/events")
    shot(browser, "event-catalog")
    browser.get(endpoint_url + "/verify")
    shot(browser, "how-to-verify")

    # 10. Recover failed deliveries: the flaky endpoint's delivery, given up after its
    # retries (503 each time), is counted for the window picked, then replayed.
    deadline = time.monotonic() + 90
    while not acme.call("GET", f"/v1/dlq?subscription_id={flaky['id']}").json()["data"]:
        assert time.monotonic() < deadline, "the flaky endpoint's delivery never given up"
        time.sleep(1)
    browser.get(f"{worker.base_url}/console/endpoints/{flaky['id']}")
    assert text_of(browser, "#state") == "enabled"
    window = Select(browser.find_element(By.ID, "recover-window"))
    assert window.first_selected_option.get_attribute("value") == "24h"
    window.select_by_value("1h")
    browser.execute_script("document.getElementById('recover').scrollIntoView()")
    shot(browser, "endpoint-recover")
    browser.find_element(By.ID, "recover-button").click()
    until(browser, lambda b: "would be replayed" in text_of(b, "#dry-run-count"), what="count")
    assert int(text_of(browser, "#dry-run-count strong")) > 0
    assert "in the last hour (since " in text_of(browser, "#recover-scope")
    browser.find_element(By.ID, "start-replay").click()
    until(browser, lambda b: b.find_elements(By.ID, "replay-progress"), what="replay started")
    assert text_of(browser, "h1").startswith("Replay rpl_")
    until(
        browser,
        lambda b: re.match(r"(running|finished)", text_of(b, "#replay-status")),
        what="the recovery's progress",
    )


def test_operator_live_view_changes_while_events_flow(
    browser: Any,
    worker: WorkerProcess,
    admin: Api,
    worker_settings: Settings,
    receiver: ReceiverProcess,
) -> None:
    receiver.configure("live", status=200)
    theirs = admin.create(tenant_id="livecorp", url=receiver.url("live"), event_types=["*"])
    browser.delete_all_cookies()
    browser.get(link_for(admin))
    until(browser, lambda b: b.current_url.endswith("/console/live"), what="live view")
    before = text_of(browser, "#attempts-5m")
    publish(worker_settings, "livecorp", 20, "live")
    until(
        browser,
        lambda b: text_of(b, "#attempts-5m") not in ("", before),
        30,
        "the live view to change without a reload",
    )
    time.sleep(2.5)
    shot(browser, "live")
    # The operator opens a tenant's endpoint: its recent deliveries, every link keeping
    # the tenant viewed.
    browser.get(f"{worker.base_url}/console/endpoints/{theirs['id']}?tenant=livecorp")
    reload_until(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#recent-deliveries tbody tr")) == 10,
        what="ten recent deliveries of livecorp's endpoint",
    )
    link = browser.find_element(By.CSS_SELECTOR, "#recent-deliveries tbody tr a")
    assert str(link.get_attribute("href")).endswith("?tenant=livecorp")
    browser.find_element(By.ID, "recent-tab-failed").click()
    until(browser, lambda b: "recent=failed" in b.current_url, what="the Failed tab")
    assert "tenant=livecorp" in browser.current_url
    assert text_of(browser, "#recent-empty") == "No failed deliveries."
    # The endpoint list's filters keep the tenant viewed: a tab, then a search.
    browser.get(f"{worker.base_url}/console/endpoints?tenant=livecorp")
    browser.find_element(By.ID, "state-enabled").click()
    until(browser, lambda b: "state=enabled" in b.current_url, what="the Enabled tab")
    assert parse_qs(urlsplit(browser.current_url).query)["tenant"] == ["livecorp"]
    box = browser.find_element(By.CSS_SELECTOR, "#endpoint-search input[name=q]")
    box.send_keys(theirs["id"])
    box.send_keys(Keys.ENTER)
    until(browser, lambda b: "q=" in b.current_url, what="the operator's search")
    assert parse_qs(urlsplit(browser.current_url).query) == {
        "tenant": ["livecorp"],
        "state": ["enabled"],
        "q": [theirs["id"]],
    }
    rows = browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")
    assert [r.get_attribute("data-endpoint") for r in rows] == [theirs["id"]]
    assert "livecorp" in text_of(browser, "h1")
    browser.find_element(By.ID, "clear-filters").click()
    until(browser, lambda b: "q=" not in b.current_url, what="the operator's filters cleared")
    assert parse_qs(urlsplit(browser.current_url).query) == {"tenant": ["livecorp"]}
    # An endpoint that answers 503 (no retries: given up at once) makes livecorp failing:
    # the Tenants page counts it as livecorp's Failing tab does, and links to that tab.
    receiver.configure("live-down", status=503)
    down = admin.create(
        tenant_id="livecorp",
        url=receiver.url("live-down"),
        event_types=["*"],
        description="down",
        retry_schedule="none",
    )
    publish(worker_settings, "livecorp", 1, "live-down")
    receiver.wait_for("live-down", 1)
    row = '#tenants tr[data-tenant="livecorp"]'
    browser.get(worker.base_url + "/console/tenants")
    reload_until(
        browser,
        lambda: text_of(browser, f"{row} a.failing-count") == "1",
        what="livecorp's failing count on the Tenants page",
    )
    assert text_of(browser, f"{row} a.endpoints-count") == "2"
    assert "in the last 24 hours" in text_of(browser, "#failing-means")
    shot(browser, "tenants")
    browser.find_element(By.CSS_SELECTOR, f"{row} a.failing-count").click()
    until(browser, lambda b: "state=failing" in b.current_url, what="livecorp's Failing tab")
    assert parse_qs(urlsplit(browser.current_url).query) == {
        "tenant": ["livecorp"],
        "state": ["failing"],
    }
    assert text_of(browser, "#state-failing") == "Failing (1)"
    rows = browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")
    assert [r.get_attribute("data-endpoint") for r in rows] == [down["id"]]
    browser.back()
    browser.find_element(By.CSS_SELECTOR, f"{row} a.endpoints-count").click()
    until(browser, lambda b: "state=" not in b.current_url, what="livecorp's endpoints")
    assert parse_qs(urlsplit(browser.current_url).query) == {"tenant": ["livecorp"]}
    assert text_of(browser, "#state-all") == "All (2)"
    assert text_of(browser, "#state-failing") == "Failing (1)"
    # The live view's Failing endpoints table names it by URL, linked to its page (the
    # operator's tenant kept), and its tenant to the tenant's endpoints.
    failing = f'section[aria-labelledby="failing-title"] tr[data-endpoint="{down["id"]}"]'
    browser.get(worker.base_url + "/console/live")
    until(
        browser,
        lambda b: bool(b.find_elements(By.CSS_SELECTOR, f"{failing} a.endpoint-link")),
        30,
        "livecorp's endpoint in the live view's failing table",
    )
    assert text_of(browser, f"{failing} a.endpoint-link") == receiver.url("live-down")
    assert text_of(browser, f"{failing} a.tenant-link") == "livecorp"
    shot(browser, "live-failing")
    browser.find_element(By.CSS_SELECTOR, f"{failing} a.endpoint-link").click()
    until(
        browser,
        lambda b: urlsplit(b.current_url).path == f"/console/endpoints/{down['id']}",
        what="the failing endpoint's page from the live view",
    )
    assert parse_qs(urlsplit(browser.current_url).query) == {"tenant": ["livecorp"]}
    assert text_of(browser, "h1.url") == receiver.url("live-down")


def test_another_tenant_cannot_see_or_change_acme(
    browser: Any, worker: WorkerProcess, admin: Api, acme: Api
) -> None:
    theirs = acme.create(url="http://127.0.0.1:9/x", event_types=["*"])
    browser.delete_all_cookies()
    browser.get(link_for(tenant_api(admin, "bravo")))
    until(browser, lambda b: "Tenant bravo" in text_of(b, ".who"), what="bravo's session")
    for path in (
        f"/console/endpoints/{theirs['id']}",
        "/console/endpoints?tenant=acme",
        "/console/dlq?tenant=acme",
        "/console/live",
    ):
        browser.get(worker.base_url + path)
        assert text_of(browser, "h1") in ("Not found", "Cannot do that"), path
    status = browser.execute_script(
        "const r = await fetch(arguments[0], {method: 'POST', headers: {'X-CSRF-Token':"
        " document.querySelector('meta[name=csrf-token]').content}}); return r.status;",
        f"/console/endpoints/{theirs['id']}/disable",
    )
    assert status == 404
    no_token = browser.execute_script(
        "const r = await fetch('/console/endpoints', {method: 'POST', body: new URLSearchParams("
        "{url: 'https://example.com/x', event_types_other: '*'})}); return r.status;"
    )
    assert no_token == 403
    assert acme.call("GET", f"/v1/subscriptions/{theirs['id']}").json()["state"] == "enabled"


def test_a_reused_link_is_refused_and_csp_is_on_every_page(
    browser: Any, worker: WorkerProcess, acme: Api
) -> None:
    link = link_for(acme)
    browser.delete_all_cookies()
    browser.get(link)
    until(browser, lambda b: b.current_url.endswith("/console/endpoints"), what="first use")
    browser.delete_all_cookies()
    browser.get(link)
    assert "already used" in text_of(browser, "#refused-reason")
    shot(browser, "link-refused")
    jar = httpx.Client(base_url=worker.base_url, follow_redirects=False)
    assert jar.get(urlsplit(link_for(acme)).path).status_code == 200
    for path in (
        "/console/endpoints",
        "/console/deliveries",
        "/console/dlq",
        "/console/events",
        "/console/endpoints/new",
        "/console/signin",
        "/console/static/console.js",
        "/console/nope",
    ):
        resp = jar.get(path)
        csp = resp.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp, path
        assert "default-src 'self'" in csp, path
        assert "frame-ancestors http://localhost:" in csp, path


def test_the_embedded_console_works_in_another_sites_frame(
    browser: Any, worker: WorkerProcess, acme: Api, host: str
) -> None:
    from urllib.parse import quote

    browser.delete_all_cookies()
    # A top-level (SameSite=Strict) link does not survive inside another site's frame...
    browser.get(f"{host}/?src={quote(link_for(acme), safe='')}")
    browser.switch_to.frame("console")
    until(browser, lambda b: "not signed in" in b.page_source, what="strict cookie refused")
    browser.switch_to.default_content()
    # ...an embedded link's partitioned cookie does, with third-party cookies blocked.
    browser.get(f"{host}/?src={quote(link_for(acme, embed=True), safe='')}")
    browser.switch_to.frame("console")
    until(browser, lambda b: "Tenant acme" in text_of(b, ".who"), what="embedded session")
    browser.find_element(By.LINK_TEXT, "Delivery log").click()
    until(browser, lambda b: text_of(b, "h1").startswith("Delivery log"), what="navigate in frame")
    browser.switch_to.default_content()
    shot(browser, "embedded")
    # Forms post from inside the frame too: edit an endpoint's description there.
    mine = acme.create(url="http://127.0.0.1:9/framed", event_types=["*"])
    browser.switch_to.frame("console")
    # Navigated inside the frame (the driver's get would load the page top-level).
    browser.execute_script("location.assign(arguments[0])", f"/console/endpoints/{mine['id']}/edit")
    until(browser, lambda b: text_of(b, "h1").startswith("Edit endpoint"), what="edit in frame")
    browser.find_element(By.ID, "description").send_keys("edited in a frame")
    browser.find_element(By.CSS_SELECTOR, "#edit-form button[type=submit]").click()
    until(browser, lambda b: "Saved: description" in text_of(b, ".notice"), what="framed save")
    assert acme.call("GET", f"/v1/subscriptions/{mine['id']}").json()["description"] == (
        "edited in a frame"
    )
    # The recent deliveries' tabs and log link work inside the frame too.
    browser.find_element(By.ID, "recent-tab-failed").click()
    until(browser, lambda b: "No failed" in text_of(b, "#recent-empty"), what="framed tab")
    assert "Tenant acme" in text_of(browser, ".who")
    browser.find_element(By.ID, "recent-log").click()
    until(browser, lambda b: text_of(b, "h1").startswith("Delivery log"), what="framed log")
    status = Select(browser.find_element(By.NAME, "status")).first_selected_option
    assert status.get_attribute("value") == "undelivered"
    # The chart's tabs too, keeping the recent deliveries' choice.
    browser.execute_script(
        "location.assign(arguments[0])", f"/console/endpoints/{mine['id']}?recent=failed"
    )
    until(browser, lambda b: b.find_elements(By.ID, "chart-tab-7d"), what="framed endpoint")
    browser.find_element(By.ID, "chart-tab-7d").click()
    until(browser, lambda b: "7 days" in text_of(b, "#chart-title"), what="framed 7 days")
    assert "Tenant acme" in text_of(browser, ".who")
    assert browser.find_element(By.ID, "recent-tab-failed").get_attribute("aria-current") == "page"
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg.chart.history, #chart .chart-empty")
    # The endpoint list's search and tabs work inside the frame too.
    browser.find_element(By.LINK_TEXT, "Endpoints").click()
    until(browser, lambda b: b.find_elements(By.ID, "endpoint-search"), what="framed list")
    box = browser.find_element(By.CSS_SELECTOR, "#endpoint-search input[name=q]")
    box.send_keys("/framed")
    box.send_keys(Keys.ENTER)
    # (current_url is the host page's: the frame's own page is told by its content.)
    until(browser, lambda b: "/framed" in text_of(b, "#filter-summary"), what="framed search")
    rows = browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")
    assert [r.get_attribute("data-endpoint") for r in rows] == [mine["id"]]
    browser.find_element(By.ID, "state-disabled").click()
    until(browser, lambda b: "No endpoints match" in text_of(b, "#filter-summary"), what="tab")
    assert "Tenant acme" in text_of(browser, ".who")
    browser.find_element(By.ID, "clear-filters").click()
    until(browser, lambda b: not b.find_elements(By.ID, "filter-summary"), what="framed clear")
    assert "Tenant acme" in text_of(browser, ".who")
    browser.switch_to.default_content()


def test_a_link_clicked_on_another_site_opens_the_console(
    browser: Any, worker: WorkerProcess, acme: Api, host: str
) -> None:
    from urllib.parse import quote

    browser.delete_all_cookies()
    browser.get(f"{host}/?link={quote(link_for(acme), safe='')}")
    browser.find_element(By.ID, "go").click()
    until(
        browser,
        lambda b: "Tenant acme" in text_of(b, ".who"),
        what="signed in after a cross-site click",
    )


def test_the_add_form_fills_prospektr_defaults(
    browser: Any, worker: WorkerProcess, acme: Api
) -> None:
    browser.delete_all_cookies()
    browser.get(link_for(acme))
    until(browser, lambda b: b.current_url.endswith("/console/endpoints"), what="landing")
    browser.get(worker.base_url + "/console/endpoints/new")
    Select(browser.find_element(By.ID, "signing")).select_by_value("prospektr")
    assert (
        Select(browser.find_element(By.ID, "body_format")).first_selected_option.get_attribute(
            "value"
        )
        == "keyed"
    )
    assert (
        Select(browser.find_element(By.ID, "retry_schedule")).first_selected_option.get_attribute(
            "value"
        )
        == "none"
    )


def test_the_add_form_takes_a_chat_destination_from_the_keyboard(
    browser: Any, worker: WorkerProcess, admin: Api, receiver: ReceiverProcess
) -> None:
    """Every new control is labelled and works from the keyboard: a Telegram-shaped
    endpoint (to the receiver on 127.0.0.1, so its format and signing are chosen, not
    detected from the host) is added without the mouse."""
    receiver.configure("chat", status=200)
    browser.delete_all_cookies()
    browser.get(link_for(tenant_api(admin, "chatco")))
    until(browser, lambda b: b.current_url.endswith("/console/endpoints"), what="landing")
    browser.get(worker.base_url + "/console/endpoints/new")
    form = browser.find_element(By.ID, "endpoint-form")
    for control in form.find_elements(
        By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"
    ):
        named = control.get_attribute("id")
        if control.get_attribute("type") == "checkbox":
            assert control.find_element(By.XPATH, "ancestor::label"), control.get_attribute("value")
            continue
        labels = browser.find_elements(By.CSS_SELECTOR, f'label[for="{named}"]')
        assert labels, f"#{named} has no label"
        assert labels[0].text.strip(), f"#{named} has an empty label"
    for select in ("signing", "body_format"):
        chosen = Select(browser.find_element(By.ID, select)).first_selected_option
        assert chosen.text == "automatic", select

    # As a user with a Telegram bot fills it in (the screenshot); never submitted: tests
    # reach only 127.0.0.1, and the API would look the host up.
    url = browser.find_element(By.ID, "url")
    url.send_keys("https://api.telegram.org/bot123456789:AAH-example-token-0123456/sendMessage")
    browser.find_element(By.ID, "description").send_keys("alerts to the team chat")
    browser.find_element(By.CSS_SELECTOR, 'input[value="alert.fired"]').send_keys(Keys.SPACE)
    chat = browser.find_element(By.ID, "chat_id")
    chat.send_keys("-1001234567890")
    shot_whole_page(browser, "add-endpoint")
    # What automatic would choose for that host, chosen by hand for the receiver's URL.
    url.clear()
    url.send_keys(receiver.url("chat"))
    browser.find_element(By.ID, "signing").send_keys("none")  # type-ahead, as a person would
    browser.find_element(By.ID, "body_format").send_keys("telegram")
    for select, value in (("signing", "none"), ("body_format", "telegram")):
        chosen = Select(browser.find_element(By.ID, select)).first_selected_option
        assert chosen.get_attribute("value") == value, select
    chat.send_keys(Keys.ENTER)  # submits the form

    until(browser, lambda b: "/console/endpoints/sub_" in b.current_url, what="the new endpoint")
    facts = text_of(browser, "dl.facts")
    assert "none: requests are not signed" in facts
    assert "telegram" in facts
    assert "-1001234567890" in facts
    assert not browser.find_elements(By.ID, "secret-dialog")  # unsigned: no secret at all
    assert not browser.find_elements(By.ID, "rotate-title")
