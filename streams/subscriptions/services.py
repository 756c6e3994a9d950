"""Chat services a subscription URL points at, and the credentials such URLs carry.

Pure functions of the URL text:

- :func:`detect_service`: ``slack`` for a Slack incoming webhook
  (``https://hooks.slack.com/services/...``), ``discord`` for a Discord
  channel webhook (``https://discord.com/api/webhooks/<id>/<token>``, also
  ``discordapp.com``, ``ptb.``/``canary.``, ``/api/v10/webhooks/``),
  ``telegram`` for the Bot API (``https://api.telegram.org/bot<token>/...``),
  or None. A subscription created with such a URL and no ``body_format`` gets
  that format, and ``signing: none`` unless it names a profile. A Discord URL
  ending in ``/slack`` takes Slack's message shape (Discord documents that
  route as Slack-compatible), so it is detected as ``slack``; Slack's workflow
  webhooks (``/triggers/``, ``/workflows/``) take custom JSON, not messages,
  and are not detected.
- :func:`masked_url`: the URL with its credential replaced by ``***`` when it
  carries one, else None. Whoever holds such a URL can post as the sender:
  Telegram's bot token (``/bot<token>/`` on any host, since the Bot API
  server can be self-hosted; every path on ``api.telegram.org``), the last
  segment of a Slack incoming webhook, the token of a Discord webhook. Such a
  URL is stored encrypted like a signing secret, and only the masked form is
  ever shown: ``https://api.telegram.org/bot***/sendMessage``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SLACK_HOST = "hooks.slack.com"
DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
TELEGRAM_HOST = "api.telegram.org"

_DISCORD_PATH = re.compile(r"/api(?:/v\d+)?/webhooks/([^/]+)/([^/?#]+)(/[^?#]*)?")
_SLACK_PATH = re.compile(r"/services/([^/]+)/([^/]+)/([^/?#]+)")
#: A Bot API token: the bot's numeric id, a colon, the secret part.
_BOT_TOKEN_PATH = re.compile(r"/bot\d+:[^/]+")
_TELEGRAM_PATH = re.compile(r"/bot[^/]*")
#: What a Telegram Bot API sendMessage URL looks like (the token as BotFather issues it).
TELEGRAM_SEND = re.compile(r"/bot\d{1,20}:[A-Za-z0-9_-]{20,100}/sendMessage")


def _host(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "", ""
    return host, parts.path


def detect_service(url: str) -> str | None:
    """``slack``, ``discord``, ``telegram`` or None: see the module docstring."""
    host, path = _host(url)
    if host == SLACK_HOST and _SLACK_PATH.match(path):
        return "slack"
    if host in DISCORD_HOSTS:
        match = _DISCORD_PATH.match(path)
        if match is None:
            return None
        suffix = (match.group(3) or "").rstrip("/")
        if suffix == "/slack":
            return "slack"
        return "discord" if not suffix else None
    if host == TELEGRAM_HOST:
        return "telegram"
    return None


def masked_url(url: str) -> str | None:
    """``url`` with its credential masked when it carries one, else None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return None
    path = parts.path
    masked: str | None = None
    if _BOT_TOKEN_PATH.match(path) or (host == TELEGRAM_HOST and _TELEGRAM_PATH.match(path)):
        masked = _TELEGRAM_PATH.sub("/bot" + MASK, path, count=1)
    elif host == SLACK_HOST and (match := _SLACK_PATH.match(path)):
        masked = path[: match.start(3)] + MASK + path[match.end(3) :]
    elif host in DISCORD_HOSTS and (match := _DISCORD_PATH.match(path)):
        masked = path[: match.start(2)] + MASK + path[match.end(2) :]
    if masked is None:
        return None
    # The query and fragment may hold the credential too (?token=...): never shown.
    query = MASK if parts.query else ""
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, parts.netloc, masked, query, fragment))
