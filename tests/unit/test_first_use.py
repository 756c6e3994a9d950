"""Small things a first-time user noticed (issue 17, items 19 and 20), each pinned.

Pure functions with fixed vectors; the CLI under click's CliRunner where the output
itself is the thing (Kafka's scan replaced by rows: the formatting is under test).
"""

from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from streams.cli import cli
from streams.cli.client import dev_token_path
from streams.cli.common import Duration
from streams.cli.worker import banner
from streams.config import Settings
from streams.delivery.transport import classify_exception
from streams.errors import ConfigError
from streams.fanout.matching import unmatched_patterns
from streams.monitor import Snapshot, render
from streams.retry.schedule import parse_schedule, parse_seconds
from streams.schemas import SchemaRegistry
from streams.subscriptions import model
from streams.subscriptions.secrets import SecretBox
from streams.tools.demo import demo_env, monitor_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


# -- `streams config` prints durations as they are written ---------------------------------


def test_config_prints_durations_with_units_not_seconds() -> None:
    view = Settings.from_env(
        {"STREAMS_BREAKER_OPEN": "1500ms", "STREAMS_DISABLE_AFTER": "1h30m"}
    ).public_view()
    assert view["STREAMS_RETENTION"] == "7d"  # was 604800.0
    assert view["STREAMS_LOG_RETENTION"] == "30d"
    assert view["STREAMS_REQUEST_TIMEOUT"] == "10s"
    assert view["STREAMS_BREAKER_OPEN"] == "1s500ms"
    assert view["STREAMS_DISABLE_AFTER"] == "1h30m"
    assert view["STREAMS_DISABLE_AFTER_FAILURES"] == "1000"  # a count stays a count
    # What it prints reads back as the same settings.
    again = Settings.from_env({k: v for k, v in view.items() if k.endswith(("RETENTION", "OPEN"))})
    assert again.retention_s == 7 * 86400
    assert again.breaker_open_s == 1.5


# -- `dlq list`: a header row and a time column ---------------------------------------------


def test_dlq_list_prints_a_header_and_when_each_letter_was_parked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.deadletter import replay
    from streams.deadletter.scan import Located
    from streams.records import DeadLetter

    rows = [
        {"at": 1767225600.0, "status": 500, "error": None, "reason": "exhausted", "sub": "sub_a"},
        {"at": 1767229200.5, "status": None, "error": "x" * 200, "reason": "gone", "sub": "sub_b"},
    ]

    def fake_find(settings: Settings, flt: Any) -> Iterator[tuple[Any, Any]]:
        for i, row in enumerate(rows):
            yield (
                Located(partition=0, offset=i, timestamp_ms=0, key=None, value=b""),
                DeadLetter(
                    delivery={
                        "subscription_id": row["sub"],
                        "event_type": "prospect.added",
                        "delivery_id": f"msg_{i}",
                    },
                    reason=str(row["reason"]),
                    attempts=3,
                    dead_lettered_at=float(row["at"]),  # type: ignore[arg-type]
                    last_status=row["status"],  # type: ignore[arg-type]
                    last_error=row["error"],  # type: ignore[arg-type]
                ),
            )

    monkeypatch.setattr(replay, "find", fake_find)
    result = CliRunner().invoke(cli, ["dlq", "list"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    head, first, second = result.output.splitlines()
    assert head.split() == [
        "PARKED", "AT", "POSITION", "REASON", "SUBSCRIPTION", "EVENT", "TYPE", "ATTEMPTS",
        "LAST", "ANSWER",
    ]  # fmt: skip
    assert first.startswith("2026-01-01T00:00:00Z  0:0")
    assert "HTTP 500" in first
    assert second.startswith("2026-01-01T01:00:00Z  0:1")
    assert second.endswith("x" * 77 + "...")  # a long error is cut (--json has it all)


# -- the monitor tells two subscriptions to one URL apart ----------------------------------


def failing_row(sub_id: str, url: str) -> dict[str, Any]:
    return {
        "subscription_id": sub_id,
        "url": url,
        "failures": 3,
        "success_rate": 0.5,
        "consecutive_failures": 3,
        "last_error": "HTTP 500",
    }


def test_the_monitor_names_the_subscription_when_two_share_a_url() -> None:
    url = "https://hooks.example.com/a/very/long/path/to/the/receiver/endpoint"
    api = {
        "reachable": True,
        "failing": [
            failing_row("sub_1111aaaa2222", url),
            failing_row("sub_3333bbbb4444", url),
            failing_row("sub_5555cccc6666", "https://other.example/in"),
        ],
    }
    snap = Snapshot(at=0.0, bootstrap="k:9092", group="g", prefix="", api=api)
    lines = render(snap, width=80, height=24)
    rows = [line for line in lines if "HTTP 500" in line]
    assert len(rows) == 3
    assert rows[0] != rows[1]
    assert "sub_1111aaaa" in rows[0]
    assert "sub_3333bbbb" in rows[1]
    assert "sub_5555" not in rows[2]  # a URL of its own needs no id
    assert rows[2].startswith("other.example/in ")


# -- the same duration forms everywhere ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10", 10.0), ("2.5", 2.5), (" 10s ", 10.0), ("500ms", 0.5), ("1h30m", 5400.0),
     (10, 10.0), (0, 0.0), (2.5, 2.5)],
)  # fmt: skip
def test_parse_seconds_reads_durations_and_bare_seconds(value: str | float, seconds: float) -> None:
    assert parse_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "ten", "10x", "-1", "nan", "1e3", float("nan"), -1.0, True])
