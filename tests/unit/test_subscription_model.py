"""Subscription requests are validated field by field; views never show secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from streams.config import Settings
from streams.errors import ConfigError, InvalidRequestError, StreamsError
from streams.records import Subscription
from streams.subscriptions import secrets as secret_store
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.model import (
    apply_update,
    build_subscription,
    check_tenant,
    public_view,
    set_state,
)

NOW = 1_800_000_000.0
PROD = Settings.from_env({})
DEV = Settings.from_env({"STREAMS_ENV": "development"})
BOX = secret_store.SecretBox([Fernet.generate_key().decode()])


def build(body: dict[str, Any], settings: Settings = PROD) -> tuple[Subscription, str | None]:
    return build_subscription(body, tenant_id="t_1", settings=settings, box=BOX, now=NOW)


def test_a_minimal_request_gets_defaults_and_a_standard_webhooks_secret() -> None:
    sub, secret = build({"url": "https://example.com/hook", "event_types": ["prospect.*"]})
    assert sub.id.startswith("sub_")
    assert (sub.tenant_id, sub.signing, sub.state, sub.ordering) == (
        "t_1",
        "standard",
        "enabled",
        "unordered",
    )
    assert secret is not None
    assert secret.startswith("whsec_")
    assert secret not in sub.to_bytes().decode()  # encrypted at rest
    assert secret_store.decrypt_active(BOX, sub.secrets, NOW) == (secret,)


def test_a_caller_supplied_secret_is_kept_and_prospektr_may_have_none() -> None:
    _sub, secret = build(
        {
            "url": "https://e.com/h",
            "event_types": ["prospect.added"],
            "signing": "prospektr",
            "secret": "a-long-enough-shared-secret",
        }
    )
    assert secret == "a-long-enough-shared-secret"
    unsigned, none = build(
        {
            "url": "https://e.com/h",
            "event_types": ["prospect.added"],
            "signing": "prospektr",
            "secret": None,
        }
    )
    assert none is None
    assert unsigned.secrets == []


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"event_types": ["a"]}, "url", "required"),
        ({"url": "https://e.com"}, "event_types", "required"),
        ({"url": "http://e.com", "event_types": ["a"]}, "url", "https"),
        ({"url": "https://10.0.0.1/h", "event_types": ["a"]}, "url", "private"),
        ({"url": "https://[::ffff:127.0.0.1]/h", "event_types": ["a"]}, "url", "loopback"),
        ({"url": "https://user:pw@e.com/h", "event_types": ["a"]}, "url", "credentials"),
        ({"url": "https://e.com", "event_types": []}, "event_types", "non-empty"),
        ({"url": "https://e.com", "event_types": ["Prospect Added"]}, "event_types[0]", ""),
        ({"url": "https://e.com", "event_types": ["a"], "signing": "md5"}, "signing", "standard"),
        (
            {"url": "https://e.com", "event_types": ["a"], "headers": {"Webhook-Signature": "x"}},
            "headers.Webhook-Signature",
            "reserved",
        ),
        (
            {"url": "https://e.com", "event_types": ["a"], "headers": {"Prowlo-Signature": "x"}},
            "headers.Prowlo-Signature",
            "reserved",
        ),
        (
            {"url": "https://e.com", "event_types": ["a"], "headers": {"X-A": "a\r\nX-B: b"}},
            "headers.X-A",
            "control",
        ),
        (
            {"url": "https://e.com", "event_types": ["a"], "headers": {"Bad Name": "x"}},
            "headers.Bad Name",
            "header name",
        ),
        (
            # A trailing line break passed a `$`-anchored check; aiohttp refused it later.
            {"url": "https://e.com", "event_types": ["a"], "headers": {"X-Evil\n": "x"}},
            "headers.X-Evil\n",
            "header name",
        ),
        ({"url": "https://e.com", "event_types": ["a"], "timeout": "31s"}, "timeout", "30s"),
        ({"url": "https://e.com", "event_types": ["a"], "rate_limit": 0}, "rate_limit", "number"),
        (
            {"url": "https://e.com", "event_types": ["a"], "max_in_flight": 1.5},
            "max_in_flight",
            "whole",
        ),
        (
            {"url": "https://e.com", "event_types": ["a"], "retry_schedule": "5s,1s"},
            "retry_schedule",
            "",
        ),
        ({"url": "https://e.com", "event_types": ["a"], "ordering": "fifo"}, "ordering", "ordered"),
        ({"url": "https://e.com", "event_types": ["a"], "secret": "whsec_!!"}, "secret", ""),
        (
            {"url": "https://e.com", "event_types": ["a"], "colour": "red"},
            "colour",
            "unknown field",
        ),
    ],
)
def test_a_bad_field_is_named_with_what_to_fix(body: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build(body)
    assert info.value.field == field
    assert text in str(info.value)


def test_a_bad_secret_is_never_echoed_in_the_error() -> None:
    with pytest.raises(InvalidRequestError) as info:
        build(
            {"url": "https://e.com", "event_types": ["a"], "secret": "whsec_notbase64!!secretvalue"}
        )
    assert "notbase64!!secretvalue" not in str(info.value)


def test_development_mode_allows_plain_http_and_the_allowlist_admits_loopback() -> None:
    settings = Settings.from_env(
        {"STREAMS_ENV": "development", "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.0/8"}
    )
    sub, _ = build({"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, settings)
    assert sub.url == "http://127.0.0.1:9/h"


def test_retry_schedules_default_custom_and_none() -> None:
    base = {"url": "https://e.com", "event_types": ["a"]}
    assert build(base)[0].retry_schedule is None
    assert build(base | {"retry_schedule": "none"})[0].retry_schedule == [0]
    assert build(base | {"retry_schedule": ["5s", "1m"]})[0].retry_schedule == [0, 5, 60]


def test_an_update_changes_only_given_fields_and_bumps_the_version() -> None:
    sub, _ = build({"url": "https://e.com/a", "event_types": ["a"], "description": "one"})
    updated = apply_update(
        sub, {"description": "two", "event_types": ["b.*"]}, settings=PROD, now=NOW + 5, box=BOX
    )
    assert (updated.description, updated.event_types, updated.url) == (
        "two",
        ["b.*"],
        "https://e.com/a",
    )
    assert (updated.version, updated.updated_at, updated.created_at) == (2, NOW + 5, NOW)
    with pytest.raises(InvalidRequestError, match="tenant_id"):
        apply_update(sub, {"tenant_id": "other"}, settings=PROD, now=NOW, box=BOX)


def test_disable_and_enable_carry_a_human_reason() -> None:
    sub, _ = build({"url": "https://e.com/a", "event_types": ["a"]})
    off = set_state(sub, enabled=False, reason="5 consecutive 5xx responses", now=NOW)
    assert (off.state, off.disabled_reason, off.disabled_at) == (
        "disabled",
        "5 consecutive 5xx responses",
        NOW,
    )
    on = set_state(off, enabled=True, reason=None, now=NOW + 1)
    assert (on.state, on.disabled_reason, on.disabled_at) == ("enabled", None, None)


def test_the_public_view_has_no_secret_material() -> None:
    sub, secret = build({"url": "https://e.com/a", "event_types": ["a"]})
    assert secret is not None
    view = public_view(sub, now=NOW)
    text = str(view)
    assert secret not in text
    assert "ciphertext" not in text
    assert view["secret"] == {"set": True, "previous_valid_until": None}


def test_rotation_keeps_the_previous_secret_for_the_grace_period() -> None:
    old = [BOX.encrypt("old", now=NOW)]
    rotated = secret_store.rotate(old, BOX.encrypt("new", now=NOW + 10), now=NOW + 10, grace_s=3600)
    assert secret_store.decrypt_active(BOX, rotated, NOW + 20) == ("new", "old")
    assert secret_store.decrypt_active(BOX, rotated, NOW + 10 + 3600) == ("new",)
    revoked = secret_store.rotate(old, BOX.encrypt("new", now=NOW), now=NOW, grace_s=0)
    assert secret_store.decrypt_active(BOX, revoked, NOW) == ("new",)


def test_secrets_key_rotation_decrypts_with_old_keys_listed_after_the_new(tmp_path: Path) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = secret_store.SecretBox([old_key]).encrypt("s3cret", now=NOW)
    assert secret_store.SecretBox([new_key, old_key]).decrypt(stored) == "s3cret"
    with pytest.raises(StreamsError, match="STREAMS_SECRETS_KEY"):
        secret_store.SecretBox([new_key]).decrypt(stored)


def test_production_requires_a_secrets_key_and_development_makes_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STREAMS_SECRETS_KEY"):
        secret_store.SecretBox.from_settings(PROD)
    dev = Settings.from_env({"STREAMS_ENV": "development", "STREAMS_STATE_DIR": str(tmp_path)})
    box = secret_store.SecretBox.from_settings(dev)
    again = secret_store.SecretBox.from_settings(dev)
    assert again.decrypt(box.encrypt("x", now=NOW)) == "x"
    assert (tmp_path / "dev-secrets.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="not a Fernet key"):
        secret_store.SecretBox(["short"])


def test_the_index_matches_enabled_subscriptions_of_the_tenant_only() -> None:
    index = SubscriptionIndex()
    subs = {
        "a": Subscription(id="a", tenant_id="t1", url="https://e/a", event_types=["prospect.*"]),
        "b": Subscription(
            id="b", tenant_id="t1", url="https://e/b", event_types=["*"], state="disabled"
        ),
        "c": Subscription(id="c", tenant_id="t2", url="https://e/c", event_types=["*"]),
        "d": Subscription(id="d", tenant_id="t1", url="https://e/d", event_types=["alert.fired"]),
    }
    for sub_id, sub in subs.items():
        index.apply(sub_id, sub.to_bytes())
    assert [s.id for s in index.matching("t1", "prospect.added")] == ["a"]
    assert [s.id for s in index.matching("t1", "alert.fired")] == ["d"]
    assert [s.id for s in index.matching("t2", "prospect.added")] == ["c"]
    index.apply("a", None)  # tombstone
    assert index.matching("t1", "prospect.added") == []
    index.apply("x", b"{not json")
    assert index.undecodable == 1
    assert index.get("x") is None
    assert index.counts_by_state() == {"enabled": 2, "disabled": 1}


def test_operational_events_reach_only_subscriptions_that_name_their_family() -> None:
    index = SubscriptionIndex()
    for sub_id, types in {
        "all": ["*"],
        "ops": ["endpoint.*"],
        "one": ["delivery.recovered"],
    }.items():
        sub = Subscription(id=sub_id, tenant_id="t", url="https://e/x", event_types=types)
        index.apply(sub_id, sub.to_bytes())
    assert [s.id for s in index.matching("t", "endpoint.disabled", operational=True)] == ["ops"]
    assert [s.id for s in index.matching("t", "delivery.recovered", operational=True)] == ["one"]
    assert [s.id for s in index.matching("t", "alert.fired")] == ["all"]


@pytest.mark.parametrize("tenant", ["acme\n", "acme\r", "", "a b"])
def test_a_tenant_id_with_anything_but_its_characters_is_refused(tenant: str) -> None:
    with pytest.raises(InvalidRequestError, match="tenant_id"):
        check_tenant(tenant)
    assert check_tenant("acme:eu-1") == "acme:eu-1"


def test_own_retries_are_refused_where_the_deployment_has_no_retry_tiers() -> None:
    none = Settings.from_env({"STREAMS_RETRY_SCHEDULE": "none"})
    body = {"url": "https://e.com", "event_types": ["a"], "retry_schedule": ["5s"]}
    with pytest.raises(InvalidRequestError, match=r"retry_schedule.*STREAMS_RETRY_SCHEDULE=none"):
        build(body, none)
    single, _ = build({**body, "retry_schedule": "none"}, none)
    assert single.retry_schedule == [0.0]
    assert build(body)[0].retry_schedule == [0.0, 5.0]  # the default deployment has tiers


@pytest.mark.parametrize("host", ["\u2603.net", "\uff25\uff38.com", "a\u200d.example"])
def test_a_host_the_sender_cannot_parse_is_refused_when_saved(host: str) -> None:
    # check_url accepts these (IDNA 2003), httpx does not: every delivery would fail.
    with pytest.raises(InvalidRequestError, match="xn--"):
        build({"url": f"https://{host}/in", "event_types": ["a"]})


def test_a_punycode_host_is_accepted() -> None:
    sub, _ = build({"url": "https://xn--n3h.net/in", "event_types": ["a"]})
    assert sub.url == "https://xn--n3h.net/in"


@pytest.mark.parametrize("signing", ["standard", "prowlo", "prospektr", "stripe", "github"])
def test_every_subscription_the_api_builds_is_taken_by_the_workers_index(signing: str) -> None:
    # The index checks stored records against schemas/records/subscription.json and leaves
    # out one that fails (issue 17): the schema must take everything the API writes.
    sub, _ = build(
        {
            "url": "https://example.com/hook",
            "event_types": ["prospect.*", "alert.fired"],
            "description": "every field set",
            "signing": signing,
            "headers": {"X-Api-Key": "k-123", "X-Team": "growth"},
            "retry_schedule": ["5s", "1m"],
            "ordering": "ordered",
            "rate_limit": 2.5,
            "max_in_flight": 4,
            "timeout": "10s",
            "body_format": "keyed",
            "enabled": False,
        }
    )
    index = SubscriptionIndex()
    assert index.apply(sub.id, sub.to_bytes()) is None
    assert index.get(sub.id) == sub
    updated = apply_update(sub, {"retry_schedule": "none"}, settings=PROD, now=NOW + 1, box=BOX)
    assert index.apply(sub.id, updated.to_bytes()) is None
    disabled = set_state(updated, enabled=False, reason="maintenance", now=NOW + 2)
    assert index.apply(sub.id, disabled.to_bytes()) is None
    assert index.get(sub.id) == disabled


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        (
            "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            {"chat_id": "42"},
        ),
        ("https://hooks.slack.com/services/T000/B000/XXXXXXXX", {}),
        ("https://discord.com/api/webhooks/1/abcdef", {}),
    ],
)
def test_chat_subscriptions_the_api_builds_are_taken_by_the_workers_index(
    url: str, extra: dict[str, str]
) -> None:
    # The chat formats add fields (url_secret, chat_id, signing none): the schema the
    # index checks against must take them, or the worker would leave them out.
    sub, _ = build({"url": url, "event_types": ["alert.fired"], **extra})
    index = SubscriptionIndex()
    assert index.apply(sub.id, sub.to_bytes()) is None
    assert index.get(sub.id) == sub
