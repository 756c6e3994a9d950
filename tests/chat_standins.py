"""Stand-ins for Slack, Discord and Telegram on 127.0.0.1, each enforcing its documented contract.

One aiohttp server in a background thread serves the three services' routes:

``POST /services/<team>/<bot>/<secret>``  a Slack incoming webhook
    JSON only; ``text`` and/or ``blocks`` or ``400 no_text``; text at most
    40,000 characters; at most 50 blocks of known types; a header's plain
    text at most 150, a section's text 3,000, at most 10 fields of 2,000, a
    context at most 10 elements; text objects ``plain_text`` or ``mrkdwn``,
    not empty (else ``400 invalid_blocks``). ``200 ok``; an unknown hook
    ``404 no_service``; while rate limited ``429`` with ``Retry-After``.
``POST /api/webhooks/<id>/<token>``  a Discord channel webhook
    JSON only; ``content`` and/or ``embeds`` or ``400 {"code": 50006}``;
    content at most 2,000; at most 10 embeds; title 256, description 4,096,
    at most 25 fields with names of 1-256 and values of 1-1,024, footer
    2,048, an ISO 8601 timestamp, 6,000 characters in all embeds; a valid
    ``allowed_mentions`` (else ``400 {"code": 50035, "message": "Invalid Form
    Body"}``). ``204``; an unknown hook ``404 {"code": 10015}``; while rate
    limited ``429 {"retry_after": ...}`` (with or without ``Retry-After``).
``POST /bot<token>/<method>``  the Telegram Bot API
    an unknown token ``401``; a method other than ``sendMessage`` ``404``;
    JSON only; ``chat_id`` (an integer or a string) of a known chat, else
    ``400 chat_id is empty`` / ``chat not found``; ``text`` not empty after
    trimming, at most 4,096 characters; ``parse_mode`` if any a real one.
    ``{"ok": true, "result": {...}}``; errors ``{"ok": false, "error_code",
    "description"}``; while rate limited ``429`` with ``parameters.retry_after``.

Lengths are counted in UTF-16 code units, as the services' entity offsets are.
Every accepted message is kept, and so is every mention it would have turned
into a notification (``pings``): what a hostile event must never cause.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

SLACK_BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "rich_text", "image"})
SLACK_MENTIONS = re.compile(r"<!(?:channel|here|everyone)|<@[A-Z0-9]|<#C")
#: Plain @channel and friends notify when link_names is on or a client parses them.
LOOSE_MENTIONS = re.compile(r"(?<![\w@])@(?:channel|here|everyone)\b")
DISCORD_PINGS = re.compile(r"@(?:everyone|here)\b|<@[!&]?\d+>")
TELEGRAM_MENTIONS = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{4,31}\b")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Service:
    """What one stand-in accepted and refused, and how it behaves next."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    pings: list[str] = field(default_factory=list)
    rate_limited: int = 0  # answer this many requests with 429 first
    retry_after: float = 1.0
    retry_header: bool = True
    deleted: set[str] = field(default_factory=set)  # hook keys that no longer exist

    def refuse(self, status: int, why: str) -> None:
        self.refused.append((status, why))


