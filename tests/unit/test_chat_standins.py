"""The stand-ins hold the services' contracts, and our bodies and HttpSender satisfy them.

The stand-ins (tests/chat_standins.py) first show the problem this solves: an
event as a plain JSON body is refused the way each service refuses it. Then
every built-in event type, a 250 KB event and a hostile one are rendered for
each service and sent by the real HttpSender, accepted, notifying no one.
(tests/integration/test_chat_destinations.py runs the same through Kafka and a
worker.)
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from streams.config import Settings
from streams.delivery.chat import interpret
from streams.delivery.request import PreparedRequest
from streams.delivery.transport import HttpSender
from streams.fanout.bodies import render_body
from streams.records import EventEnvelope
from streams.schemas import SchemaRegistry
from tests.chat_standins import StandIns, running

REGISTRY = SchemaRegistry.load()
SETTINGS = Settings.from_env(
    {"STREAMS_ENV": "development", "STREAMS_DESTINATION_ALLOWLIST": "127.0.0.1/32"}
)
HOSTILE_TEXT = (
    "@channel @here @everyone <!channel> <!here|here> <@U024BE7LH> <#C024BE7LR> "
    "```` ```js\nalert(1)\n``` *bold* _it_ ~strike~ <https://evil.example|click me> "
    "[link](https://evil.example) &amp; &lt; # heading\n- list @streams_admin"
)


def events() -> list[EventEnvelope]:
    out = [
        EventEnvelope(
            id=f"evt_{name}",
            type=name,
            tenant_id="t_1",
            occurred_at="2026-04-29T19:12:33.421Z",
            data=REGISTRY.sample(name),
        )
        for name in sorted(REGISTRY.schemas)
    ]
    big = dict(REGISTRY.sample("crawl.run.completed"), error="e" * 250_000)
    out.append(EventEnvelope("evt_big", "crawl.run.completed", "t_1", "2026-04-29T19:12:34Z", big))
    hostile = dict(
        REGISTRY.sample("alert.fired"), watcher_name=HOSTILE_TEXT, subreddit=HOSTILE_TEXT
    )
    hostile["post"] = {"title": HOSTILE_TEXT, "url": "https://evil.example", "id": "x"}
    out.append(EventEnvelope("evt_hostile", "alert.fired", "t_1", "2026-04-29T19:12:35Z", hostile))
    return out


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[StandIns]:
    with running() as started:
        yield started


def paths(s: StandIns) -> dict[str, str]:
    return {
        "slack": s.url("/services/T0001/B0002/hooksecret"),
        "discord": s.url("/api/webhooks/1234/discordtoken"),
        "telegram": s.url(f"/bot{s.telegram_token}/sendMessage"),
    }


def test_an_event_as_plain_json_is_refused_as_each_service_refuses_it(
    stand_ins: StandIns,
) -> None:
    event = events()[0]
    envelope = render_body(event, "envelope", "run")
    headers = {"content-type": "application/json"}
    urls = paths(stand_ins)
    slack = httpx.post(urls["slack"], content=envelope, headers=headers)
    assert (slack.status_code, slack.text) == (400, "no_text")
    discord = httpx.post(urls["discord"], content=envelope, headers=headers)
    assert (discord.status_code, discord.json()["code"]) == (400, 50006)
    telegram = httpx.post(urls["telegram"], content=envelope, headers=headers)
    assert telegram.status_code == 400
    assert telegram.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: chat_id is empty",
    }
    too_long = {"chat_id": -1001234567890, "text": "x" * 4097}
    answer = httpx.post(urls["telegram"], json=too_long)
    assert answer.json()["description"] == "Bad Request: message is too long"
    unknown = httpx.post(urls["telegram"].replace("/bot4", "/bot5"), json=too_long)
    assert unknown.status_code == 401
    over = {"embeds": [{"title": "t", "description": "d" * 4097}]}
    assert httpx.post(urls["discord"], json=over).json()["code"] == 50035
    blocks = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
    assert httpx.post(urls["slack"], json=blocks).text == "invalid_blocks"
    pinging = {"content": "@everyone look"}
    assert httpx.post(urls["discord"], json=pinging).status_code == 204
    assert stand_ins.discord.pings == ["@everyone look"]  # what the stand-in would flag
    stand_ins.discord.pings.clear()
    stand_ins.discord.accepted.clear()


@pytest.mark.parametrize("fmt", ["slack", "discord", "telegram"])
async def test_every_event_is_accepted_by_each_service_and_pings_no_one(
    stand_ins: StandIns, fmt: str
) -> None:
    service = getattr(stand_ins, fmt)
    before, refused_before = len(service.accepted), len(service.refused)
    sender = HttpSender(SETTINGS)
    url = paths(stand_ins)[fmt]
    sent = events()
    try:
        for event in sent:
            body = render_body(
                event,
                fmt,
                REGISTRY.body_key(event.type),
                summary=REGISTRY.summary(event.type),
                chat_id="-1001234567890",
            )
            request = PreparedRequest(url, {"content-type": "application/json"}, body)
            result = await sender.send(request, timeout_s=10)
            assert result.status in (200, 204), (event.type, result.status, result.body[:300])
    finally:
        await sender.close()
    assert len(service.accepted) - before == len(sent)
    assert service.refused[refused_before:] == []
    assert service.pings == []
    texts = orjson.dumps(service.accepted[before:]).decode()
    assert "JSON cut:" in texts  # the 250 KB event, cut with its note


async def test_rate_limits_and_deleted_hooks_are_answered_as_the_services_do(
    stand_ins: StandIns,
) -> None:
    urls = paths(stand_ins)
    sender = HttpSender(SETTINGS)
    body = render_body(events()[0], "discord", "run")
    try:
        stand_ins.discord.rate_limited, stand_ins.discord.retry_header = 1, False
        stand_ins.discord.retry_after = 2.5
        limited = interpret(
            "discord",
            await sender.send(PreparedRequest(urls["discord"], {}, body), timeout_s=5),
        )
        assert (limited.status, limited.retry_after) == (429, "3")
        stand_ins.discord.deleted.add("discordtoken")
        gone = interpret(
            "discord",
            await sender.send(PreparedRequest(urls["discord"], {}, body), timeout_s=5),
        )
        assert (gone.status, gone.gone is not None) == (404, True)
        stand_ins.slack.deleted.add("hooksecret")
        slack_gone = interpret(
            "slack", await sender.send(PreparedRequest(urls["slack"], {}, body), timeout_s=5)
        )
        assert (slack_gone.status, slack_gone.body) == (404, b"no_service")
        assert slack_gone.gone is not None
        stand_ins.telegram.rate_limited = 1
        stand_ins.telegram.retry_after = 4
        telegram = interpret(
            "telegram",
            await sender.send(PreparedRequest(urls["telegram"], {}, body), timeout_s=5),
        )
        assert (telegram.status, telegram.retry_after) == (429, "4")
    finally:
        stand_ins.discord.deleted.clear()
        stand_ins.slack.deleted.clear()
        stand_ins.discord.retry_header = True
        await sender.close()
