"""Summary templates and the Slack, Discord and Telegram bodies: fixed vectors and limits."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from streams.fanout.bodies import render_body
from streams.fanout.formats import (
    DISCORD_CONTENT_MAX,
    DISCORD_DESCRIPTION_MAX,
    DISCORD_EMBED_TOTAL_MAX,
    SLACK_SECTION_MAX,
    TELEGRAM_TEXT_MAX,
    ZWSP,
    escape,
    fit,
    key_fields,
    safe,
    units,
)
from streams.fanout.summary import DEFAULT_SUMMARY, placeholders, render_summary
from streams.records import EventEnvelope
from streams.schemas import SchemaRegistry

REGISTRY = SchemaRegistry.load()
BUILT_IN = ("crawl.run.completed", "alert.fired", "prospect.added")
TIME = "2026-04-29T19:12:33.421Z"


def event(data: dict[str, Any], type_: str = "crawl.run.completed", **kw: Any) -> EventEnvelope:
    return EventEnvelope(id="evt_1", type=type_, tenant_id="t_1", occurred_at=TIME, data=data, **kw)


def sample(type_: str) -> EventEnvelope:
    return event(REGISTRY.sample(type_), type_)


# --- summaries ------------------------------------------------------------------------------

CRAWL = "{watcher_name}: {new_posts} new posts in r/{subreddit}"


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        (
            CRAWL,
            {"watcher_name": "SaaS", "new_posts": 5, "subreddit": "x"},
            "SaaS: 5 new posts in r/x",
        ),
        (CRAWL, {"new_posts": 5}, "?: 5 new posts in r/?"),  # missing
        (CRAWL, {"watcher_name": None, "new_posts": [1], "subreddit": {}}, "?: ? new posts in r/?"),
        (
            CRAWL,
            {"watcher_name": "a\nb\t c", "new_posts": 1.5, "subreddit": ""},
            "a b c: 1.5 new posts in r/?",
        ),
        ("{flag} {n}", {"flag": True, "n": 10**30}, "true 1000000000000000000000000000000"),
        ("{post.title} by {post.author}", {"post": {"title": "Hi"}}, "Hi by ?"),
        ("{post.title}", {"post": "not an object"}, "?"),
        ("{{literal}} {a}", {"a": 1}, "{literal} 1"),
        ("{event.type} for {event.tenant_name}", {}, "crawl.run.completed for ?"),
        ("{event.id} {event.nope}", {}, "evt_1 ?"),  # an unknown envelope name is a data path
        ("{unclosed {a} } {9bad} {a..b}", {"a": "x"}, "{unclosed x } {9bad} {a..b}"),
        ("   ", {}, "crawl.run.completed"),  # renders empty: the type stands in
        ("{a}", {"a": "\x1b[31mred\x07"}, "[31mred"),  # control characters dropped
    ],
)
def test_a_summary_renders_every_field_or_a_question_mark(
    template: str, data: dict[str, Any], expected: str
) -> None:
    assert render_summary(template, event(data)) == expected


def test_the_default_summary_names_the_type() -> None:
    assert render_summary(None, event({})) == "New crawl.run.completed event"
    assert DEFAULT_SUMMARY == "New {event.type} event"


def test_long_values_and_long_summaries_are_cut() -> None:
    line = render_summary("{a} {b} {c}", event({"a": "x" * 1000, "b": "y" * 1000, "c": "z"}))
    assert line == "x" * 199 + "\u2026 " + "y" * 199 + "\u2026 z"
    assert len(render_summary("{a}" * 10, event({"a": "x" * 200}))) == 500


def test_placeholders_are_listed_once_in_order() -> None:
    assert placeholders("{b} {a} {b} {{c}} {post.id}") == ["b", "a", "post.id"]


def test_the_built_in_types_have_summaries_that_render_their_examples_fully() -> None:
    expected = {
        "crawl.run.completed": "SaaS founders: 5 new posts in r/SaaS (run ok, 12 matched)",
        "alert.fired": "SaaS founders: score 87 in r/SaaS: Looking for a tool to track leads",
        "prospect.added": (
            "New prospect: Sunshine Promo Co. (promo, Orlando, FL), lead potential high"
        ),
    }
    for type_, line in expected.items():
        assert render_summary(REGISTRY.summary(type_), sample(type_)) == line
    for type_ in REGISTRY.operational_types:  # every schema declares one, none renders a ?
        template = REGISTRY.summary(type_)
        assert template is not None, type_
        assert "?" not in render_summary(template, sample(type_)), type_


def test_a_schema_without_a_summary_gets_the_default_and_a_bad_one_is_refused(
    tmp_path: Any,
) -> None:
    from streams.errors import ConfigError

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "invoice.paid.json").write_text('{"type": "object"}')
    registry = SchemaRegistry.load(extra_dirs=[extra])
    assert registry.summary("invoice.paid") is None
    (extra / "invoice.paid.json").write_text('{"type": "object", "x-summary": 5}')
    with pytest.raises(ConfigError, match="x-summary"):
        SchemaRegistry.load(extra_dirs=[extra])


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "text", "expected"),
    [
        (
            "slack",
            "<!channel> & <@U1> a>b",
            "&lt;\u200b!channel&gt; &amp; &lt;\u200b@\u200bU1&gt; a&gt;b",
        ),
        (
            "slack",
            "@here @channel mail@x.com @ alone",
            "@\u200bhere @\u200bchannel mail@\u200bx.com @ alone",
        ),
        (
            "discord",
            "*b* _i_ ~s~ `c` |x| <@1> [a](b) \\",
            "\\*b\\* \\_i\\_ \\~s\\~ \\`c\\` \\|x\\| \\<\u200b@\u200b1> \\[a\\](b) \\\\",
        ),
        ("discord", "# h\n- item\n> q a-b #c", "\\# h\n\\- item\n\\> q a-b #c"),
        ("discord", "@everyone @here", "@\u200beveryone @\u200bhere"),
        ("code", "```x``` `y` ````", "`\u200b`\u200b`x`\u200b`\u200b` `y` `\u200b`\u200b`\u200b`"),
        ("discord", "``x", "\\`\u200b\\`x"),
        ("code", "<b> & * <#C1>", "<b> & * <\u200b#C1>"),
        ("plain", "@user `` <i>", "@\u200buser `\u200b` <i>"),
    ],
)
def test_escapes_defuse_mentions_markup_and_fences(service: str, text: str, expected: str) -> None:
    assert escape(text, service) == (expected, len(text))


def test_escaping_within_a_budget_keeps_whole_escapes() -> None:
    assert escape("a&b", "slack", 3) == ("a", 1)  # "&amp;" does not fit after "a"
    assert escape("a&b", "slack", 6) == ("a&amp;", 2)
    assert escape("@x", "plain", 1) == ("", 0)
    assert escape("\U0001f600ab", "plain", 2) == ("\U0001f600", 1)  # an emoji counts 2
    assert safe("abcdef", "plain", 4) == "abc\u2026"
    assert safe("abc", "plain", 3) == "abc"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab\u2026"),
        ("\U0001f600\U0001f600", 4, "\U0001f600\U0001f600"),
        ("\U0001f600\U0001f600", 3, "\U0001f600\u2026"),  # never half a surrogate pair
        ("a\U0001f600", 2, "a\u2026"),
    ],
)
def test_fit_counts_utf16_units(text: str, limit: int, expected: str) -> None:
    assert fit(text, limit) == expected
    assert units(fit(text, limit)) <= limit


def test_key_fields_are_the_templates_then_the_other_scalars() -> None:
    ev = event({"z": 1, "nested": {"a": 1}, "watcher_name": "W", "none": None, "b": True})
    assert key_fields(ev, "{watcher_name} {missing} {event.type}") == [
        ("watcher_name", "W"),
        ("z", "1"),
        ("b", "true"),
    ]
    many = event({f"f{i}": i for i in range(20)})
    assert [name for name, _ in key_fields(many, None)] == [f"f{i}" for i in range(9)]


# --- the three messages, byte for byte -------------------------------------------------------

SMALL = event({"watcher_name": "W", "new_posts": 2, "subreddit": "s"})
SMALL_JSON = (
    '{\n  "type": "crawl.run.completed",\n  "created_at": "2026-04-29T19:12:33.421Z",\n'
    '  "id": "evt_1",\n  "data": {\n    "watcher_name": "W",\n    "new_posts": 2,\n'
    '    "subreddit": "s"\n  }\n}'
)


def test_slack_message_fixed_vector() -> None:
    body = orjson.loads(render_body(SMALL, "slack", "run", summary=CRAWL))
    assert body == {
        "text": "W: 2 new posts in r/s",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "crawl.run.completed"}},
            {
                "type": "section",
                "text": {"type": "plain_text", "text": "W: 2 new posts in r/s"},
                "fields": [
                    {"type": "plain_text", "text": "watcher_name: W"},
                    {"type": "plain_text", "text": "new_posts: 2"},
                    {"type": "plain_text", "text": "subreddit: s"},
                    {"type": "plain_text", "text": f"time: {TIME}"},
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```\n{SMALL_JSON}\n```"}},
        ],
    }


def test_discord_message_fixed_vector() -> None:
    body = orjson.loads(render_body(SMALL, "discord", "run", summary=CRAWL))
    assert body == {
        "content": "W: 2 new posts in r/s",
        "embeds": [
            {
                "title": "crawl.run.completed",
                "timestamp": "2026-04-29T19:12:33.421000+00:00",
                "description": f"```json\n{SMALL_JSON}\n```",
                "fields": [
                    {"name": "watcher\\_name", "value": "W", "inline": True},
                    {"name": "new\\_posts", "value": "2", "inline": True},
                    {"name": "subreddit", "value": "s", "inline": True},
                ],
                "footer": {"text": "event evt_1"},
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_discord_shows_an_odd_time_as_a_field_not_a_timestamp() -> None:
    odd = EventEnvelope(id="e", type="a.b", tenant_id="t", occurred_at="yesterday", data={})
    (embed,) = orjson.loads(render_body(odd, "discord", "a"))["embeds"]
    assert "timestamp" not in embed
    assert embed["fields"] == [{"name": "time", "value": "yesterday", "inline": True}]


def test_telegram_message_fixed_vector() -> None:
    body = orjson.loads(render_body(SMALL, "telegram", "run", summary=CRAWL, chat_id="-100123"))
    assert body == {
        "chat_id": -100123,
        "text": (
            "W: 2 new posts in r/s\n\nwatcher_name: W\nnew_posts: 2\nsubreddit: s\n"
            f"time: {TIME}\n\n{SMALL_JSON}"
        ),
        "link_preview_options": {"is_disabled": True},
    }
    by_name = orjson.loads(render_body(SMALL, "telegram", "run", chat_id="@mychannel"))
    assert by_name["chat_id"] == "@mychannel"


def test_the_envelope_and_keyed_shapes_are_unchanged_by_a_summary_or_chat_id() -> None:
    for shape in ("envelope", "keyed"):
        assert render_body(SMALL, shape, "run", summary=CRAWL, chat_id="1") == render_body(
            SMALL, shape, "run"
        )


# --- limits, big events and hostile text ------------------------------------------------------


def check_limits(body: dict[str, Any], fmt: str) -> None:
    """The documented limits each service enforces (what the stand-ins check too)."""
    if fmt == "slack":
        assert units(body["text"]) <= 40_000
        assert len(body["blocks"]) <= 50
        for block in body["blocks"]:
            if block["type"] == "header":
                assert units(block["text"]["text"]) <= 150
            if block["type"] == "section":
                assert units(block["text"]["text"]) <= SLACK_SECTION_MAX
                assert len(block.get("fields", [])) <= 10
                assert all(units(f["text"]) <= 2000 for f in block.get("fields", []))
    elif fmt == "discord":
        assert units(body["content"]) <= DISCORD_CONTENT_MAX
        (embed,) = body["embeds"]
        assert units(embed["title"]) <= 256
        assert units(embed["description"]) <= DISCORD_DESCRIPTION_MAX
        fields = embed.get("fields", [])
        assert len(fields) <= 25
        total = units(embed["title"]) + units(embed["description"])
        total += sum(units(f["name"]) + units(f["value"]) for f in fields)
        total += units(embed["footer"]["text"])
        assert total <= DISCORD_EMBED_TOTAL_MAX
    else:
        assert 0 < units(body["text"]) <= TELEGRAM_TEXT_MAX


def strings_of(value: Any) -> list[str]:
    """Every string in a JSON value, depth first."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in strings_of(item)]


