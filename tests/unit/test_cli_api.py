"""`streams subscriptions` / `streams tokens` and their client, against a fake API.

The fake is a tiny aiohttp server on 127.0.0.1 in a background thread: it
records every request and answers what each test programs, in the API's error
format. The CLI runs in-process under click's CliRunner with STREAMS_API_URL
pointed at it. (The real worker's API is tested elsewhere.)
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from streams.cli import cli
from streams.cli.client import ApiClient, ApiError, ApiUnreachableError, resolve_token
from streams.cli.common import ONCE
from streams.config import Secret, Settings
from streams.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)

TOKEN = "adm_TEST-token-3f9a1c77e0b24d6d"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TENANT_TOKEN = "stk_tok_0123456789abcdef.s3cr3t-tenant-token-value"
STARTUP_TIMEOUT_S = 10.0


def view(sub_id: str = "sub_1", **changes: Any) -> dict[str, Any]:
    """A subscription as the API shows it (model.public_view's shape)."""
    base: dict[str, Any] = {
        "id": sub_id,
        "tenant_id": "acme",
        "url": "https://hooks.example.com/in",
        "description": "",
        "event_types": ["prospect.added"],
        "signing": "standard",
        "secret": {"set": True, "previous_valid_until": None},
        "headers": {},
        "retry_schedule": "default",
        "ordering": "unordered",
        "rate_limit": None,
        "max_in_flight": 16,
        "timeout": None,
        "body_format": "envelope",
        "state": "enabled",
        "disabled_reason": None,
        "disabled_at": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "version": 1,
    }
    base.update(changes)
    return base


def api_error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


# -- the fake API ------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Answer = tuple[int, Any]


@dataclass
class FakeApi:
    """Records every request; answers ``answers[(method, path)]`` (a value or a function)."""

    url: str = ""
    token: str = TOKEN
    seen: list[Seen] = field(default_factory=list)
    answers: dict[tuple[str, str], Answer | Callable[[Seen], Answer]] = field(default_factory=dict)
    delay_s: float = 0.0

    def answer(self, method: str, path: str, status: int, body: Any = None) -> None:
        self.answers[(method, path)] = (status, body)

    def reset(self) -> None:
        self.seen.clear()
        self.answers.clear()
        self.token = TOKEN
        self.delay_s = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        seen = Seen(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=orjson.loads(raw) if raw else None,
        )
        self.seen.append(seen)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.path != "/healthz" and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return web.json_response(
                api_error("unauthorized", "unknown or revoked token"), status=401
            )
        found = self.answers.get((request.method, request.path))
        if found is None:
            return web.json_response(api_error("not_found", "no such route"), status=404)
        status, body = found(seen) if callable(found) else found
        if status == 204:
            return web.Response(status=204)
        if isinstance(body, str):
            return web.Response(text=body, status=status, content_type="text/html")
        return web.json_response(body, status=status)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeApi]:
    fake = FakeApi()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-api", daemon=True)
    thread.start()
    assert started.wait(STARTUP_TIMEOUT_S), "the fake API did not start"
    yield fake
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STARTUP_TIMEOUT_S)


