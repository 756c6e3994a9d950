"""What the stages of one worker share: :class:`Pipeline`.

It lives apart from :mod:`streams.app`, which builds it and registers the
stages, so that the stages and the faces (the API) can name its type without
importing the module that wires them: the import arrows all point down
(see ``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import faust

from streams.config import Settings
from streams.kafka.output import KafkaOutput
from streams.kafka.topics import TopicNames
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.secrets import SecretBox
from streams.subscriptions.store import CompactedReader


@dataclass
class Pipeline:
    """Everything the stages of one worker share."""

    settings: Settings
    app: faust.App
    names: TopicNames
    registry: SchemaRegistry
    box: SecretBox
    subscriptions: SubscriptionIndex
    output: KafkaOutput
    readers: list[CompactedReader] = field(default_factory=list)
    topics: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def topic(self, name: str) -> Any:
        """A raw-bytes Faust topic (created by `streams topics create`, never declared)."""
        if name not in self.topics:
            self.topics[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                internal=False,
            )
        return self.topics[name]

    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> Any:
        """Enqueue one record; the returned future resolves when Kafka acknowledges it.

        Written by :class:`~streams.kafka.output.KafkaOutput` (librdkafka), not Faust's producer.
        """
        k = key.encode() if isinstance(key, str) else key
        return await self.output.send(topic, k, value, headers)

    async def ready(self) -> None:
        """Wait until every state topic has been read up to its end at start."""
        await asyncio.gather(*(r.ready.wait() for r in self.readers if r.gates_readiness))

    @property
    def is_ready(self) -> bool:
        return all(r.ready.is_set() for r in self.readers if r.gates_readiness)