class StandIns:
    def __init__(self) -> None:
        self.slack = Service()
        self.discord = Service()
        self.telegram = Service()
        self.telegram_token = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc"
        self.telegram_chats = {-1001234567890, "@streams_alerts"}
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # -- Slack --------------------------------------------------------------------------------

    async def slack_hook(self, request: web.Request) -> web.Response:
        svc = self.slack
        key = request.match_info["secret"]
        if key in svc.deleted:
            svc.refuse(404, "no_service")
            return web.Response(status=404, text="no_service", content_type="text/html")
        if svc.rate_limited:
            svc.rate_limited -= 1
            svc.refuse(429, "rate_limited")
            return web.Response(
                status=429,
                text="rate_limited",
                headers={"Retry-After": str(int(svc.retry_after))},
            )
        problem = self._slack_problem(request.content_type, await request.read())
        if problem is not None:
            svc.refuse(400, problem)
            return web.Response(status=400, text=problem, content_type="text/html")
        return web.Response(text="ok", content_type="text/html")

    def _slack_problem(self, content_type: str, raw: bytes) -> str | None:
        if content_type != "application/json":
            return "invalid_payload"
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "invalid_payload"
        if not isinstance(body, dict):
            return "invalid_payload"
        text, blocks = body.get("text"), body.get("blocks")
        if not text and not blocks:
            return "no_text"
        if text is not None and (not isinstance(text, str) or units(text) > 40_000):
            return "msg_too_long"
        texts: list[tuple[str, str]] = [("mrkdwn", text)] if isinstance(text, str) else []
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > 50:
                return "invalid_blocks"
            for block in blocks:
                found = _slack_block(block, texts)
                if found is not None:
                    return found
        for kind, value in texts:
            if SLACK_MENTIONS.search(value) or (kind == "mrkdwn" and LOOSE_MENTIONS.search(value)):
                self.slack.pings.append(value)
        self.slack.accepted.append(body)
        return None

    # -- Discord ------------------------------------------------------------------------------

    async def discord_hook(self, request: web.Request) -> web.Response:
        svc = self.discord
        key = request.match_info["token"]
        if key in svc.deleted:
            svc.refuse(404, "Unknown Webhook")
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if svc.rate_limited:
            svc.rate_limited -= 1
            svc.refuse(429, "rate limited")
            headers = {"Retry-After": str(int(svc.retry_after) + 1)} if svc.retry_header else {}
            return web.json_response(
                {
                    "message": "You are being rate limited.",
                    "retry_after": svc.retry_after,
                    "global": False,
                },
                status=429,
                headers=headers,
            )
        raw = await request.read()
        body: Any = None
        if request.content_type == "application/json":
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        if not isinstance(body, dict) or not (body.get("content") or body.get("embeds")):
            svc.refuse(400, "Cannot send an empty message")
            return web.json_response(
                {"message": "Cannot send an empty message", "code": 50006}, status=400
            )
        problem = _discord_problem(body)
        if problem is not None:
            svc.refuse(400, problem)
            return web.json_response(
                {"message": "Invalid Form Body", "code": 50035, "errors": {"_errors": problem}},
                status=400,
            )
        allowed = body.get("allowed_mentions")
        parse = allowed.get("parse", []) if isinstance(allowed, dict) else None
        content = body.get("content") or ""
        if (parse is None or "everyone" in parse or "users" in parse) and DISCORD_PINGS.search(
            content
        ):
            svc.pings.append(content)
        svc.accepted.append(body)
        return web.Response(status=204)

    # -- Telegram -----------------------------------------------------------------------------

    async def telegram_method(self, request: web.Request) -> web.Response:
        svc = self.telegram

        def error(status: int, description: str, **extra: Any) -> web.Response:
            svc.refuse(status, description)
            return web.json_response(
                {"ok": False, "error_code": status, "description": description, **extra},
                status=status,
            )

        if request.match_info["token"] != self.telegram_token:
            return error(401, "Unauthorized")
        if request.match_info["method"] != "sendMessage":
            return error(404, "Not Found")
        if svc.rate_limited:
            svc.rate_limited -= 1
            seconds = int(svc.retry_after)
            return error(
                429,
                f"Too Many Requests: retry after {seconds}",
                parameters={"retry_after": seconds},
            )
        if request.content_type != "application/json":
            return error(400, "Bad Request: message text is empty")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error(400, "Bad Request: can't parse JSON")
        if not isinstance(body, dict):
            return error(400, "Bad Request: message text is empty")
        chat = body.get("chat_id")
        if chat is None or chat == "":
            return error(400, "Bad Request: chat_id is empty")
        if isinstance(chat, bool) or not isinstance(chat, (int, str)):
            return error(400, "Bad Request: chat not found")
        if chat not in self.telegram_chats:
            return error(400, "Bad Request: chat not found")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return error(400, "Bad Request: message text is empty")
        if units(text) > 4096:
            return error(400, "Bad Request: message is too long")
        if body.get("parse_mode") not in (None, "MarkdownV2", "HTML", "Markdown"):
            return error(400, "Bad Request: unsupported parse_mode")
        if body.get("parse_mode") is None and TELEGRAM_MENTIONS.search(text):
            svc.pings.append(text)
        svc.accepted.append(body)
        result = {"message_id": len(svc.accepted), "date": 0, "chat": {"id": chat}, "text": text}
        return web.json_response({"ok": True, "result": result})


