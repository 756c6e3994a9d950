"""How the API writes a record it must not leave half-done: ask Kafka, write, wait bounded.

A record handed to the producer while the broker is away is queued and written
whenever the broker comes back (up to five minutes later), long after the caller
was told the request failed: a subscription created, or a token issued, whose
secret nobody saw. So every write of the API asks Kafka first and answers 503
having written nothing when it does not answer, and answers 503 (saying the write
may still land) when Kafka does not confirm it in time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from streams.errors import KafkaUnavailableError

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

#: How long a write asks Kafka whether it answers before writing anything.
KAFKA_CHECK_TIMEOUT_S = 2.0
#: How long a write waits for Kafka's acknowledgement before answering 503. The CLI
#: gives up after 10 s; the check, this wait and the read-back must fit in that.
CONFIRM_TIMEOUT_S = 5.0


async def write(
    pipeline: Pipeline, topic: str, key: str, value: bytes | None, *, check_with: str
) -> None:
    """Write one record and wait for Kafka's acknowledgement, or raise
    :class:`KafkaUnavailableError` (503). ``check_with``: how the caller can learn
    whether a write that was not confirmed in time landed after all."""
    await pipeline.output.check_reachable(topic, KAFKA_CHECK_TIMEOUT_S)
    confirm = await pipeline.send(topic, key, value)
    try:
        await asyncio.wait_for(asyncio.shield(confirm), CONFIRM_TIMEOUT_S)
    except TimeoutError:
        raise KafkaUnavailableError(
            f"Kafka has not confirmed the write of {key} within {CONFIRM_TIMEOUT_S:g}s; "
            f"it may still be applied: {check_with}"
        ) from None
