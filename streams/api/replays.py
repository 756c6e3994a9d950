"""Replays of dead letters run by this worker: who may start one, cancel, resume, shutdown.

``POST /v1/dlq/replay`` starts a replay in a thread of its own (a slow one
never takes the threads the listing and stats routes need). One worker runs at
most ``STREAMS_REPLAY_SLOTS`` of them, shared so that no tenant can lock the
others, or the admin, out (:func:`refusal`): a tenant runs at most
``STREAMS_REPLAYS_PER_TENANT`` at once, and tenants together leave one slot
free, which only the admin can take. Before, one tenant could take all four
slots with ``force`` and ``rate: 0.01`` for as long as it liked.

``DELETE /v1/dlq/replays/{id}`` cancels one (whoever may see it may cancel
it); ``POST /v1/dlq/replays/{id}/resume`` runs a stopped one again under the
same id, sending only what it had not sent. When the worker stops, every
running replay is interrupted, records where it stopped
(:mod:`streams.deadletter.replay`), and the shutdown waits for that at most
:data:`SHUTDOWN_WAIT_S`: the threads are daemons, so nothing else holds the
process (a replay at ``rate: 0.01`` kept it alive for minutes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streams.api.auth import Principal, visible
from streams.api.http import parse_flag
from streams.deadletter import replay as dlq
from streams.deadletter.scan import Stop, Stopped
from streams.errors import ConflictError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from streams.config import Settings
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Finished replays whose summaries this worker keeps in memory (all are in Kafka).
KEPT_REPLAYS = 1000
#: Slowest replay rate accepted (the CLI's bound too): one letter per 100 s.
MIN_REPLAY_RATE = 0.01
#: How long a stopping worker waits for its replays to record where they stopped.
SHUTDOWN_WAIT_S = 10.0
#: How long ``DELETE`` waits for the replay to stop before answering 202.
CANCEL_WAIT_S = 5.0
#: Fields of the ``POST /v1/dlq/replay`` body.
REPLAY_FIELDS = frozenset(
    {"subscription_id", "tenant_id", "event_type", "reason", "since", "until"}
    | {"force", "rate", "dry_run"}
)


def stopping(pipeline: Pipeline) -> Stop:
    """The worker's stop signal for Kafka reads in threads, set when it shuts down (one per
    worker, made on first use; ``pipeline.extras["stopping"]``)."""
    found = pipeline.extras.get("stopping")
    if not isinstance(found, Stop):
        found = pipeline.extras["stopping"] = Stop()
    return found


def refusal(
    running: Iterable[str | None], owner: str | None, *, slots: int, per_tenant: int
) -> str | None:
    """Why a replay started by ``owner`` may not run now, or None when it may.

    ``running``: the owner of every replay running on this worker; an owner is
    the tenant whose token started it, None for the admin. Tenants together
    take at most ``slots - 1`` slots (one is kept for the admin), and each at
    most ``per_tenant``; the admin only needs a free slot.
    """
    owners = list(running)
    if len(owners) >= slots:
        return (
            f"{len(owners)} replays are running on this worker (at most {slots}, "
            "STREAMS_REPLAY_SLOTS): wait for one to finish (GET /v1/dlq/replays/{id})"
        )
    if owner is None:
        return None
    if sum(1 for o in owners if o == owner) >= per_tenant:
        return (
            f"tenant {owner} already runs {per_tenant} replay(s) on this worker (at most "
            f"{per_tenant}, STREAMS_REPLAYS_PER_TENANT): wait for it to finish, or cancel it "
            "(DELETE /v1/dlq/replays/{id})"
        )
    if sum(1 for o in owners if o is not None) >= slots - 1:
        return (
            f"tenants' replays hold {slots - 1} of the {slots} slots of this worker; the last "
            "one is kept for the platform admin: try again when one finishes"
        )
    return None


@dataclass
class Run:
    """A replay this worker started: its summary, whose it is, how to stop it."""

    summary: dlq.ReplaySummary
    owner: str | None  # the tenant whose token started it; None: the admin
    stop: Stop
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class ReplayRoutes:
    """The replay half of ``/v1/dlq``: start, show, cancel, resume; stop all at shutdown."""

    def __init__(
        self,
        settings: Settings,
        stopping: Stop,
        make_filter: Callable[[Principal, Any], dlq.DlqFilter],
    ) -> None:
        self.settings = settings
        self.stopping = stopping  # the worker's: set when it shuts down
        self.make_filter = make_filter
        self.runs: dict[str, Run] = {}

    # -- starting -----------------------------------------------------------------------

    async def start_for(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """A dry run's counts (status ``dry_run``), or a replay started (status ``running``)."""
        unknown = set(body) - REPLAY_FIELDS
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequestError(
                f"`{field}`: unknown field; allowed: {', '.join(sorted(REPLAY_FIELDS))}",
                field=field,
            )
        flt = self.make_filter(
            who,
            {
                k: (str(v) if k in ("since", "until") and isinstance(v, (int, float)) else v)
                for k, v in body.items()
            },
        )
        rate = body.get("rate")
        if rate is not None and (
            not isinstance(rate, (int, float))
            or isinstance(rate, bool)
            or not MIN_REPLAY_RATE <= rate < float("inf")
        ):
            raise InvalidRequestError(
                f"`rate`: replays per second, a number of at least {MIN_REPLAY_RATE:g}",
                field="rate",
            )
        force = parse_flag(body, "force")
        dry_run = parse_flag(body, "dry_run")
        owner = None if who.admin else who.tenant_id
        if not dry_run:
            self._admit(owner)  # before counting: a refused request costs no scan
        counted = await self._count(flt, force=force)
        if dry_run:
            return {**counted.as_dict(), "status": "dry_run"}
        summary = dlq.ReplaySummary(replay_id=dlq.new_replay_id(), started_at=time.time())
        self._start(summary, flt, owner, force=force, rate=rate, counted=counted, resume=False)
        return {
            "replay_id": summary.replay_id,
            "matched": counted.matched,
            "total": counted.total,
            "to_send": counted.to_send,
            "status": "running",
        }

    async def resume_for(self, who: Principal, replay_id: str) -> dict[str, Any]:
        """Run a cancelled, interrupted or failed replay again under the same id."""
        found = await self.lookup(who, replay_id)
        run = self.runs.get(replay_id)
        if run is not None and run.running:
            raise ConflictError(f"replay {replay_id} is running: nothing to resume")
        if found.lost(time.time()):
            found.status = "interrupted"
        elif found.status not in dlq.RESUMABLE:
            raise ConflictError(
                f"replay {replay_id} is {found.status}"
                + (
                    " on another worker (were that worker to die, it would show as "
                    f"interrupted {dlq.LOST_AFTER_S:g} s after its last summary)"
                    if found.status == "running"
                    else ""
                )
                + f": only a {', '.join(dlq.RESUMABLE)} replay can be resumed"
            )
        owner = None if who.admin else who.tenant_id
        self._admit(owner)
        flt = found.filter()
        force = bool(found.request.get("force"))
        rate = found.request.get("rate")
        counted = await self._count(flt, force=force, replay_id=replay_id)
        found.resumes += 1
        self._start(found, flt, owner, force=force, rate=rate, counted=counted, resume=True)
        return {**found.as_dict(), "status": "running"}

    def _admit(self, owner: str | None) -> None:
        why = refusal(
            [r.owner for r in self.runs.values() if r.running],
            owner,
            slots=self.settings.replay_slots,
            per_tenant=self.settings.replays_per_tenant,
        )
        if why is not None:
            raise ConflictError(why)

    async def _count(
        self, flt: dlq.DlqFilter, *, force: bool, replay_id: str | None = None
    ) -> dlq.ReplaySummary:
        return await asyncio.to_thread(
            dlq.replay,
            self.settings,
            flt,
            dry_run=True,
            force=force,
            replay_id=replay_id,
            resume=replay_id is not None,
            stop=self.stopping,
        )

    def _start(
        self,
        summary: dlq.ReplaySummary,
        flt: dlq.DlqFilter,
        owner: str | None,
        *,
        force: bool,
        rate: float | None,
        counted: dlq.ReplaySummary,
        resume: bool,
    ) -> None:
        # Checked again with no await since the count: two requests cannot both pass.
        self._admit(owner)
        summary.status = "running"
        summary.total, summary.to_send = counted.total, counted.to_send
        summary.tenant_id = flt.tenant_id
        run = Run(summary=summary, owner=owner, stop=Stop())
        if self.stopping.is_set():
            run.stop.set("interrupted")

        def work() -> None:
            try:
                dlq.replay(
                    self.settings,
                    flt,
                    force=force,
                    rate=rate,
                    summary=summary,
                    stop=run.stop,
                    resume=resume,
                    counted=counted,
                )
            except Stopped as exc:  # stopped before its first letter
                summary.status = exc.reason
                summary.finished_at = time.time()
            except Exception as exc:
                summary.status = "failed"
                summary.error = str(exc)
                summary.finished_at = time.time()
            if summary.status == "failed":
                log.error("replay %s failed: %s", summary.replay_id, summary.error)
            else:
                log.info("replay %s: %s", summary.replay_id, summary.message())

        run.thread = threading.Thread(
            target=work, name=f"dlq-replay-{summary.replay_id}", daemon=True
        )
        self.runs[summary.replay_id] = run
        self._forget_old()
        run.thread.start()

    def _forget_old(self) -> None:
        """Keep every running replay and the newest KEPT_REPLAYS others."""
        ended = [k for k, r in self.runs.items() if not r.running]
        for key in ended[: max(0, len(ended) - KEPT_REPLAYS)]:
            del self.runs[key]

    # -- showing, cancelling ------------------------------------------------------------------

    @staticmethod
    def may_see(who: Principal, summary: dlq.ReplaySummary) -> bool:
        # A platform-wide replay (no tenant) is the admin's alone.
        return who.admin or (summary.tenant_id is not None and visible(who, summary.tenant_id))

    async def lookup(self, who: Principal, replay_id: str) -> dlq.ReplaySummary:
        """The replay's summary: this worker's live one, else the latest written to Kafka."""
        run = self.runs.get(replay_id)
        found = run.summary if run is not None else None
        if found is None and replay_id.startswith("rpl_") and len(replay_id) <= 64:
            found = await asyncio.to_thread(
                dlq.load_summary, self.settings, replay_id, stop=self.stopping
            )
        if found is None or not self.may_see(who, found):
            raise NotFoundError(f"no replay {replay_id}")
        return found

    async def status_for(self, who: Principal, replay_id: str) -> dict[str, Any]:
        found = await self.lookup(who, replay_id)
        if replay_id not in self.runs and found.lost(time.time()):
            found = dataclasses.replace(
                found,
                status="interrupted",
                stopped_at=found.position,
                error="its worker stopped without recording where; last heard at "
                + dlq.iso_time(found.updated_at),
            )
        return found.as_dict()

    def replay_for(self, who: Principal, replay_id: str) -> dict[str, Any]:
        """This worker's replay (the console's progress): NotFoundError if not here or not
        ``who``'s."""
        run = self.runs.get(replay_id)
        if run is None or not self.may_see(who, run.summary):
            raise NotFoundError("no replay with that id on this worker")
        return run.summary.as_dict()

    def visible_to(self, who: Principal) -> list[dict[str, Any]]:
        """The replays this worker ran that ``who`` may see, newest first."""
        mine = [r.summary.as_dict() for r in self.runs.values() if self.may_see(who, r.summary)]
        return sorted(mine, key=lambda r: -float(r["started_at"]))

    async def cancel_for(self, who: Principal, replay_id: str) -> tuple[dict[str, Any], bool]:
        """Cancel a running replay; (its summary, whether it has stopped already)."""
        run = self.runs.get(replay_id)
        if run is None:
            found = await self.lookup(who, replay_id)  # NotFoundError unless visible
            if found.status == "running" and not found.lost(time.time()):
                raise ConflictError(
                    f"replay {replay_id} runs on another worker: send this request to the "
                    "worker that started it"
                )
            raise ConflictError(f"replay {replay_id} is not running ({found.status})")
        if not self.may_see(who, run.summary):
            raise NotFoundError(f"no replay {replay_id}")
        if not run.running:
            raise ConflictError(f"replay {replay_id} is not running ({run.summary.status})")
        run.stop.set("cancelled")
        stopped = await self._join([run], CANCEL_WAIT_S)
        return run.summary.as_dict(), stopped

    # -- shutdown -----------------------------------------------------------------------------

    async def stop_all(self, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """Interrupt every running replay; wait (bounded) until each has recorded where."""
        self.stopping.set("interrupted")
        running = [r for r in self.runs.values() if r.running]
        for run in running:
            run.stop.set("interrupted")
        if running and not await self._join(running, timeout_s):
            log.warning(
                "%d replay(s) did not record where they stopped within %gs; a resume sends "
                "only what Kafka did not confirm as replayed",
                sum(1 for r in running if r.running),
                timeout_s,
            )

    @staticmethod
    async def _join(runs: list[Run], timeout_s: float) -> bool:
        """Wait until every one of ``runs`` has ended, at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        for run in runs:
            if run.thread is not None:
                await asyncio.to_thread(run.thread.join, max(0.0, deadline - time.monotonic()))
        return not any(r.running for r in runs)