BIG = event({"watcher_name": "big", "blob": "x" * 250_000, "new_posts": 1, "subreddit": "s"})


@pytest.mark.parametrize("fmt", ["slack", "discord", "telegram"])
def test_a_250_kb_event_is_cut_within_the_limits_with_a_note(fmt: str) -> None:
    body = orjson.loads(render_body(BIG, fmt, "run", summary=CRAWL, chat_id="1"))
    check_limits(body, fmt)
    text = "\n".join(strings_of(body))
    total = len(
        orjson.dumps(
            {"type": BIG.type, "created_at": TIME, "id": "evt_1", "data": BIG.data},
            option=orjson.OPT_INDENT_2,
        )
    )
    note = re.search(r"JSON cut: ([0-9,]+) of ([0-9,]+) characters shown", text)
    assert note is not None
    assert int(note.group(2).replace(",", "")) == total
    shown = int(note.group(1).replace(",", ""))
    assert 1_000 < shown < 4_096
    assert '"blob": "xxxx' in text


@pytest.mark.parametrize("fmt", ["slack", "discord", "telegram"])
@pytest.mark.parametrize("type_", sorted(REGISTRY.schemas))
def test_every_built_in_type_renders_within_the_limits(fmt: str, type_: str) -> None:
    body = orjson.loads(
        render_body(sample(type_), fmt, "x", summary=REGISTRY.summary(type_), chat_id="1")
    )
    check_limits(body, fmt)