@pytest.fixture
def api(server: FakeApi) -> Iterator[FakeApi]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run(
    url: str, *args: str, state_dir: Path, token: str | None = TOKEN, admin: str | None = None
) -> Result:
    env: dict[str, str | None] = {
        "STREAMS_API_URL": url,
        "STREAMS_API_TOKEN": token,
        "STREAMS_ADMIN_TOKEN": admin,
        "STREAMS_STATE_DIR": str(state_dir),
        "STREAMS_ENV": None,
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def only(api: FakeApi) -> Seen:
    assert len(api.seen) == 1, api.seen
    return api.seen[0]


# -- request shapes ----------------------------------------------------------------------


def test_create_sends_every_option_as_its_api_field(api: FakeApi, state_dir: Path) -> None:
    api.answer("POST", "/v1/subscriptions", 201, {**view(), "signing_secret": SIGNING_SECRET})
    result = run(
        api.url,
        "subscriptions", "create",
        "--url", "https://hooks.example.com/in",
        "--event-type", "prospect.added",
        "--event-type", "prospect.*",
        "--tenant", "acme",
        "--description", "CRM sync",
        "--signing", "github",
        "--secret", "my-own-secret-of-enough-length",
        "--header", "X-Team: growth",
        "--header", "Authorization:Bearer downstream",
        "--retry-schedule", "5s,5m",
        "--ordering", "ordered",
        "--rate-limit", "2.5",
        "--max-in-flight", "4",
        "--timeout", "10s",
        "--body-format", "keyed",
        "--disabled",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    seen = only(api)
    assert (seen.method, seen.path) == ("POST", "/v1/subscriptions")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == {
        "tenant_id": "acme",
        "url": "https://hooks.example.com/in",
        "event_types": ["prospect.added", "prospect.*"],
        "description": "CRM sync",
        "signing": "github",
        "secret": "my-own-secret-of-enough-length",
        "headers": {"X-Team": "growth", "Authorization": "Bearer downstream"},
        "retry_schedule": "5s,5m",
        "ordering": "ordered",
        "rate_limit": 2.5,
        "max_in_flight": 4,
        "timeout": "10s",
        "body_format": "keyed",
        "enabled": False,
    }


def test_create_with_only_the_required_options_sends_only_url_and_event_types(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer("POST", "/v1/subscriptions", 201, {**view(), "signing_secret": SIGNING_SECRET})
    result = run(
        api.url,
        "subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {"url": "https://h.example/x", "event_types": ["*"]}


def test_no_secret_sends_an_explicit_null_and_says_deliveries_are_unsigned(
    api: FakeApi, state_dir: Path
) -> None:
    unsigned = view(signing="prospektr", secret={"set": False, "previous_valid_until": None})
    api.answer("POST", "/v1/subscriptions", 201, {**unsigned, "signing_secret": None})
    result = run(
        api.url,
        "subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*",
        "--signing", "prospektr", "--no-secret",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = only(api).body
    assert "secret" in body
    assert body["secret"] is None
    assert "unsigned" in result.stdout


@pytest.mark.parametrize(
    "extra",
    [
        ["--secret", "abc", "--no-secret"],
        ["--header", "no colon here"],
        ["--header", "X-A: 1", "--header", "x-a: 2"],
        ["--rate-limit", "fast"],
    ],
)
def test_contradictory_or_malformed_options_are_usage_errors_that_send_nothing(
    api: FakeApi, state_dir: Path, extra: list[str]
) -> None:
    args = ["subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*"]
    result = run(api.url, *args, *extra, state_dir=state_dir)
    assert result.exit_code == 2
    assert api.seen == []


def test_update_sends_only_the_options_given_as_a_patch(api: FakeApi, state_dir: Path) -> None:
    api.answer("PATCH", "/v1/subscriptions/sub_1", 200, view(rate_limit=None, timeout=2.5))
    result = run(
        api.url,
        "subscriptions", "update", "sub_1",
        "--event-type", "invoice.paid",
        "--rate-limit", "none",
        "--timeout", "2.5",
        "--retry-schedule", "none",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    seen = only(api)
    assert (seen.method, seen.path) == ("PATCH", "/v1/subscriptions/sub_1")
    assert seen.body == {
        "event_types": ["invoice.paid"],
        "rate_limit": None,
        "timeout": 2.5,
        "retry_schedule": "none",
    }
    assert "updated sub_1" in result.stdout


def test_update_can_clear_every_custom_header(api: FakeApi, state_dir: Path) -> None:
    api.answer("PATCH", "/v1/subscriptions/sub_1", 200, view())
    result = run(
        api.url, "subscriptions", "update", "sub_1", "--clear-headers", state_dir=state_dir
    )
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {"headers": {}}


def test_a_public_header_is_sent_in_the_list_form_marked_not_secret(
    api: FakeApi, state_dir: Path
) -> None:
    shown = view(
        headers={"X-Team": "growth", "X-Api-Key": "********"}, secret_headers=["X-Api-Key"]
    )
    api.answer("PATCH", "/v1/subscriptions/sub_1", 200, shown)
    result = run(
        api.url,
        "subscriptions", "update", "sub_1",
        "--header", "X-Api-Key: k-123", "--public-header", "X-Team: growth",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {
        "headers": [
            {"name": "X-Api-Key", "value": "k-123", "secret": True},
            {"name": "X-Team", "value": "growth", "secret": False},
        ]
    }
    # Shown as the API masked it, each secret one saying so.
    assert "headers:        X-Team: growth, X-Api-Key: ******** (secret)" in result.stdout
    assert "k-123" not in result.stdout


def test_a_header_given_as_secret_and_public_is_a_usage_error(
    api: FakeApi, state_dir: Path
) -> None:
    result = run(
        api.url,
        "subscriptions", "update", "sub_1",
        "--header", "X-A: 1", "--public-header", "x-a: 1",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 2
    assert api.seen == []


def test_update_with_no_option_is_a_usage_error_that_sends_nothing(
    api: FakeApi, state_dir: Path
) -> None:
    result = run(api.url, "subscriptions", "update", "sub_1", state_dir=state_dir)
    assert result.exit_code == 2
    assert "nothing to update" in result.stderr
    assert api.seen == []


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["enable", "sub_1"], "POST", "/v1/subscriptions/sub_1/enable", {}),
        (["disable", "sub_1"], "POST", "/v1/subscriptions/sub_1/disable", {}),
        (
            ["disable", "sub_1", "--reason", "receiver down"],
            "POST",
            "/v1/subscriptions/sub_1/disable",
            {"reason": "receiver down"},
        ),
        (["rotate-secret", "sub_1"], "POST", "/v1/subscriptions/sub_1/rotate-secret", {}),
        (
            ["rotate-secret", "sub_1", "--grace", "0s", "--secret", "whsec_new"],
            "POST",
            "/v1/subscriptions/sub_1/rotate-secret",
            {"grace": "0s", "secret": "whsec_new"},
        ),
        (["test", "sub_1"], "POST", "/v1/subscriptions/sub_1/test", {}),
        (["show", "sub_1"], "GET", "/v1/subscriptions/sub_1", None),
        (["delete", "sub_1"], "DELETE", "/v1/subscriptions/sub_1", None),
    ],
)
def test_each_subscription_command_calls_its_route_with_its_fields(
    api: FakeApi,
    state_dir: Path,
    args: list[str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    answers: dict[str, Answer] = {
        "enable": (200, view()),
        "disable": (200, view(state="disabled", disabled_reason="receiver down")),
        "rotate-secret": (200, {**view(), "signing_secret": SIGNING_SECRET}),
        "test": (
            202,
            {"delivery_id": "d1", "event_id": "e1", "event_type": "x", "status": "queued"},
        ),
        "show": (200, view()),
        "delete": (204, None),
    }
    api.answer(method, path, *answers[args[0]])
    result = run(api.url, "subscriptions", *args, state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    seen = only(api)
    assert (seen.method, seen.path, seen.body) == (method, path, body)
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_id_is_sent_as_one_path_segment_so_it_cannot_reach_another_route(
    api: FakeApi, state_dir: Path
) -> None:
    result = run(api.url, "subscriptions", "show", "../../v1/tokens", state_dir=state_dir)
    assert result.exit_code == 1
    assert only(api).raw_path == "/v1/subscriptions/..%2F..%2Fv1%2Ftokens"
    api.reset()
    run(api.url, "tokens", "revoke", "..", state_dir=state_dir)
    assert only(api).raw_path == "/v1/tokens/%2E%2E"


def test_list_passes_tenant_and_state_and_reads_every_page(api: FakeApi, state_dir: Path) -> None:
    def pages(seen: Seen) -> Answer:
        offset = int(seen.query["offset"])
        if offset == 0:
            return 200, {"data": [view("sub_1")], "total": 2, "next_offset": 1}
        return 200, {"data": [view("sub_2")], "total": 2, "next_offset": None}

    api.answers[("GET", "/v1/subscriptions")] = pages
    result = run(
        api.url,
        "subscriptions", "list", "--tenant", "acme", "--state", "enabled", "--json",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [s.query for s in api.seen] == [
        {"tenant_id": "acme", "state": "enabled", "limit": "1000", "offset": "0"},
        {"tenant_id": "acme", "state": "enabled", "limit": "1000", "offset": "1"},
    ]
    listing = orjson.loads(result.stdout)
    assert [s["id"] for s in listing["data"]] == ["sub_1", "sub_2"]
    assert listing["total"] == 2


def test_list_prints_an_aligned_table_where_disabled_rows_show_their_reason(
    api: FakeApi, state_dir: Path
) -> None:
    subs = [
        view("sub_1", event_types=["prospect.added", "prospect.updated"]),
        view(
            "sub_22",
            tenant_id="globex",
            state="disabled",
            disabled_reason="too many failures",
            url="https://globex.example/hook",
        ),
    ]
    api.answer("GET", "/v1/subscriptions", 200, {"data": subs, "total": 2, "next_offset": None})
    result = run(api.url, "subscriptions", "list", state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "TENANT", "STATE", "EVENT", "TYPES", "URL"]
    assert first.split() == [
        "sub_1",
        "acme",
        "enabled",
        "prospect.added,prospect.updated",
        "https://hooks.example.com/in",
    ]
    assert "disabled (too many failures)" in second
    for column in ("TENANT", "STATE", "EVENT TYPES", "URL"):
        start = header.index(column)
        assert first[start - 2 : start] == "  "
        assert second[start - 2 : start] == "  "
        assert first[start] != " "
        assert second[start] != " "


def test_an_empty_list_says_so(api: FakeApi, state_dir: Path) -> None:
    api.answer("GET", "/v1/subscriptions", 200, {"data": [], "total": 0, "next_offset": None})
    result = run(api.url, "subscriptions", "list", state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no subscriptions\n"


# -- output ----------------------------------------------------------------------------


def test_create_prints_the_signing_secret_once_saying_it_will_not_be_shown_again(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer("POST", "/v1/subscriptions", 201, {**view(), "signing_secret": SIGNING_SECRET})
    result = run(
        api.url,
        "subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count(SIGNING_SECRET) == 1
    assert f"signing secret: {SIGNING_SECRET}" in result.stdout
    assert "will not be shown again" in result.stdout
    assert ONCE in result.stdout
    assert "created sub_1" in result.stdout


def test_rotate_secret_prints_the_new_secret_once_and_the_grace_of_the_old_one(
    api: FakeApi, state_dir: Path
) -> None:
    rotated = view(secret={"set": True, "previous_valid_until": "2026-01-02T00:00:00Z"})
    api.answer(
        "POST",
        "/v1/subscriptions/sub_1/rotate-secret",
        200,
        {**rotated, "signing_secret": SIGNING_SECRET},
    )
    result = run(api.url, "subscriptions", "rotate-secret", "sub_1", state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count(SIGNING_SECRET) == 1
    assert "will not be shown again" in result.stdout
    assert "valid until 2026-01-02T00:00:00Z" in result.stdout


def test_tokens_create_sends_tenant_and_description_and_prints_the_token_once(
    api: FakeApi, state_dir: Path
) -> None:
    created = {"id": "tok_1", "tenant_id": "acme", "description": "ci", "created_at": 1.7e9}
    api.answer("POST", "/v1/tokens", 201, {**created, "token": TENANT_TOKEN})
    result = run(
        api.url, "tokens", "create", "--tenant", "acme", "--description", "ci", state_dir=state_dir
    )
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {"tenant_id": "acme", "description": "ci"}
    assert result.stdout.count(TENANT_TOKEN) == 1
    assert "will not be shown again" in result.stdout
    assert "created token tok_1 for tenant acme" in result.stdout


def test_tokens_list_and_revoke_call_their_routes(api: FakeApi, state_dir: Path) -> None:
    record = {"id": "tok_1", "tenant_id": "acme", "description": "ci", "created_at": 0}
    api.answer("GET", "/v1/tokens", 200, {"data": [record]})
    api.answer("DELETE", "/v1/tokens/tok_1", 204)
    listed = run(api.url, "tokens", "list", "--tenant", "acme", state_dir=state_dir)
    revoked = run(api.url, "tokens", "revoke", "tok_1", state_dir=state_dir)
    assert listed.exit_code == 0, listed.stderr
    assert revoked.exit_code == 0, revoked.stderr
    assert [(s.method, s.path, s.query) for s in api.seen] == [
        ("GET", "/v1/tokens", {"tenant_id": "acme"}),
        ("DELETE", "/v1/tokens/tok_1", {}),
    ]
    assert listed.stdout.splitlines()[1].split() == ["tok_1", "acme", "1970-01-01T00:00:00Z", "ci"]
    assert revoked.stdout == "revoked tok_1\n"


@pytest.mark.parametrize(
    ("args", "method", "path", "status", "answer"),
    [
        (["subscriptions", "show", "sub_1"], "GET", "/v1/subscriptions/sub_1", 200, view()),
        (
            ["subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*"],
            "POST",
            "/v1/subscriptions",
            201,
            {**view(), "signing_secret": SIGNING_SECRET},
        ),
        (
            ["subscriptions", "test", "sub_1"],
            "POST",
            "/v1/subscriptions/sub_1/test",
            202,
            {"delivery_id": "d1", "event_id": "e1", "event_type": "t", "status": "queued"},
        ),
        (
            ["tokens", "list"],
            "GET",
            "/v1/tokens",
            200,
            {"data": [{"id": "tok_1", "tenant_id": "acme", "description": "", "created_at": 1}]},
        ),
    ],
)
def test_json_prints_exactly_the_api_answer(
    api: FakeApi,
    state_dir: Path,
    args: list[str],
    method: str,
    path: str,
    status: int,
    answer: dict[str, Any],
) -> None:
    api.answer(method, path, status, answer)
    result = run(api.url, *args, "--json", state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout) == answer


def test_show_prints_the_subscription_for_people_without_secret_material(
    api: FakeApi, state_dir: Path
) -> None:
    api.answer(
        "GET",
        "/v1/subscriptions/sub_1",
        200,
        view(headers={"X-Team": "growth"}, rate_limit=5, timeout=10.0, retry_schedule=[5.0, 300.0]),
    )
    result = run(api.url, "subscriptions", "show", "sub_1", state_dir=state_dir)
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["id"].strip() == "sub_1"
    assert lines["headers"].strip() == "X-Team: growth"
    assert lines["rate limit"].strip() == "5/s"
    assert lines["timeout"].strip() == "10s"
    assert lines["retry schedule"].strip() == "5s,300s"
    assert lines["secret"].strip() == "set"


# -- errors ----------------------------------------------------------------------------


def test_a_422_with_a_field_is_one_error_line_and_exit_1(api: FakeApi, state_dir: Path) -> None:
    message = "`url`: plain http is not allowed: use https, or set STREAMS_ENV=development"
    api.answer("POST", "/v1/subscriptions", 422, api_error("invalid_request", message, "url"))
    result = run(
        api.url,
        "subscriptions", "create", "--url", "http://h.example/x", "--event-type", "*",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""


def test_a_422_becomes_an_invalid_request_error_carrying_the_field(api: FakeApi) -> None:
    api.answer(
        "PATCH",
        "/v1/subscriptions/sub_1",
        422,
        api_error("invalid_request", "`event_types[1]`: bad pattern", "event_types[1]"),
    )
    with ApiClient(api.url, TOKEN) as client, pytest.raises(InvalidRequestError) as info:
        client.update_subscription("sub_1", {"event_types": ["a", "b**"]})
    assert info.value.field == "event_types[1]"
    assert str(info.value) == "`event_types[1]`: bad pattern"


def test_a_404_is_one_error_line_with_the_api_message(api: FakeApi, state_dir: Path) -> None:
    api.answer(
        "GET", "/v1/subscriptions/sub_x", 404, api_error("not_found", "no subscription sub_x")
    )
    result = run(api.url, "subscriptions", "show", "sub_x", state_dir=state_dir)
    assert result.exit_code == 1
    assert result.stderr == "error: no subscription sub_x\n"


def test_a_refused_token_is_one_error_line_saying_which_variable_to_check(
    api: FakeApi, state_dir: Path
) -> None:
    wrong = "adm_WRONG-token-0000000000000"
    result = run(api.url, "subscriptions", "list", state_dir=state_dir, token=wrong)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: unknown or revoked token")
    assert "STREAMS_API_TOKEN" in result.stderr
    assert wrong not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, api_error("unauthorized", "only the admin token manages tokens"), AuthError, "admin"),
        (404, api_error("not_found", "no token tok_9"), NotFoundError, "no token tok_9"),
        (409, api_error("conflict", "sub_1 is disabled"), ConflictError, "sub_1 is disabled"),
        (503, api_error("unavailable", "Kafka did not confirm"), ApiError, "answered 503"),
        (500, api_error("internal", "internal error"), ApiError, "internal error"),
        (502, "<html>Bad Gateway</html>", ApiError, "502 Bad Gateway"),
    ],
)
def test_each_error_status_becomes_its_streams_error(
    api: FakeApi, status: int, body: Any, error: type[Exception], text: str
) -> None:
    api.answer("DELETE", "/v1/tokens/tok_9", status, body)
    with ApiClient(api.url, TOKEN) as client, pytest.raises(error) as info:
        client.revoke_token("tok_9")
    assert text in str(info.value)


def test_connection_refused_is_the_clear_line(state_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(url, "subscriptions", "list", state_dir=state_dir)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no API answered at {url}: is `streams worker` running? (set STREAMS_API_URL)\n"
    )


def test_an_api_that_does_not_answer_in_time_is_one_clear_error(api: FakeApi) -> None:
    api.delay_s = 1.0
    api.answer("GET", "/v1/tokens", 200, {"data": []})
    with (
        ApiClient(api.url, TOKEN, timeout=0.2) as client,
        pytest.raises(ApiUnreachableError) as info,
    ):
        client.list_tokens()
    assert "did not answer within 0.2s" in str(info.value)


def test_no_token_anywhere_tells_the_user_what_to_set_and_sends_nothing(
    api: FakeApi, state_dir: Path
) -> None:
    result = run(api.url, "tokens", "list", state_dir=state_dir, token=None)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no API token: set STREAMS_API_TOKEN")
    assert "STREAMS_ADMIN_TOKEN" in result.stderr
    assert str(state_dir / "dev-admin-token") in result.stderr
    assert api.seen == []


def test_a_token_with_spaces_is_refused_without_being_echoed(state_dir: Path) -> None:
    bad = "adm_has a space-secret"
    result = run("http://127.0.0.1:1", "tokens", "list", state_dir=state_dir, token=bad)
    assert result.exit_code == 1
    assert "bearer token cannot carry" in result.stderr
    assert bad not in result.stderr
    assert "space-secret" not in result.stderr


def test_an_api_url_with_credentials_is_refused_without_echoing_them(state_dir: Path) -> None:
    result = run("http://user:hunter2pw@127.0.0.1:1", "tokens", "list", state_dir=state_dir)
    assert result.exit_code == 1
    assert "must not carry credentials" in result.stderr
    assert "hunter2pw" not in result.stderr


def echo_authorization(seen: Seen) -> Answer:
    """A buggy API that puts the caller's token into its error message."""
    shown = seen.headers.get("Authorization", "")
    return 422, api_error("invalid_request", f"`url`: refused for {shown}", "url")


@pytest.mark.parametrize(
    "scenario", ["refused", "echoed", "not_found", "server_error", "unreachable", "slow"]
)
def test_the_token_never_appears_in_any_error_output(
    api: FakeApi, state_dir: Path, scenario: str
) -> None:
    url = api.url
    args = ["subscriptions", "create", "--url", "https://h.example/x", "--event-type", "*"]
    if scenario == "refused":
        api.token = "adm_another-token-entirely-000"
    elif scenario == "echoed":
        api.answers[("POST", "/v1/subscriptions")] = echo_authorization
    elif scenario == "not_found":
        args = ["subscriptions", "show", "sub_nope"]
    elif scenario == "server_error":
        api.answer("POST", "/v1/subscriptions", 500, api_error("internal", "internal error"))
    elif scenario == "unreachable":
        url = f"http://127.0.0.1:{free_port()}"
    if scenario == "slow":
        api.delay_s = 1.0
        api.answer("GET", "/v1/tokens", 200, {"data": []})
        with ApiClient(api.url, TOKEN, timeout=0.2) as client, pytest.raises(ApiError) as info:
            client.list_tokens()
        outputs = [str(info.value), repr(info.value), repr(client)]
    else:
        result = run(url, *args, state_dir=state_dir)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
        outputs = [result.stdout, result.stderr]
        if scenario == "echoed":
            assert "********" in result.stderr
    for text in outputs:
        assert TOKEN not in text
        assert TOKEN.split("_", 1)[1] not in text


# -- token resolution and settings ------------------------------------------------------


def test_the_token_is_the_api_token_then_the_admin_token_then_the_dev_file(tmp_path: Path) -> None:
    (tmp_path / "dev-admin-token").write_text("adm_from-the-dev-file-123456\n")
    base = {"STREAMS_STATE_DIR": str(tmp_path)}
    both = {**base, "STREAMS_API_TOKEN": "stk_api", "STREAMS_ADMIN_TOKEN": "adm_admin"}
    assert resolve_token(Settings.from_env(both)) == "stk_api"
    admin = {**base, "STREAMS_ADMIN_TOKEN": "adm_admin"}
    assert resolve_token(Settings.from_env(admin)) == "adm_admin"
    assert resolve_token(Settings.from_env(base)) == "adm_from-the-dev-file-123456"
    empty = {"STREAMS_STATE_DIR": str(tmp_path / "nothing-here")}
    assert resolve_token(Settings.from_env(empty)) is None
    with ApiClient.from_settings(Settings.from_env(empty)) as client, pytest.raises(ConfigError):
        client.list_tokens()


def test_the_cli_sends_the_development_token_when_no_other_is_set(
    api: FakeApi, state_dir: Path
) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "dev-admin-token").write_text(TOKEN)
    api.answer("GET", "/v1/tokens", 200, {"data": []})
    result = run(api.url, "tokens", "list", state_dir=state_dir, token=None)
    assert result.exit_code == 0, result.stderr
    assert only(api).headers["Authorization"] == f"Bearer {TOKEN}"
    assert result.stdout == "no tokens\n"


def test_the_api_settings_have_defaults_and_the_token_is_a_masked_secret() -> None:
    defaults = Settings.from_env({})
    assert defaults.api_url == "http://127.0.0.1:8080"
    assert not defaults.api_token
    s = Settings.from_env(
        {"STREAMS_API_URL": "https://api.example.com/", "STREAMS_API_TOKEN": "stk_x.yyy"}
    )
    assert s.api_url == "https://api.example.com"
    assert s.api_token == Secret("stk_x.yyy")
    assert s.public_view()["STREAMS_API_TOKEN"] == "(set)"
    assert "stk_x.yyy" not in repr(s)


def test_an_api_url_that_is_not_http_names_its_variable() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"STREAMS_API_URL": "127.0.0.1:8080"})
    assert str(info.value).startswith("STREAMS_API_URL=")


def test_health_needs_no_token_and_reads_a_worker_still_starting(api: FakeApi) -> None:
    api.answer("GET", "/healthz", 503, {"status": "starting", "subscriptions": 0})
    with ApiClient(api.url, None) as client:
        assert client.health() == {"status": "starting", "subscriptions": 0}
    assert "Authorization" not in only(api).headers


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_not_sent_as_null(value: str) -> None:
    # orjson writes nan as null: the API read "no rate limit" and "the default timeout".
    import click

    from streams.cli.common import Duration
    from streams.cli.subscriptions import _RateLimit

    with pytest.raises(click.BadParameter):
        _RateLimit().convert(value, None, None)
    with pytest.raises(click.BadParameter):
        Duration(as_text=True).convert(value, None, None)
    assert _RateLimit().convert("2.5", None, None) == 2.5
    assert Duration(as_text=True).convert("10s", None, None) == "10s"


def test_control_characters_in_stored_values_are_printed_escaped() -> None:
    from streams.cli.common import printable

    assert printable("a\x1b]0;pwned\x07b\tc\x85") == "a\\x1b]0;pwned\\x07b\tc\\x85"


def test_the_replay_rate_option_refuses_nan() -> None:
    from click.testing import CliRunner

    from streams.cli import cli

    result = CliRunner().invoke(cli, ["dlq", "replay", "--rate", "nan", "--dry-run"])
    assert result.exit_code == 2
    assert "--rate" in result.output


def test_a_telegram_subscription_sends_its_chat_and_shows_what_was_detected(
    api: FakeApi, state_dir: Path
) -> None:
    masked = "https://api.telegram.org/bot***/sendMessage"
    created = view(
        url=masked,
        url_masked=True,
        signing="none",
        secret={"set": False, "previous_valid_until": None},
        body_format="telegram",
        chat_id="-100123",
    )
    detected = {
        "service": "telegram",
        "applied": {"body_format": "telegram", "signing": "none"},
        "message": "the URL is Telegram's Bot API: body_format telegram, signing none chosen",
    }
    api.answer("POST", "/v1/subscriptions", 201, {**created, "detected": detected})
    token_url = "https://api.telegram.org/bot1:SECRET/sendMessage"
    result = run(
        api.url,
        "subscriptions", "create", "--url", token_url, "--event-type", "*",
        "--chat-id", "-100123",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {"url": token_url, "event_types": ["*"], "chat_id": "-100123"}
    assert "the URL is Telegram's Bot API: body_format telegram, signing none" in result.stdout
    assert f"url:            {masked}" in result.stdout
    assert "chat id:        -100123" in result.stdout
    assert "SECRET" not in result.stdout


def test_update_chat_id_none_removes_it(api: FakeApi, state_dir: Path) -> None:
    api.answer("PATCH", "/v1/subscriptions/sub_1", 200, view())
    result = run(
        api.url,
        "subscriptions", "update", "sub_1", "--body-format", "envelope", "--chat-id", "none",
        state_dir=state_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert only(api).body == {"body_format": "envelope", "chat_id": None}
