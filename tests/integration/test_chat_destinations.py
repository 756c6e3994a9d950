"""Slack, Discord and Telegram through the whole pipeline: Kafka, a worker, the stand-ins.

The stand-ins (tests/chat_standins.py) enforce each service's documented
contract on 127.0.0.1. Events are published to Kafka (domain events through
the publisher, operational ones raw to the ops topic), fanned out by a real
`streams worker` and delivered to subscriptions made through the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from streams.cli import cli
from streams.config import Settings
from streams.delivery.chat import DISCORD_GONE, SLACK_GONE
from streams.publish import EventPublisher
from streams.records import EventEnvelope
from streams.schemas import SchemaRegistry
from tests.chat_standins import StandIns, running
from tests.integration.harness import Api, WorkerProcess, read_topic

pytestmark = pytest.mark.integration

REGISTRY = SchemaRegistry.load()
HOSTILE = (
    "@channel @here @everyone <!channel> <@U024BE7LH> ```` *bold* <https://evil.example|x> "
    "[link](https://evil.example) &amp; # heading @streams_admin"
)
CHAT = -1001234567890


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    with running() as started:
        yield started


def wait_until(check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """``check()`` once it is truthy (polled every 0.25 s, at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def subscribe(admin: Api, tenant: str, s: StandIns, hook: str) -> dict[str, str]:
    """One subscription per service (ids by format), each on its own hook path."""
    kinds = ["*", "endpoint.*", "delivery.*", "replay.*"]
    urls = {
        "slack": s.url(f"/services/T0001/B0002/{hook}"),
        "discord": s.url(f"/api/webhooks/1234/{hook}"),
        "telegram": s.url(f"/bot{s.telegram_token}/sendMessage"),
    }
    ids = {}
    for fmt, url in urls.items():
        body: dict[str, Any] = {
            "tenant_id": tenant,
            "url": url,
            "event_types": kinds,
            "body_format": fmt,
            "signing": "none",
        }
        if fmt == "telegram":
            body["chat_id"] = CHAT
        ids[fmt] = admin.create(**body)["id"]
    return ids


def publish_ops(settings: Settings, tenant: str) -> int:
    """Every operational type's sample, produced raw to the ops topic as the worker does."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i, name in enumerate(REGISTRY.operational_types):
        event = EventEnvelope(
            id=f"ops_chat_{i}",
            type=name,
            tenant_id=tenant,
            occurred_at="2026-04-29T19:12:33Z",
            data=REGISTRY.sample(name),
        )
        producer.produce(settings.topic_prefix + "ops", key=tenant.encode(), value=event.to_bytes())
    assert producer.flush(30) == 0
    return len(REGISTRY.operational_types)


def test_every_built_in_type_a_250_kb_and_a_hostile_event_reach_each_service(
    admin: Api, worker_settings: Settings, stand_ins: StandIns
) -> None:
    subscribe(admin, "chat-all", stand_ins, "all")
    with EventPublisher(worker_settings) as pub:
        events = [
            pub.build(name, "chat-all", REGISTRY.sample(name)) for name in REGISTRY.event_types
        ]
        big = dict(REGISTRY.sample("crawl.run.completed"), error="e" * 250_000)
        events.append(pub.build("crawl.run.completed", "chat-all", big))
        hostile = dict(REGISTRY.sample("alert.fired"), watcher_name=HOSTILE, subreddit=HOSTILE)
        hostile["post"] = {"id": "t3_x", "title": HOSTILE, "url": "https://evil.example"}
        events.append(pub.build("alert.fired", "chat-all", hostile))
        assert len(events[-2].to_bytes()) > 250_000
        pub.publish_many(events)
    expected = len(events) + publish_ops(worker_settings, "chat-all")
    for service in (stand_ins.slack, stand_ins.discord, stand_ins.telegram):
        assert wait_until(lambda s=service: len(s.accepted) >= expected), (
            len(service.accepted),
            service.refused,
        )
    time.sleep(1)  # nothing more arrives (no duplicates, no retries of refusals)
    for service in (stand_ins.slack, stand_ins.discord, stand_ins.telegram):
        assert len(service.accepted) == expected
        assert service.refused == []
        assert service.pings == []
    texts = {body["text"] for body in stand_ins.slack.accepted}
    assert "SaaS founders: 5 new posts in r/SaaS (run ok, 12 matched)" in texts
    contents = {body["content"] for body in stand_ins.discord.accepted}
    assert "SaaS founders: score 87 in r/SaaS: Looking for a tool to track leads" in contents
    assert any(
        body["text"].startswith("New prospect: Sunshine Promo Co.")
        for body in stand_ins.telegram.accepted
    )
    assert {body["chat_id"] for body in stand_ins.telegram.accepted} == {CHAT}
    assert sum("JSON cut:" in orjson.dumps(b).decode() for b in stand_ins.slack.accepted) == 1


def attempts_of(admin: Api, sub_id: str, **query: str) -> list[dict[str, Any]]:
    """Every attempt of the subscription's deliveries (``query``: more filters)."""
    rows = admin.call("GET", "/v1/deliveries", subscription_id=sub_id, **query).json()["data"]
    return [
        a
        for row in rows
        for a in admin.call("GET", f"/v1/deliveries/{row['delivery_id']}").json()["attempts"]
    ]


def test_rate_limits_are_honoured_and_deleted_hooks_disable_their_subscription(
    admin: Api, worker_settings: Settings, stand_ins: StandIns
) -> None:
    ids = subscribe(admin, "chat-answers", stand_ins, "answers")
    stand_ins.discord.rate_limited, stand_ins.discord.retry_header = 1, False  # JSON only
    stand_ins.discord.retry_after = 1.5
    stand_ins.slack.rate_limited, stand_ins.slack.retry_after = 1, 1
    stand_ins.telegram.rate_limited, stand_ins.telegram.retry_after = 1, 1
    sample = REGISTRY.sample("crawl.run.completed")
    with EventPublisher(worker_settings) as pub:
        pub.publish("crawl.run.completed", "chat-answers", sample)
    # Each delivers after one 429; each recovery then sends a delivery.recovered to all three.
    for service in (stand_ins.slack, stand_ins.discord, stand_ins.telegram):
        assert wait_until(lambda s=service: len(s.accepted) >= 4, 30), service.refused
    time.sleep(1)
    for service in (stand_ins.slack, stand_ins.discord, stand_ins.telegram):
        assert [status for status, _ in service.refused] == [429]
        assert len(service.accepted) == 4
    crawl = {"event_type": "crawl.run.completed"}
    discord_attempts = wait_until(
        lambda: (
            len(attempts_of(admin, ids["discord"], **crawl)) >= 2
            and attempts_of(admin, ids["discord"], **crawl)
        ),
        20,
    )
    first, second = sorted(discord_attempts, key=lambda a: a["attempt"])[:2]
    assert (first["status"], second["status"]) == (429, 204)
    assert second["at"] - first["at"] >= 1.9  # Discord's retry_after 1.5 s, rounded up

    stand_ins.slack.deleted.add("answers")
    stand_ins.discord.deleted.add("answers")
    with EventPublisher(worker_settings) as pub:
        pub.publish("alert.fired", "chat-answers", REGISTRY.sample("alert.fired"))

    def disabled(sub_id: str) -> dict[str, Any] | None:
        view: dict[str, Any] = admin.call("GET", f"/v1/subscriptions/{sub_id}").json()
        return view if view["state"] == "disabled" else None

    slack = wait_until(lambda: disabled(ids["slack"]), 30)
    discord = wait_until(lambda: disabled(ids["discord"]), 30)
    assert slack is not None
    assert slack["disabled_reason"] == SLACK_GONE
    assert discord is not None
    assert discord["disabled_reason"] == DISCORD_GONE
    assert admin.call("GET", f"/v1/subscriptions/{ids['telegram']}").json()["state"] == "enabled"
    letters = admin.call("GET", "/v1/dlq", subscription_id=ids["slack"]).json()["data"]
    reasons = [letter["reason"] for letter in letters]
    # Gone once; what reaches it after (the endpoint.disabled events) is parked, replayable.
    assert reasons.count("gone") == 1
    assert set(reasons) <= {"gone", "subscription_disabled"}
    assert [status for status, _ in stand_ins.slack.refused] == [
        429,
        404,
    ]  # no retry of a gone hook


def test_a_telegram_bot_token_never_shows_in_listings_logs_metrics_errors_or_the_cli(
    admin: Api, worker: WorkerProcess, worker_settings: Settings, stand_ins: StandIns
) -> None:
    token = stand_ins.telegram_token
    secret_part = token.split(":", 1)[1]
    url = stand_ins.url(f"/bot{token}/sendMessage")
    masked = stand_ins.url("/bot***/sendMessage")
    created = admin.create(
        tenant_id="chat-secret", url=url, event_types=["*"], body_format="telegram",
        chat_id=CHAT, signing="none",
    )  # fmt: skip
    assert (created["url"], created["url_masked"]) == (masked, True)
    # A second one to a chat that does not exist: its attempts fail with Telegram's error.
    failing = admin.create(
        tenant_id="chat-secret", url=url, event_types=["*"], body_format="telegram",
        chat_id="@nosuchchannel", signing="none", retry_schedule="none",
    )  # fmt: skip
    # A third whose token the stand-in does not know: 401 Unauthorized.
    wrong = url.replace(secret_part, secret_part[::-1])
    unknown = admin.create(
        tenant_id="chat-secret", url=wrong, event_types=["*"], body_format="telegram",
        chat_id=CHAT, signing="none", retry_schedule="none",
    )  # fmt: skip
    with EventPublisher(worker_settings) as pub:
        pub.publish("alert.fired", "chat-secret", REGISTRY.sample("alert.fired"))
    assert wait_until(lambda: stand_ins.telegram.accepted, 30)
    assert wait_until(lambda: len(stand_ins.telegram.refused) >= 2, 30)
    assert wait_until(
        lambda: attempts_of(admin, failing["id"]) and attempts_of(admin, unknown["id"]), 20
    )
    # The stand-in saw the real token: the worker did send to the clear URL.
    assert stand_ins.telegram.accepted[0]["chat_id"] == CHAT

    places: dict[str, str] = {}
    places["create"] = orjson.dumps(created).decode()
    places["list"] = admin.call("GET", "/v1/subscriptions", tenant_id="chat-secret").text
    for sub in (created, failing, unknown):
        places[f"show {sub['id']}"] = admin.call("GET", f"/v1/subscriptions/{sub['id']}").text
        places[f"log {sub['id']}"] = orjson.dumps(attempts_of(admin, sub["id"])).decode()
        places[f"stats {sub['id']}"] = admin.call(
            "GET", f"/v1/subscriptions/{sub['id']}/stats"
        ).text
    places["stats"] = admin.call("GET", "/v1/stats").text
    places["dlq"] = admin.call("GET", "/v1/dlq", tenant_id="chat-secret").text
    places["metrics"] = httpx.get(worker.base_url + "/metrics", timeout=10).text
    places["worker log"] = worker.log_path.read_text(errors="replace")
    admin_token = (worker_settings.state_dir / "dev-admin-token").read_text().strip()
    env = {"STREAMS_API_URL": worker.base_url, "STREAMS_API_TOKEN": admin_token}
    runner = CliRunner()
    for args in (
        ["subscriptions", "list", "--tenant", "chat-secret"],
        ["subscriptions", "show", created["id"]],
        ["subscriptions", "show", created["id"], "--json"],
        ["subscriptions", "update", created["id"], "--url", url.replace(secret_part, "X" * 30)],
    ):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        places["cli " + " ".join(args[:2])] = result.output
    for topic in ("subscriptions", "deliveries", "attempts", "deliveries.dlq", "ops"):
        records = read_topic(
            worker_settings, worker_settings.topic_prefix + topic, expected=10**9, timeout_s=3
        )
        places[f"topic {topic}"] = "\n".join(
            (m.value() or b"").decode("utf-8", "replace") for m in records
        )
    assert "Unauthorized" in places[f"log {unknown['id']}"]  # the errors are there...
    assert "chat not found" in places[f"log {failing['id']}"]
    assert "bot***" in places["cli subscriptions list"]
    for where, text in places.items():  # ...and the token is nowhere
        assert secret_part not in text, where
        assert secret_part[::-1] not in text, where