def _slack_text(obj: Any, limit: int, texts: list[tuple[str, str]]) -> str | None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return "invalid_blocks"
    value = obj.get("text")
    if not isinstance(value, str) or not value or units(value) > limit:
        return "invalid_blocks"
    texts.append((obj["type"], value))
    return None


def _slack_block(block: Any, texts: list[tuple[str, str]]) -> str | None:
    if not isinstance(block, dict) or block.get("type") not in SLACK_BLOCK_TYPES:
        return "invalid_blocks"
    kind = block["type"]
    if kind == "header":
        if not isinstance(block.get("text"), dict) or block["text"].get("type") != "plain_text":
            return "invalid_blocks"
        return _slack_text(block["text"], 150, texts)
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return "invalid_blocks"
        if "text" in block and (problem := _slack_text(block["text"], 3000, texts)):
            return problem
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            return "invalid_blocks"
        for item in fields:
            if problem := _slack_text(item, 2000, texts):
                return problem
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return "invalid_blocks"
        for item in elements:
            if problem := _slack_text(item, 3000, texts):
                return problem
    return None


def _discord_problem(body: dict[str, Any]) -> str | None:
    content = body.get("content")
    if content is not None and (not isinstance(content, str) or units(content) > 2000):
        return "content: Must be 2000 or fewer in length."
    allowed = body.get("allowed_mentions")
    if allowed is not None:
        parse = allowed.get("parse") if isinstance(allowed, dict) else None
        if not isinstance(parse, list) or not set(parse) <= {"roles", "users", "everyone"}:
            return "allowed_mentions: invalid"
    embeds = body.get("embeds", [])
    if not isinstance(embeds, list) or len(embeds) > 10:
        return "embeds: Must be 10 or fewer in length."
    total = 0
    for embed in embeds:
        if not isinstance(embed, dict):
            return "embeds: invalid"
        for name, limit in (("title", 256), ("description", 4096)):
            value = embed.get(name, "")
            if not isinstance(value, str) or units(value) > limit:
                return f"embeds.{name}: Must be {limit} or fewer in length."
            total += units(value)
        fields = embed.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 25:
            return "embeds.fields: Must be 25 or fewer in length."
        for item in fields:
            name, value = item.get("name"), item.get("value")
            if not isinstance(name, str) or not 1 <= units(name) <= 256:
                return "embeds.fields.name: Must be between 1 and 256 in length."
            if not isinstance(value, str) or not 1 <= units(value) <= 1024:
                return "embeds.fields.value: Must be between 1 and 1024 in length."
            total += units(name) + units(value)
        footer = embed.get("footer", {}).get("text", "")
        if not isinstance(footer, str) or units(footer) > 2048:
            return "embeds.footer.text: Must be 2048 or fewer in length."
        total += units(footer)
        if "timestamp" in embed:
            try:
                datetime.fromisoformat(str(embed["timestamp"]).replace("Z", "+00:00"))
            except ValueError:
                return "embeds.timestamp: Could not parse timestamp."
    if total > 6000:
        return "embeds: Embed size exceeds maximum size of 6000"
    return None


@contextmanager
def running() -> Iterator[StandIns]:
    """The three stand-ins on one port of 127.0.0.1, served from a background thread."""
    stand_ins = StandIns()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/services/{team}/{bot}/{secret}", stand_ins.slack_hook)
        app.router.add_post("/api/webhooks/{id}/{token}", stand_ins.discord_hook)
        app.router.add_post(r"/bot{token}/{method}", stand_ins.telegram_method)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stand_ins.port = runner.addresses[0][1]
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the chat stand-ins did not start")
    try:
        yield stand_ins
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