def test_parse_seconds_refuses_anything_else_naming_the_forms(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_seconds(value)
    assert "duration" in str(caught.value)


def test_settings_still_need_a_unit() -> None:
    """A bare STREAMS_RETENTION=7 is more likely 7 days than 7 seconds: still refused."""
    with pytest.raises(ConfigError):
        Settings.from_env({"STREAMS_RETENTION": "7"})


def test_a_subscriptions_schedule_and_timeout_take_bare_seconds_too() -> None:
    assert parse_schedule("5,300", bare_seconds=True) == (0.0, 5.0, 300.0)
    with pytest.raises(ConfigError):
        parse_schedule("5,300")  # the setting keeps its units
    settings = Settings.from_env({"STREAMS_ENV": "development"})
    box = SecretBox([Fernet.generate_key().decode()])
    body = {"url": "https://h.example/in", "event_types": ["*"], "timeout": "10"}
    sub, _ = model.build_subscription(
        {**body, "retry_schedule": "5,300"}, tenant_id="t", settings=settings, box=box, now=1.0
    )
    assert sub.timeout_s == 10.0
    assert sub.retry_schedule == [0.0, 5.0, 300.0]


@pytest.mark.parametrize("option", ["--grace", "--timeout"])
@pytest.mark.parametrize("value", ["10", "10s", "1m30s"])
def test_every_duration_option_takes_the_same_forms(option: str, value: str) -> None:
    """--grace 10 was refused while --timeout 10 was accepted."""
    from streams.cli import subscriptions as cmds

    command = cmds.sub_rotate if option == "--grace" else cmds.sub_update
    param = next(p for p in command.params if p.opts[0] == option)
    assert isinstance(param.type, Duration)
    converted = param.type.convert(value, param, None)
    assert parse_seconds(converted) == parse_seconds(value)


def test_monitor_and_demo_intervals_take_units_too() -> None:
    from streams.cli.monitor import monitor_cmd
    from streams.cli.tools import demo_cmd

    for command in (monitor_cmd, demo_cmd):
        param = next(p for p in command.params if p.name == "interval")
        assert param.type.convert("500ms", param, None) == 0.5
        assert param.type.convert("2", param, None) == 2.0


# -- connection errors on plain-http URLs do not mention TLS -------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_refused_plain_http_connection_says_nothing_of_ssl() -> None:
    port = closed_port()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.post(f"http://127.0.0.1:{port}/hook", data=b"{}")
    assert "ssl:default" in str(caught.value)  # aiohttp's own text, the reason for this fix
    kind, detail = classify_exception(caught.value, 10.0)
    assert kind.value == "connect_error"
    assert "ssl" not in detail.lower()
    assert detail.startswith(f"connection refused: cannot connect to 127.0.0.1:{port} [")


# -- the README's example file ships, and is a valid event ---------------------------------


def test_every_data_file_the_readme_names_ships_and_is_valid() -> None:
    commands = re.findall(r"streams publish --type (\S+) .*?--data @(\S+?)`", README)
    assert commands, "the README shows `streams publish ... --data @FILE`"
    registry = SchemaRegistry.from_settings(Settings.from_env({}))
    for event_type, path in commands:
        data = orjson.loads((ROOT / path).read_bytes())
        registry.validate(
            {
                "id": "evt_1",
                "type": event_type,
                "tenant_id": "t_42",
                "occurred_at": "2026-01-01T00:00:00Z",
                "data": data,
            }
        )


# -- an event-type pattern that matches no known type is a warning ------------------------

DOMAIN = ["alert.fired", "crawl.run.completed", "prospect.added"]
OPS = ["delivery.exhausted", "endpoint.disabled", "endpoint.enabled"]


@pytest.mark.parametrize(
    ("patterns", "unmatched"),
    [
        (["prospect.added", "*"], []),
        (["prospect.creatd"], ["prospect.creatd"]),
        (["prospect.*", "crawl.*.completed", "*.fired"], []),
        (["invoice.*", "alert.fired"], ["invoice.*"]),
        (["*.*.*.*"], ["*.*.*.*"]),
    ],
)
def test_unmatched_patterns(patterns: list[str], unmatched: list[str]) -> None:
    assert unmatched_patterns(patterns, DOMAIN) == unmatched


def test_warnings_name_the_pattern_and_the_nearest_known_type() -> None:
    (warning,) = model.event_type_warnings(
        ["prospect.creatd", "prospect.*"], domain=DOMAIN, operational=OPS
    )
    assert warning.startswith("`prospect.creatd` matches no known event type")
    assert warning.endswith("did you mean prospect.added?")


def test_operational_families_count_only_where_they_are_named() -> None:
    assert model.event_type_warnings(["endpoint.*"], domain=DOMAIN, operational=OPS) == []
    assert model.event_type_warnings(["endpoint.disabled"], domain=DOMAIN, operational=OPS) == []
    # `*.disabled` would reach endpoint.disabled by its shape, but a leading `*` never
    # receives operational events (streams.subscriptions.index.ops_patterns).
    (warning,) = model.event_type_warnings(["*.disabled"], domain=DOMAIN, operational=OPS)
    assert "`*.disabled`" in warning


# -- prospektr: the keyed body and one attempt by default ---------------------------------


def test_prospektr_defaults_to_the_keyed_body_and_no_retries() -> None:
    settings = Settings.from_env({})
    box = SecretBox([Fernet.generate_key().decode()])

    def build(**body: Any) -> Any:
        full = {"url": "https://h.example/in", "event_types": ["*"], **body}
        return model.build_subscription(full, tenant_id="t", settings=settings, box=box, now=1.0)[0]

    sub = build(signing="prospektr")
    assert (sub.body_format, sub.retry_schedule) == ("keyed", [0.0])
    view = model.public_view(sub, now=1.0)
    assert (view["body_format"], view["retry_schedule"]) == ("keyed", "none")
    # What the caller asks for wins; other profiles keep their defaults.
    sub = build(signing="prospektr", body_format="envelope", retry_schedule="default")
    assert (sub.body_format, sub.retry_schedule) == ("envelope", None)
    sub = build(signing="prowlo")
    assert (sub.body_format, sub.retry_schedule) == ("envelope", None)


# -- the worker's banner ---------------------------------------------------------------------


def test_the_banner_shows_a_generated_token_and_never_a_configured_one() -> None:
    settings = Settings.from_env(
        {"STREAMS_ENV": "development", "STREAMS_TOPIC_PREFIX": "p.", "STREAMS_API_PORT": "8123"}
    )
    lines = banner(settings, "adm_generated", ready=True)
    text = "\n".join(lines)
    assert "streams worker ready" in text
    assert "http://127.0.0.1:8123" in text
    assert "adm_generated" in text
    assert "topics p.*" in text
    assert len(lines) <= 8  # short: it must fit above the fold
    configured = "\n".join(banner(settings, None, ready=False))
    assert "adm_" not in configured
    assert "STREAMS_ADMIN_TOKEN" in configured


# -- the demo's monitor command reaches the demo's API -------------------------------------


def env_of(command: str) -> dict[str, str]:
    """The VAR=value assignments in front of a shell command."""
    out = {}
    for word in shlex.split(command):
        name, sep, value = word.partition("=")
        if not sep:
            break
        out[name] = value
    return out


def test_the_readme_monitor_command_finds_the_demo_token_and_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (command,) = re.findall(r"`(STREAMS_TOPIC_PREFIX=demo\.[^`]*streams\s+monitor)`", README)
    demo = Settings.from_env(demo_env(Settings.from_env({})))
    watching = Settings.from_env(env_of(command))
    assert dev_token_path(watching).resolve() == (demo.state_dir / "dev-admin-token").resolve()
    assert watching.api_url == f"http://127.0.0.1:{demo.api_port}"
    assert watching.topic_prefix == demo.topic_prefix


@pytest.mark.parametrize(
    "user_env",
    [{}, {"STREAMS_API_PORT": "9123"}, {"STREAMS_STATE_DIR": "/tmp/my state"}],
)
def test_the_demos_own_hint_reaches_its_api_whatever_the_users_settings(
    user_env: dict[str, str],
) -> None:
    base = Settings.from_env(user_env)
    demo = Settings.from_env(demo_env(base))
    watching = Settings.from_env({**user_env, **env_of(monitor_command(base))})
    assert dev_token_path(watching) == demo.state_dir / "dev-admin-token"
    assert watching.api_url == f"http://127.0.0.1:{demo.api_port}"
    assert watching.topic_prefix == demo.topic_prefix


# -- a request aiohttp cannot parse is one warning line, not a traceback --------------------


def test_an_unparsable_request_is_logged_as_one_warning_line() -> None:
    import logging

    from aiohttp.http_exceptions import ContentEncodingError

    from streams.ops.logs import ClientFaultFilter, JsonFormatter

    try:
        raise ContentEncodingError("Can not decode content-encoding: brotli (br)")
    except ContentEncodingError:
        import sys

        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
            ("127.0.0.1",), sys.exc_info(),
        )  # fmt: skip
    assert ClientFaultFilter().filter(record)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING"
    assert "exc" not in line
    assert line["message"] == (
        "Error handling request from 127.0.0.1: Can not decode content-encoding: brotli (br) "
        "(answered 400)"
    )
    # Our own errors keep their traceback.
    try:
        raise ValueError("ours")
    except ValueError:
        import sys

        ours = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    ClientFaultFilter().filter(ours)
    assert "exc" in orjson.loads(JsonFormatter().format(ours))
