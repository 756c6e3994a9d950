"""The in-process view of every subscription, fed from the compacted topic.

The ``subscriptions`` topic is the source of truth. Each worker applies its
records, in log order, to a :class:`SubscriptionIndex`: by id (the delivery
stage, the API) and by tenant with a compiled event-type matcher (the
fan-out). Applying is idempotent and order is the log's, so every worker that
has read up to the same offset holds the same view, and the last write to a
subscription wins everywhere.

The index does no I/O. What feeds it is wiring (:mod:`streams.subscriptions.store`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from streams.errors import DecodeError
from streams.fanout.matching import PatternError, TypeMatcher
from streams.records import MAX_ID_CHARS, Subscription
from streams.schemas import record_error
from streams.tenants import is_reserved

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    sub: Subscription
    matcher: TypeMatcher
    ops_matcher: TypeMatcher  # patterns that may match operational events


def ops_patterns(patterns: list[str]) -> list[str]:
    """Operational events (``endpoint.disabled``, ...) match only patterns that name
    their family: ``endpoint.*`` or ``delivery.recovered`` do, ``*`` and ``*.fired``
    do not, so a subscription to every domain event is not sent operational ones."""
    return [p for p in patterns if not p.startswith("*")]


#: The largest subscription record applied. The API writes a few kilobytes at most
#: (its limits: URL, headers, event types); the bound keeps what the worker writes
#: back (an automatic disable copies the record) far under any record limit.
MAX_SUBSCRIPTION_BYTES = 262_144


def _entry(sub_id: str, raw: bytes) -> Entry:
    """The index entry of one record, or :class:`DecodeError` / :class:`PatternError`.

    Checked against ``schemas/records/subscription.json``: the fan-out and the
    engine use its fields as the API wrote them (a body format, a rate, a
    retry schedule), and a value of another shape would raise there instead.
    """
    if len(raw) > MAX_SUBSCRIPTION_BYTES:
        raise DecodeError(
            f"subscription: {len(raw)} bytes, over the limit of {MAX_SUBSCRIPTION_BYTES}", raw
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"subscription: not JSON ({exc})", raw) from None
    problem = record_error("subscription", obj)
    if problem is not None:
        raise DecodeError(f"subscription: {problem}", raw)
    sub = Subscription.from_dict(obj, raw)
    if sub.id != sub_id or len(sub_id) > MAX_ID_CHARS:
        raise DecodeError("subscription: its id is not its key (at most 200 characters)", raw)
    return Entry(sub, TypeMatcher(sub.event_types), TypeMatcher(ops_patterns(sub.event_types)))


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_id: dict[str, Entry] = {}
        self._by_tenant: dict[str, dict[str, Entry]] = {}
        # asyncio.Event binds no loop until awaited (3.10+), so this is safe off-loop.
        self._changed = asyncio.Event()
        self.applied = 0  # records applied, for readiness and tests
        self.undecodable = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def apply(self, sub_id: str, raw: bytes | None) -> str | None:
        """Apply one record of the compacted topic (``None``: a tombstone, deleted).

        Returns why a record was unusable (the subscription is then absent), or None.
        """
        self.applied += 1
        old = self._by_id.pop(sub_id, None)
        if old is not None:
            tenant = self._by_tenant.get(old.sub.tenant_id)
            if tenant is not None:
                tenant.pop(sub_id, None)
                if not tenant:
                    del self._by_tenant[old.sub.tenant_id]
        if raw is not None:
            try:
                entry = _entry(sub_id, raw)
            except (DecodeError, PatternError) as exc:
                # Never crash the worker on one bad record; it stays visible in the topic.
                # As the latest record of its key it stands for the subscription: none.
                self.undecodable += 1
                self._notify()
                return f"unusable, the subscription is absent: {exc}"
            self._by_id[sub_id] = entry
            self._by_tenant.setdefault(entry.sub.tenant_id, {})[sub_id] = entry
        self._notify()
        return None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, sub_id: str, version: int | None, timeout_s: float) -> bool:
        """Wait until ``sub_id`` is at ``version`` (None: deleted). True if reached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = self._by_id.get(sub_id)
            if (version is None and current is None) or (
                version is not None and current is not None and current.sub.version >= version
            ):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False

    def get(self, sub_id: str) -> Subscription | None:
        entry = self._by_id.get(sub_id)
        return entry.sub if entry is not None else None

    def matching(
        self,
        tenant_id: str,
        event_type: str,
        *,
        operational: bool = False,
        include_disabled: bool = False,
    ) -> list[Subscription]:
        """Subscriptions of ``tenant_id`` whose event types match, in id order.

        Enabled ones only, unless ``include_disabled`` (the fan-out parks
        deliveries of disabled subscriptions rather than dropping them). None for a
        tenant id the platform reserves (:mod:`streams.tenants`): a subscription made
        under one before it was reserved stays listed, so the admin can delete it,
        but is sent nothing (``_platform`` would receive every tenant's replay events).
        """
        if is_reserved(tenant_id):
            return []
        tenant = self._by_tenant.get(tenant_id)
        if not tenant:
            return []
        return [
            e.sub
            for _id, e in sorted(tenant.items())
            if (include_disabled or e.sub.state == "enabled")
            and (e.ops_matcher if operational else e.matcher).matches(event_type)
        ]

    def all(
        self, *, tenant_id: str | None = None, state: str | None = None
    ) -> Iterator[Subscription]:
        source = (
            self._by_tenant.get(tenant_id, {}).values()
            if tenant_id is not None
            else self._by_id.values()
        )
        for entry in sorted(source, key=lambda e: e.sub.created_at):
            if state is None or entry.sub.state == state:
                yield entry.sub

    def count(self, tenant_id: str) -> int:
        """How many subscriptions ``tenant_id`` has, in any state (its quota's measure)."""
        return len(self._by_tenant.get(tenant_id, ()))

    def counts_by_state(self) -> dict[str, int]:
        out = {"enabled": 0, "disabled": 0}
        for entry in self._by_id.values():
            out[entry.sub.state] = out.get(entry.sub.state, 0) + 1
        return out
