"""What a first-time user tripped over in `streams subscriptions` (issue 17, items 16, 18, 20).

Against the fake API of ``test_cli_api`` (a real HTTP server on 127.0.0.1 that
records every request and answers what each test programs).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from streams.cli.client import ApiClient, ApiError, ApiUnreachableError
from streams.errors import StreamsError
from tests.unit import test_cli_api as fake
from tests.unit.test_cli_api import SIGNING_SECRET, TOKEN, FakeApi, Seen, api_error, run, view

# The fake API's fixtures, shared with test_cli_api.
server = fake.server
api = fake.api
state_dir = fake.state_dir

CREATE = ("subscriptions", "create", "--tenant", "acme", "--url", "https://h.example/in")


# -- item 16: the CLI sends an Idempotency-Key and reuses it on its own retries -------------


def test_create_sends_a_new_idempotency_key_each_run(api: FakeApi, state_dir: Path) -> None:
    api.answer("POST", "/v1/subscriptions", 201, {**view(), "signing_secret": SIGNING_SECRET})
    for _ in range(2):
        result = run(api.url, *CREATE, "--event-type", "prospect.added", state_dir=state_dir)
        assert result.exit_code == 0, result.output
    keys = [seen.headers.get("Idempotency-Key") for seen in api.seen]
    assert keys[0] != keys[1]
    assert all(uuid.UUID(str(k)) for k in keys)


def test_create_passes_the_key_given(api: FakeApi, state_dir: Path) -> None:
    api.answer("POST", "/v1/subscriptions", 201, {**view(), "signing_secret": SIGNING_SECRET})
    result = run(
        api.url,
        *CREATE,
        "--event-type",
        "prospect.added",
        "--idempotency-key",
        "my-key-1",
        state_dir=state_dir,
    )
    assert result.exit_code == 0, result.output
    assert api.seen[0].headers.get("Idempotency-Key") == "my-key-1"
    assert SIGNING_SECRET in result.output


def test_a_create_that_timed_out_is_sent_again_with_the_same_key(api: FakeApi) -> None:
    calls: list[str] = []

    def slow_then_fast(seen: Seen) -> tuple[int, object]:
        calls.append(seen.headers["Idempotency-Key"])
        if len(calls) == 1:
            time.sleep(0.6)  # the answer comes after the client gave up
        return 201, {**view(), "signing_secret": SIGNING_SECRET}

    api.answers[("POST", "/v1/subscriptions")] = slow_then_fast
    with ApiClient(api.url, TOKEN, timeout=0.3) as client:
        created = client.create_subscription({"url": "x"}, retry_wait_s=0.5)
    assert created["signing_secret"] == SIGNING_SECRET
    assert len(calls) == 2
    assert calls[0] == calls[1]


def test_a_503_is_retried_with_the_same_key_then_reported_with_it(api: FakeApi) -> None:
    api.answer("POST", "/v1/subscriptions", 503, api_error("unavailable", "Kafka did not answer"))
    with ApiClient(api.url, TOKEN) as client, pytest.raises(ApiError) as caught:
        client.create_subscription({"url": "x"}, idempotency_key="k-9", retry_wait_s=0.01)
    assert [s.headers["Idempotency-Key"] for s in api.seen] == ["k-9"] * 3
    assert "--idempotency-key k-9" in str(caught.value)


@pytest.mark.parametrize("status", [401, 404, 409, 422])
def test_an_answer_that_settles_it_is_not_retried(api: FakeApi, status: int) -> None:
    api.answer("POST", "/v1/subscriptions", status, api_error("x", "no"))
    with ApiClient(api.url, TOKEN) as client, pytest.raises(StreamsError):
        client.create_subscription({"url": "x"}, retry_wait_s=0.01)
    assert len(api.seen) == 1


def test_a_refused_connection_is_not_retried() -> None:
    url = f"http://127.0.0.1:{fake.free_port()}"
    started = time.monotonic()
    with ApiClient(url, TOKEN) as client, pytest.raises(ApiUnreachableError) as caught:
        client.create_subscription({"url": "x"}, retry_wait_s=5.0)
    assert time.monotonic() - started < 4.0
    assert "--idempotency-key" not in str(caught.value)
