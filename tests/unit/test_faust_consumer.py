"""The worker's Faust consumer fetches with a short broker wait (streams.faust_consumer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.app import faust_settings
from streams.config import Settings
from streams.faust_consumer import FETCH_MAX_WAIT_MS, App
from streams.output import KafkaOutput


def _app(tmp_path: Path) -> App:
    settings = Settings.from_env(
        {"STREAMS_STATE_DIR": str(tmp_path), "STREAMS_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )
    return App("test-fetch-wait", **faust_settings(settings))


async def test_the_worker_consumer_is_built_with_the_short_fetch_wait(tmp_path: Path) -> None:
    app = _app(tmp_path)
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    try:
        # Faust alone would build it with 1500 ms.
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
        assert FETCH_MAX_WAIT_MS <= 200
        # Nothing else of Faust's consumer configuration changed.
        assert consumer._group_id == "test-fetch-wait"
        assert consumer._enable_auto_commit is False
    finally:
        await consumer.stop()


def test_producer_linger_setting_is_bounded() -> None:
    assert Settings.from_env({}).kafka_linger_ms == 8
    assert Settings.from_env({"STREAMS_KAFKA_LINGER_MS": "0"}).kafka_linger_ms == 0
    for bad in ("-1", "1001", "2.5", "soon"):
        with pytest.raises(Exception, match="STREAMS_KAFKA_LINGER_MS"):
            Settings.from_env({"STREAMS_KAFKA_LINGER_MS": bad})


def test_the_worker_producer_uses_the_linger_setting() -> None:
    settings = Settings.from_env({"STREAMS_KAFKA_LINGER_MS": "25"})
    output = KafkaOutput(settings)
    try:
        assert output.linger_ms == 25
    finally:
        output._producer.flush(0)
