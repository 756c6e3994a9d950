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


# -- item 18: `enable` says what was parked and how to send it ------------------------------

PARKED = {
    "count": 3,
    "replay": 'POST /v1/dlq/replay with {"subscription_id": "sub_1", ...}',
}


def test_enable_prints_the_parked_count_and_the_replay_command(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer("POST", "/v1/subscriptions/sub_1/enable", 200, {**view(), "parked": PARKED})
    result = run(api.url, "subscriptions", "enable", "sub_1", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "enabled sub_1",
        "3 deliveries were parked in the DLQ while it was disabled",
        "send them: streams dlq replay --subscription sub_1 --reason subscription_disabled",
    ]
    assert api.seen[0].body == {}


def test_enable_replay_parked_asks_for_it_and_prints_what_was_replayed(
    api: FakeApi, state_dir: Path
) -> None:
    replayed = {"count": 1, "replayed": 1, "replay_id": "rpl_1"}
    api.answer("POST", "/v1/subscriptions/sub_1/enable", 200, {**view(), "parked": replayed})
    result = run(
        api.url, "subscriptions", "enable", "sub_1", "--replay-parked", state_dir=state_dir
    )
    assert result.exit_code == 0, result.output
    assert api.seen[0].body == {"replay_parked": True}
    assert "1 delivery was parked in the DLQ while it was disabled" in result.output
    assert "replayed 1 (replay rpl_1)" in result.output


def test_enable_of_an_enabled_subscription_prints_no_parked_line(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer("POST", "/v1/subscriptions/sub_1/enable", 200, view())
    result = run(api.url, "subscriptions", "enable", "sub_1", state_dir=state_dir)
    assert result.output == "enabled sub_1\n"


# -- item 20: the API's warnings reach the user ----------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_create_prints_the_apis_warnings_on_stderr(
    api: FakeApi, state_dir: Path, as_json: bool
) -> None:
    warning = "`prospect.creatd` matches no known event type; did you mean prospect.added?"
    answer = {**view(), "signing_secret": SIGNING_SECRET, "warnings": [warning]}
    api.answer("POST", "/v1/subscriptions", 201, answer)
    args = [*CREATE, "--event-type", "prospect.creatd", *(["--json"] if as_json else [])]
    result = run(api.url, *args, state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert f"warning: {warning}" in result.stderr
    assert "warning:" not in result.stdout  # --json stays parseable


def test_update_prints_the_apis_warnings_on_stderr(api: FakeApi, state_dir: Path) -> None:
    api.answer("PATCH", "/v1/subscriptions/sub_1", 200, {**view(), "warnings": ["`x.y` w"]})
    result = run(
        api.url, "subscriptions", "update", "sub_1", "--event-type", "x.y", state_dir=state_dir
    )
    assert "warning: `x.y` w" in result.stderr