HOSTILE = event(
    {
        "watcher_name": "@channel <!here> @everyone ```` *bold* <https://evil|click> &amp;",
        "new_posts": "```\n@here\n```",
        "subreddit": "<@U123> [x](https://evil) # not a heading",
        "wide": "\U0001f600" * 3000,
        "@everyone": "key named like a mention",
    }
)
#: What would notify people or break out of a code block, if it reached a service.
PINGS = re.compile(r"@(?:channel|here|everyone|U123)|<!|<@|```[^\n]")


@pytest.mark.parametrize("fmt", ["slack", "discord", "telegram"])
def test_hostile_text_notifies_no_one_and_stays_in_its_blocks(fmt: str) -> None:
    body = orjson.loads(render_body(HOSTILE, fmt, "run", summary=CRAWL, chat_id="1"))
    check_limits(body, fmt)
    for text in strings_of(body):
        inner = text
        for fence in ("```json\n", "```\n"):
            inner = inner.removeprefix(fence)
        inner = re.sub(r"\n```(\n|$)", r"\1", inner)  # our own closing fence
        assert not PINGS.search(inner), (fmt, text[:200])
    if fmt == "discord":
        assert body["allowed_mentions"] == {"parse": []}
    if fmt == "slack":
        mrkdwn = [
            b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("type") == "mrkdwn"
        ]
        assert all("<" not in t and ">" not in t for t in mrkdwn)
        assert "<" not in body["text"]
    assert ZWSP in orjson.dumps(body).decode("utf-8")
