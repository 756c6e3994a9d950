"""The worker's state-topic readers share one consumer; others get their own."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import Settings
from streams.subscriptions import store
from streams.subscriptions.store import CompactedReader, start_readers

SETTINGS = Settings.from_env({"STREAMS_TOPIC_PREFIX": "p."})


def reader(name: str, **kwargs: Any) -> CompactedReader:
    return CompactedReader(SETTINGS, f"p.{name}", lambda key, value: None, name=name, **kwargs)


async def test_alike_readers_share_one_group_and_it_stops_with_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[store._ReaderGroup] = []
    monkeypatch.setattr(store._ReaderGroup, "start", lambda self: started.append(self))
    subs, health, tokens = reader("subscriptions"), reader("health"), reader("tokens")
    log = reader("log", since_s=60.0, batch_wait_ms=500, gates_readiness=False)
    await start_readers([subs, health, log, tokens])
    assert [[r.name for r in g.readers] for g in started] == [
        ["subscriptions", "health", "tokens"],
        ["log"],
    ]
    shared = started[0]
    assert shared.label == "subscriptions+health+tokens"
    assert subs._group is shared
    assert tokens._group is shared
    assert log._group is started[1]
    await subs.stop()
    await health.stop()
    assert shared.active == {tokens}  # still reading for the last one
    await tokens.stop()
    assert not shared.active
    assert tokens._group is None
