"""Parking: what a stage cannot accept goes to ``events.invalid``, with why and from where.

Every agent that reads a record it cannot process (an event that is not a
valid event, a delivery record that is not a valid delivery, any record
without a value) parks it here and acks it: the agent never stops on a
record, and the record is not lost. The parked copy is the original key and
value, byte for byte, with the reason and the source position in headers
(:class:`~streams.records.ParkedRecord`); ``events.invalid`` is created with
room for that (:func:`~streams.kafka.topics.parked_record_bytes`), and a record
larger still is cut to fit with the size and SHA-256 of what was cut.

The compacted state topics (subscriptions, tokens, endpoint health) and the
delivery log are not parked from: every worker reads them whole at every
start, so parking from there would copy each bad record once per worker and
start. Their readers skip a bad record with a logged reason and count it
(:mod:`streams.subscriptions.store`); it stays in its topic, which is where an
operator looks for it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from streams.kafka.topics import parked_record_bytes
from streams.records import MAX_REASON_CHARS, bounded, park

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)


async def park_record(
    pipeline: Pipeline,
    message: Any,
    value: bytes | None,
    reason: str,
    *,
    key: bytes | None = None,
    field: str = "",
    stat: str = "invalid",
) -> Any:
    """Write the parked copy of one input record; return Kafka's acknowledgement future.

    ``message`` is the input's Kafka message (topic, partition, offset, and when
    the client gives them, key and headers); ``key`` overrides its key.
    """
    if key is None:
        key = getattr(message, "key", None)
    parked = park(
        value,
        key=key,
        headers=getattr(message, "headers", None),
        reason=reason,
        field=field,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        parked_at=time.time(),
        limit=parked_record_bytes(pipeline.settings),
    )
    log.warning(
        "record at %s[%d]@%d parked on %s: %s",
        message.topic,
        message.partition,
        message.offset,
        pipeline.names.events_invalid,
        bounded(reason, MAX_REASON_CHARS),
    )
    pipeline.stats[stat] += 1
    return await pipeline.send(
        pipeline.names.events_invalid, parked.key, parked.value, list(parked.headers)
    )
