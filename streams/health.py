"""Endpoint health: consecutive failures, auto-disable, recovery, and ops events.

The policy is pure (:func:`observe`): given a subscription's failure state and
one attempt, it returns the new state and what to do. Any success resets the
count. A subscription is disabled, with a reason a person understands, when

- the receiver answered ``410 Gone`` (it asked us to stop), or an answer
  that says the endpoint was deleted (``attempt.gone``: Slack's
  ``no_service``, Discord's ``Unknown Webhook``), with that answer's reason, or
- consecutive failed attempts reach ``STREAMS_DISABLE_AFTER_FAILURES``, or
- it has failed continuously for longer than ``STREAMS_DISABLE_AFTER``.

Reasons read like ``5 consecutive 5xx responses``, ``1000 consecutive
timeouts`` or ``failing for 5 days, last error: HTTP 503``.

:class:`HealthMonitor` wires the policy: the state is kept per subscription
and persisted to the compacted ``endpoint.health`` topic, which every worker
reads back; a disable writes the subscription record like an operator's
disable would; and ``endpoint.disabled`` / ``delivery.recovered``
events go to the ``ops`` topic under the subscription's tenant, where
operators and tenants can subscribe to them like to any other event type.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from streams.records import MAX_ERROR_READ_CHARS, Attempt, EventEnvelope, Subscription
from streams.subscriptions.headers import migrate as migrate_headers
from streams.subscriptions.store import CompactedReader

if TYPE_CHECKING:
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FailureState:
    consecutive: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    kinds: tuple[str, ...] = field(default_factory=tuple)  # distinct failure kinds in the run


@dataclass(frozen=True, slots=True)
class Verdict:
    state: FailureState
    disable_reason: str | None = None
    recovered_after: int = 0  # failures before this success (0: nothing to report)


def failure_kind(attempt: Attempt) -> str:
    """A short class of failure for reasons: ``5xx``, ``4xx``, ``timeout``, ``connection``."""
    if attempt.status is not None:
        return f"{attempt.status // 100}xx"
    error = (attempt.error or "").lower()
    if "timeout" in error:
        return "timeout"
    return "connection"


_KIND_WORDS = {"timeout": "timeouts", "connection": "connection failures"}


def _describe_run(n: int, kinds: tuple[str, ...]) -> str:
    if len(kinds) == 1:
        kind = kinds[0]
        return f"{n} consecutive {_KIND_WORDS.get(kind, kind + ' responses')}"
    return f"{n} consecutive failures"


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


def observe(
    state: FailureState,
    attempt: Attempt,
    *,
    max_failures: int,
    max_failing_s: float,
    now: float,
) -> Verdict:
    """The new state after ``attempt``, and whether to disable or report a recovery."""
    if attempt.outcome == "delivered":
        return Verdict(FailureState(), recovered_after=state.consecutive)
    kind = failure_kind(attempt)
    kinds = state.kinds if kind in state.kinds else (*state.kinds, kind)
    new = FailureState(
        consecutive=state.consecutive + 1,
        failing_since=state.failing_since if state.failing_since is not None else attempt.at,
        last_error=attempt.error or (f"HTTP {attempt.status}" if attempt.status else None),
        kinds=kinds[-4:],
    )
    if attempt.status == 410:
        return Verdict(
            new, disable_reason="410 Gone: the endpoint asked to stop receiving webhooks"
        )
    if attempt.gone:
        return Verdict(new, disable_reason=attempt.error or "the endpoint no longer exists")
    if new.consecutive >= max_failures:
        return Verdict(new, disable_reason=_describe_run(new.consecutive, new.kinds))
    assert new.failing_since is not None
    failing_for = now - new.failing_since
    if failing_for >= max_failing_s:
        last = new.last_error or "unknown"
        return Verdict(
            new, disable_reason=f"failing for {_duration(failing_for)}, last error: {last}"
        )
    return Verdict(new)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ops_event(event_type: str, tenant_id: str, data: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        id=f"ops_{uuid.uuid4().hex}",
        type=event_type,
        tenant_id=tenant_id,
        occurred_at=_iso(time.time()) or "",
        data=data,
    )


#: The fields of an ``endpoint.health`` record and the JSON types each may have.
_HEALTH_FIELDS: dict[str, tuple[type, ...]] = {
    "consecutive": (int,),
    "failing_since": (int, float, type(None)),
    "last_error": (str, type(None)),
    "kinds": (list,),
    "at": (int, float),
}


def health_record(raw: bytes) -> dict[str, Any] | None:
    """An ``endpoint.health`` record as :meth:`HealthMonitor.state` reads it, or None when
    it is not one (the engine's outcome hook reads these: a wrong type would raise there)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    for name, types in _HEALTH_FIELDS.items():
        field_value = value.get(name)
        if (
            (name in ("consecutive", "at") and field_value is None)
            or (field_value is not None and not isinstance(field_value, types))
            or isinstance(field_value, bool)
        ):
            return None
    kinds = value.get("kinds") or []
    if (
        value["consecutive"] < 0
        or len(kinds) > 16
        or not all(isinstance(k, str) and len(k) <= 32 for k in kinds)
        or len(value.get("last_error") or "") > MAX_ERROR_READ_CHARS
    ):
        return None
    return value


class HealthMonitor:
    """Keeps failure state per subscription and acts on the verdicts."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        settings = pipeline.settings
        self.max_failures = settings.disable_after_failures
        self.max_failing_s = settings.disable_after_s
        # Failure state per subscription: a dict here, persisted to the compacted
        # `endpoint.health` topic and read back by every worker, like subscriptions.
        # (A Faust table was tried: its memory store replays the changelog at every
        # start, and with it the fan-out intermittently stalled after restarts.)
        self.table: dict[str, dict[str, Any]] = {}
        pipeline.readers.append(
            CompactedReader(settings, pipeline.names.health, self._apply, name="health")
        )

    def _apply(self, sub_id: str, raw: bytes | None) -> str | None:
        if raw is None:
            # A reset read back late must not erase a newer local failure run.
            current = self.table.get(sub_id)
            if current is not None and time.time() - float(current.get("at", 0)) > 60:
                self.table.pop(sub_id, None)
            return None
        value = health_record(raw)
        if value is None:
            return "not an endpoint health record"
        # Read-back of this worker's own writes lags behind them: keep the newer.
        current = self.table.get(sub_id)
        if current is None or value["at"] >= float(current.get("at", 0)):
            self.table[sub_id] = value
        return None

    def state(self, sub_id: str) -> FailureState:
        raw = self.table.get(sub_id)
        if not raw:
            return FailureState()
        return FailureState(
            consecutive=int(raw.get("consecutive", 0)),
            failing_since=raw.get("failing_since"),
            last_error=raw.get("last_error"),
            kinds=tuple(raw.get("kinds", ())),
        )

    def on_attempt(self, sub: Subscription, attempt: Attempt) -> Any:
        """Engine hook: returns a coroutine of extra Kafka futures, or None."""
        if not attempt.sent:
            return None  # skipped by the circuit breaker: no request, no verdict
        before = self.state(sub.id)
        if attempt.outcome == "delivered" and before.consecutive == 0:
            return None  # the hot path: healthy stays healthy, nothing to write
        verdict = observe(
            before,
            attempt,
            max_failures=self.max_failures,
            max_failing_s=self.max_failing_s,
            now=time.time(),
        )
        if verdict.state.consecutive == 0:
            self.table.pop(sub.id, None)
            record = None
        else:
            self.table[sub.id] = {**asdict(verdict.state), "at": time.time()}
            record = orjson.dumps(self.table[sub.id])
        return self._persist_and_act(sub, verdict, before, record)

    async def _persist_and_act(
        self, sub: Subscription, verdict: Verdict, before: FailureState, record: bytes | None
    ) -> list[Any]:
        futures = [await self.p.send(self.p.names.health, sub.id, record)]
        if verdict.disable_reason is None and verdict.recovered_after == 0:
            return futures
        return futures + await self._act(sub, verdict, before)

    async def _act(self, sub: Subscription, verdict: Verdict, before: FailureState) -> list[Any]:
        futures: list[Any] = []
        names = self.p.names
        if verdict.recovered_after:
            event = ops_event(
                "delivery.recovered",
                sub.tenant_id,
                {
                    "subscription_id": sub.id,
                    "failures": verdict.recovered_after,
                    "failing_since": _iso(before.failing_since),
                    "recovered_at": _iso(time.time()),
                },
            )
            futures.append(await self.p.send(names.ops, sub.tenant_id, event.to_bytes()))
        reason = verdict.disable_reason
        current = self.p.subscriptions.get(sub.id)
        if reason is not None and current is not None and current.enabled:
            now = time.time()
            disabled = replace(
                migrate_headers(current, self.p.box),
                state="disabled",
                disabled_reason=reason,
                disabled_at=now,
                updated_at=now,
                version=current.version + 1,
            )
            log.warning(
                "subscription %s disabled: %s",
                sub.id,
                reason,
                extra={"subscription_id": sub.id, "tenant_id": sub.tenant_id},
            )
            self.p.stats["auto_disabled"] += 1
            futures.append(await self.p.send(names.subscriptions, sub.id, disabled.to_bytes()))
            event = ops_event(
                "endpoint.disabled",
                sub.tenant_id,
                {
                    "subscription_id": sub.id,
                    "reason": reason,
                    "automatic": True,
                    "consecutive_failures": verdict.state.consecutive,
                    "failing_since": _iso(verdict.state.failing_since),
                    "last_error": verdict.state.last_error,
                    "disabled_at": _iso(now),
                },
            )
            futures.append(await self.p.send(names.ops, sub.tenant_id, event.to_bytes()))
            self.table.pop(sub.id, None)
            futures.append(await self.p.send(names.health, sub.id, None))
        return futures
