#!/usr/bin/env python3
"""CPU per event of each step of the fan-out, in-process (issue 22, "per-event cost").

The fan-out agent does, per event: decode and validate the envelope
(``SchemaRegistry.decode``), find the tenant's matching subscriptions
(``SubscriptionIndex.matching``), render one delivery per subscription
(``deliveries_for``: the body once per body format, a delivery id each) and
encode each delivery record (``Delivery.to_bytes``). This times each step on
the event every ``streams bench`` scenario publishes, at fan-out 1 and 10, so
the per-event share of a delivery's CPU is known without Kafka or HTTP in the
way. Producing (``KafkaOutput.send``: one librdkafka ``produce`` call per
record) and the agent's Kafka consumption are not in it.

Bounded: each step runs ``--events`` times per fan-out (at most 1,000,000).

Example:
  python -m streams.tools.bench.fanout_steps --events 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from streams.config import Settings
from streams.fanout.agent import deliveries_for
from streams.records import EventEnvelope, Subscription
from streams.schemas import SchemaRegistry
from streams.subscriptions.index import SubscriptionIndex
from streams.tools.bench.load import EVENT_DATA, EVENT_TYPE

MAX_EVENTS = 1_000_000


def _per_call_us(fn: Callable[[], Any], count: int) -> float:
    """Median of three rounds of ``count`` calls, in process CPU microseconds per call."""
    rounds = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(count):
            fn()
        rounds.append((time.process_time() - started) / count * 1e6)
    return sorted(rounds)[1]


def subscription_record(tenant: str, index: int) -> bytes:
    """A subscription as the compacted topic holds it (what the index applies)."""
    return Subscription(
        id=f"sub_{tenant}_{index:03d}",
        tenant_id=tenant,
        url=f"http://127.0.0.1:9/{tenant}/{index}",
        event_types=[EVENT_TYPE],
    ).to_bytes()


def _steps_after_decode(
    registry: SchemaRegistry, event: EventEnvelope, fanout: int, events: int
) -> dict[str, float]:
    """Match, render and encode for ``fanout`` subscriptions of one tenant, per event."""
    tenant = f"t{fanout}"
    index = SubscriptionIndex()
    for i in range(fanout):
        unusable = index.apply(f"sub_{tenant}_{i:03d}", subscription_record(tenant, i))
        if unusable:
            raise SystemExit(f"the index refused a subscription: {unusable}")
    subs = index.matching(tenant, EVENT_TYPE, include_disabled=True)
    if len(subs) != fanout:
        raise SystemExit(f"the index matched {len(subs)} subscriptions, not {fanout}")
    key = registry.body_key(EVENT_TYPE)
    summary = registry.summary(EVENT_TYPE)

    def render() -> Any:
        return deliveries_for(event, subs, body_key=key, published_at=0.0, now=0.0, summary=summary)

    deliveries = render()
    return {
        "match": _per_call_us(
            lambda: index.matching(tenant, EVENT_TYPE, include_disabled=True), events
        ),
        "render": _per_call_us(render, events),
        "encode_records": _per_call_us(lambda: [d.to_bytes() for d in deliveries], events),
    }


def measure(events: int, fanouts: tuple[int, ...] = (1, 10)) -> dict[str, Any]:
    registry = SchemaRegistry.from_settings(Settings.from_env({}))
    raw = orjson.dumps(
        {
            "id": "evt_bench_0001",
            "type": EVENT_TYPE,
            "tenant_id": "t1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": EVENT_DATA,
        }
    )
    event: EventEnvelope = registry.decode(raw, max_bytes=1_048_576)
    results: dict[str, Any] = {"event_bytes": len(raw), "events": events, "by_fanout": {}}
    decode_us = _per_call_us(lambda: registry.decode(raw, max_bytes=1_048_576), events)
    for fanout in fanouts:
        steps = {
            "decode_validate": decode_us,
            **_steps_after_decode(registry, event, fanout, events),
        }
        total = sum(steps.values())
        results["by_fanout"][fanout] = {
            "us_per_event": {k: round(v, 2) for k, v in steps.items()},
            "us_per_event_total": round(total, 1),
            "us_per_delivery": round(total / fanout, 1),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per step and round")
    args = parser.parse_args(argv)
    if not 1 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be from 1 to {MAX_EVENTS:,}")
    print(json.dumps(measure(args.events), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
