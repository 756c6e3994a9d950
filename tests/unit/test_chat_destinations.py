"""Chat destinations: URL detection and masking, subscription rules, provider answers."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from streams.config import Settings
from streams.delivery.chat import DISCORD_GONE, SLACK_GONE, interpret
from streams.delivery.engine import SendResult
from streams.delivery.outcome import GiveUp, Retry, classify
from streams.errors import InvalidRequestError
from streams.health import FailureState, observe
from streams.ops.logs import redact
from streams.records import Attempt, Subscription
from streams.subscriptions import secrets as secret_store
from streams.subscriptions.model import (
    apply_update,
    build_subscription,
    detected_defaults,
    public_view,
)
from streams.subscriptions.services import detect_service, masked_url

NOW = 1_800_000_000.0
PROD = Settings.from_env({})
DEV = Settings.from_env(
    {"STREAMS_ENV": "development", "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32"}
)
BOX = secret_store.SecretBox([Fernet.generate_key().decode()])
TOKEN = "123456789:AAH-secretPartOfTheBotToken_0123456789"
TELEGRAM = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
SLACK = "https://hooks.slack.com/services/T0001/B0002/slackSecretXYZ123"
DISCORD = "https://discord.com/api/webhooks/1234567890/discord-Secret_token"


def build(body: dict[str, Any], settings: Settings = PROD) -> tuple[Subscription, str | None]:
    return build_subscription(body, tenant_id="t_1", settings=settings, box=BOX, now=NOW)


# --- detection and masking ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "service"),
    [
        (SLACK, "slack"),
        ("https://HOOKS.slack.com./services/T/B/x", "slack"),
        ("https://hooks.slack.com/triggers/T/1/abc", None),  # workflow webhooks take any JSON
        ("https://hooks.slack.com/workflows/T/A/1/abc", None),
        (DISCORD, "discord"),
        ("https://discordapp.com/api/webhooks/1/t", "discord"),
        ("https://ptb.discord.com/api/v10/webhooks/1/t", "discord"),
        ("https://discord.com/api/webhooks/1/t/slack", "slack"),  # Discord's Slack route
        ("https://discord.com/api/webhooks/1/t/github", None),
        ("https://discord.com/channels/1/2", None),
        (TELEGRAM, "telegram"),
        ("https://example.com/services/T/B/x", None),
        ("https://evil.example/hooks.slack.com/services/T/B/x", None),
        ("not a url", None),
    ],
)
def test_chat_services_are_detected_by_host_and_path(url: str, service: str | None) -> None:
    assert detect_service(url) == service


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (TELEGRAM, "https://api.telegram.org/bot***/sendMessage"),
        (
            f"http://127.0.0.1:8081/bot{TOKEN}/sendMessage",
            "http://127.0.0.1:8081/bot***/sendMessage",
        ),
        (
            "https://api.telegram.org/botbroken/sendMessage",
            "https://api.telegram.org/bot***/sendMessage",
        ),
        (SLACK, "https://hooks.slack.com/services/T0001/B0002/***"),
        (DISCORD, "https://discord.com/api/webhooks/1234567890/***"),
        (DISCORD + "/slack?wait=true", "https://discord.com/api/webhooks/1234567890/***/slack?***"),
        ("https://example.com/hook", None),
        ("https://example.com/bottles/1", None),
        ("https://example.com/services/T/B/x", None),
    ],
)
def test_credentials_in_urls_are_masked(url: str, masked: str | None) -> None:
    assert masked_url(url) == masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"POST {TELEGRAM} failed", "POST https://api.telegram.org/bot***/sendMessage failed"),
        (f"token {TOKEN}.", "token ***."),
        (f"url='{SLACK}'", "url='https://hooks.slack.com/services/T0001/B0002/***'"),
        (f"{DISCORD}?wait=true", "https://discord.com/api/webhooks/1234567890/***?wait=true"),
        ("127.0.0.1:19092 and 10:30", "127.0.0.1:19092 and 10:30"),
    ],
)
def test_logs_mask_chat_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- subscriptions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fmt", "label"),
    [
        (SLACK, "slack", "a Slack incoming webhook"),
        (DISCORD, "discord", "a Discord webhook"),
        (TELEGRAM, "telegram", "Telegram's Bot API"),
    ],
)
def test_a_chat_url_gets_its_format_and_no_signature(url: str, fmt: str, label: str) -> None:
    body: dict[str, Any] = {"url": url, "event_types": ["*"]}
    if fmt == "telegram":
        body["chat_id"] = "-1001234567890"
    sub, secret = build(body)
    assert (sub.body_format, sub.signing, sub.secrets, secret) == (fmt, "none", [], None)
    assert detected_defaults(body) == {
        "service": fmt,
        "applied": {"body_format": fmt, "signing": "none"},
        "message": f"the URL is {label}: body_format {fmt}, signing none chosen for it "
        "(give them explicitly to choose otherwise)",
    }


def test_an_explicit_choice_overrides_the_detected_one() -> None:
    body = {"url": SLACK, "event_types": ["*"], "body_format": "envelope", "signing": "standard"}
    sub, secret = build(body)
    assert (sub.body_format, sub.signing) == ("envelope", "standard")
    assert secret is not None
    detected = detected_defaults(body)
    assert detected is not None
    assert detected["applied"] == {}
    only_format = {"url": SLACK, "event_types": ["*"], "signing": "prowlo"}
    sub, _ = build(only_format)
    assert (sub.body_format, sub.signing) == ("slack", "prowlo")
    assert detected_defaults({"url": "https://example.com/x"}) is None
    plain, _ = build({"url": "https://example.com/x", "event_types": ["*"]})
    assert (plain.body_format, plain.signing) == ("envelope", "standard")


def test_a_telegram_url_is_stored_encrypted_and_shown_masked() -> None:
    sub, _ = build({"url": TELEGRAM, "event_types": ["*"], "chat_id": -100123})
    stored = sub.to_bytes().decode()
    assert TOKEN not in stored
    assert "secretPart" not in stored
    assert sub.url == "https://api.telegram.org/bot***/sendMessage"
    assert sub.chat_id == "-100123"
    assert secret_store.destination_url(BOX, sub) == TELEGRAM
    view = public_view(sub, now=NOW)
    assert view["url"] == "https://api.telegram.org/bot***/sendMessage"
    assert view["url_masked"] is True
    assert view["chat_id"] == "-100123"
    assert TOKEN not in str(view)
    plain, _ = build({"url": "https://example.com/x", "event_types": ["*"]})
    assert plain.url_secret is None
    assert secret_store.destination_url(BOX, plain) == "https://example.com/x"
    assert public_view(plain, now=NOW)["url_masked"] is False


def test_slack_and_discord_urls_are_credentials_too() -> None:
    for url in (SLACK, DISCORD):
        sub, _ = build({"url": url, "event_types": ["*"]})
        assert url not in sub.to_bytes().decode()
        assert sub.url.endswith("/***")
        assert secret_store.destination_url(BOX, sub) == url


def test_updating_the_url_reencrypts_or_clears_the_secret() -> None:
    sub, _ = build({"url": TELEGRAM, "event_types": ["*"], "chat_id": "@mychannel"})
    other = TELEGRAM.replace("secretPart", "rotatedPart")
    rotated = apply_update(sub, {"url": other}, settings=PROD, now=NOW + 1, box=BOX)
    assert rotated.url == sub.url  # the same masked form
    assert secret_store.destination_url(BOX, rotated) == other
    untouched = apply_update(rotated, {"description": "x"}, settings=PROD, now=NOW + 2, box=BOX)
    assert untouched.url_secret == rotated.url_secret
    moved = apply_update(
        untouched,
        {"url": "https://example.com/in", "body_format": "envelope", "chat_id": None},
        settings=PROD,
        now=NOW + 3,
        box=BOX,
    )
    assert (moved.url, moved.url_secret, moved.chat_id) == ("https://example.com/in", None, None)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": TELEGRAM}, "chat_id", "required with body_format telegram"),
        ({"url": TELEGRAM, "chat_id": "not a chat"}, "chat_id", "numeric id"),
        ({"url": TELEGRAM, "chat_id": True}, "chat_id", "numeric id"),
        ({"url": SLACK, "chat_id": "1"}, "chat_id", "only with body_format telegram"),
        (
            {"url": "https://api.telegram.org/bot1:short/sendMessage", "chat_id": "1"},
            "url",
            "https://api.telegram.org/bot<token>/sendMessage",
        ),
        ({"url": TELEGRAM + "?chat_id=1", "chat_id": "1"}, "url", "nothing after sendMessage"),
        ({"url": TELEGRAM.replace("sendMessage", "getMe"), "chat_id": "1"}, "url", "sendMessage"),
        ({"url": SLACK, "signing": "none", "secret": "x" * 30}, "secret", "leave `secret` out"),
        ({"url": SLACK, "body_format": "teams"}, "body_format", "one of envelope, keyed, slack"),
    ],
)
def test_chat_fields_are_validated(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as err:
        build({"event_types": ["*"], **body})
    assert err.value.field == field
    assert TOKEN not in str(err.value)


def test_errors_about_a_telegram_url_never_show_its_token() -> None:
    with pytest.raises(InvalidRequestError) as err:
        build({"url": TELEGRAM.replace("https", "http"), "event_types": ["*"], "chat_id": "1"})
    assert "plain http" in str(err.value)
    with pytest.raises(InvalidRequestError) as err:
        build({"url": f"https://127.0.0.1/bot{TOKEN}/sendMessage", "event_types": ["*"]})
    assert "loopback" in str(err.value)
    assert TOKEN not in str(err.value)


def test_a_telegram_stand_in_may_live_on_another_host_in_development() -> None:
    url = f"http://127.0.0.1:8081/bot{TOKEN}/sendMessage"
    sub, _ = build(
        {"url": url, "event_types": ["*"], "body_format": "telegram", "chat_id": "5"}, DEV
    )
    assert sub.url == "http://127.0.0.1:8081/bot***/sendMessage"
    assert secret_store.destination_url(BOX, sub) == url


# --- what the services answer ---------------------------------------------------------------


def result(status: int, body: bytes = b"", retry_after: str | None = None) -> SendResult:
    return SendResult(status=status, body=body, retry_after=retry_after)


@pytest.mark.parametrize(
    ("service", "answer", "retry_after", "gone"),
    [
        ("slack", result(404, b"no_service"), None, SLACK_GONE),
        ("slack", result(404, b"channel_not_found"), None, None),
        ("slack", result(429, b"rate_limited", "30"), "30", None),
        (
            "discord",
            result(404, b'{"message": "Unknown Webhook", "code": 10015}'),
            None,
            DISCORD_GONE,
        ),
        ("discord", result(404, b'{"message": "Unknown Channel", "code": 10003}'), None, None),
        ("discord", result(429, b'{"retry_after": 1.2, "global": false}'), "2", None),
        ("discord", result(429, b'{"retry_after": 64.57}', "65"), "65", None),  # header first
        ("discord", result(429, b'{"retry_after": "soon"}'), None, None),
        ("discord", result(429, b'{"retry_after": -1}'), None, None),
        ("discord", result(429, b"<html>"), None, None),
        ("telegram", result(429, b'{"ok":false,"parameters":{"retry_after":7}}'), "7", None),
        ("telegram", result(429, b'{"ok":false,"parameters":[]}'), None, None),
        ("envelope", result(404, b"no_service"), None, None),  # only for the service's format
        ("envelope", result(429, b'{"retry_after": 5}'), None, None),
    ],
)
def test_provider_answers_are_read(
    service: str, answer: SendResult, retry_after: str | None, gone: str | None
) -> None:
    read = interpret(service, answer)
    assert (read.retry_after, read.gone) == (retry_after, gone)
    if (retry_after, gone) == (answer.retry_after, None):
        assert read is answer


def test_a_gone_answer_gives_up_disables_and_beats_retry() -> None:
    assert classify(404, None, None, gone=SLACK_GONE) == GiveUp(SLACK_GONE, 404, disable=True)
    assert classify(404, None, None) == Retry("HTTP 404", 404, None)
    assert classify(200, None, None, gone=SLACK_GONE).__class__.__name__ == "Delivered"


def test_health_disables_a_gone_endpoint_at_once_with_its_reason() -> None:
    gone = Attempt(
        delivery_id="m",
        event_id="e",
        event_type="a.b",
        tenant_id="t",
        subscription_id="s",
        attempt=1,
        at=NOW,
        duration_ms=1.0,
        outcome="give_up",
        status=404,
        error=DISCORD_GONE,
        gone=True,
    )
    verdict = observe(FailureState(), gone, max_failures=1000, max_failing_s=1e9, now=NOW)
    assert verdict.disable_reason == DISCORD_GONE
    not_gone = Attempt(**{**gone.to_dict(), "gone": False, "outcome": "retry"})
    verdict = observe(FailureState(), not_gone, max_failures=1000, max_failing_s=1e9, now=NOW)
    assert verdict.disable_reason is None
