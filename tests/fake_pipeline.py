"""A stand-in for :class:`streams.pipeline.Pipeline` under the API and the console.

The management API and the console only write records and read the subscription
index, so their unit tests run on this fake: what they write is recorded in
``sent`` and, for the subscriptions and console-token topics, applied to the
index and the console's ledger the way the worker's readers apply them from
Kafka (at once, or ``apply_delay`` seconds later to mimic the round trip).
Tests of the pipeline's stages use real Kafka (``tests/integration``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from cryptography.fernet import Fernet

from streams.api import register_api
from streams.config import Settings
from streams.kafka.topics import TopicNames
from streams.log.service import DeliveryLog
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.secrets import SecretBox

ADMIN = "adm_test_0123456789abcdef"


class FakePipeline(SimpleNamespace):
    """Records every write in ``sent`` as ``(topic, key as text, value)``."""

    is_ready = True
    # Kafka answers (streams.api.writes asks before every write).
    output = SimpleNamespace(check_reachable=lambda topic, timeout_s: asyncio.sleep(0))

    async def send(self, topic: str, key: Any, value: bytes | None) -> Any:
        name = key.decode() if isinstance(key, bytes) else key
        self.sent.append((topic, name, value))
        loop = asyncio.get_running_loop()
        if topic == self.names.subscriptions:
            if self.apply_delay:
                loop.call_later(self.apply_delay, self.subscriptions.apply, name, value)
            else:
                self.subscriptions.apply(name, value)
        console = self.extras.get("console")
        if topic == self.names.tokens and console is not None and console.ledger.owns(name):
            console.ledger.apply(name, value)
        future: asyncio.Future[None] = loop.create_future()
        future.set_result(None)
        return future

    def written(self, topic: str) -> list[bytes | None]:
        """The values written to ``topic``, in order."""
        return [value for t, _, value in self.sent if t == topic]


def dev_settings(tmp_path: Path, *, secrets_key: str | None = None, **env: str) -> Settings:
    """Development settings with the test admin token, a fresh secrets key (unless
    given) and the state directory under ``tmp_path``; ``env`` adds STREAMS_* values."""
    return Settings.from_env(
        {
            "STREAMS_ENV": "development",
            "STREAMS_ADMIN_TOKEN": ADMIN,
            "STREAMS_SECRETS_KEY": secrets_key or Fernet.generate_key().decode(),
            "STREAMS_STATE_DIR": str(tmp_path),
            **env,
        }
    )


def fake_pipeline(
    settings: Settings,
    *,
    registry: SchemaRegistry | None = None,
    box: SecretBox | None = None,
    log: bool | None = None,
    apply_delay: float = 0.0,
) -> FakePipeline:
    """A fake pipeline with the API (and console) registered on its web app.

    ``log``: None for a worker without a delivery log; True for a log node whose
    indexer is not started (tests write its store); False for a log that is off.
    """
    pipeline = FakePipeline(
        settings=settings,
        app=SimpleNamespace(web=SimpleNamespace(web_app=web.Application())),
        names=TopicNames(settings.topic_prefix),
        registry=registry or SchemaRegistry.from_settings(settings),
        box=box or SecretBox.from_settings(settings),
        subscriptions=SubscriptionIndex(),
        readers=[],
        extras={},
        stats=Counter(),
        sent=[],
        apply_delay=apply_delay,
    )
    if log is not None:
        pipeline.extras["delivery_log"] = DeliveryLog(
            settings, pipeline.names.attempts, enabled=log
        )
    register_api(pipeline)  # type: ignore[arg-type]  # a fake of the fields the API reads
    return pipeline
