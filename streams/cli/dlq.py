"""``streams dlq``: list and replay dead letters."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import click

from streams.cli.common import F, _iso, _table, fail_cleanly, print_json, settings_from_env


def _dlq_filter(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> Any:
    from streams.api.deliveries import parse_time
    from streams.deadletter.replay import DlqFilter

    return DlqFilter(
        subscription_id=subscription,
        tenant_id=tenant,
        event_type=event_type,
        reason=reason,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )


def dlq_filters(fn: F) -> F:
    for decorator in reversed(
        [
            click.option("--subscription", default=None, help="Only this subscription id."),
            click.option("--tenant", default=None, help="Only this tenant."),
            click.option("--event-type", default=None, help="Only this event type."),
            click.option(
                "--reason",
                default=None,
                type=click.Choice(
                    [
                        "exhausted",
                        "not_retryable",
                        "subscription_disabled",
                        "subscription_deleted",
                        "gone",
                    ]
                ),
                help="Only dead letters parked for this reason.",
            ),
            click.option(
                "--since", default=None, help="From this time (RFC 3339 or unix seconds)."
            ),
            click.option(
                "--until", default=None, help="Before this time (RFC 3339 or unix seconds)."
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


@click.group()
def dlq() -> None:
    """The dead-letter topic: list and replay parked deliveries."""


@dlq.command("list")
@dlq_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def dlq_list(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dead letters matching the filters (oldest first per partition)."""
    from streams.deadletter.replay import find, letter_view

    flt = _dlq_filter(subscription, tenant, event_type, reason, since, until)
    rows = []
    for found, letter in find(settings_from_env(), flt):
        rows.append(letter_view(found, letter))
        if len(rows) >= limit:
            break
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no dead letters match")
        return
    _table(LIST_HEADERS, [list_row(row) for row in rows])


#: The columns of ``dlq list`` (``--json`` has every field of ``letter_view``).
LIST_HEADERS = (
    "PARKED AT",
    "POSITION",
    "REASON",
    "SUBSCRIPTION",
    "EVENT TYPE",
    "ATTEMPTS",
    "LAST ANSWER",
)


LAST_WIDTH = 80


def list_row(row: dict[str, Any]) -> list[str]:
    """One dead letter as the cells of :data:`LIST_HEADERS`."""
    status, error = row.get("last_status"), row.get("last_error")
    last = f"HTTP {status}" if status is not None else (error or "")
    if len(last) > LAST_WIDTH:  # a whole error would stretch every row (--json has it all)
        last = last[: LAST_WIDTH - 3] + "..."
    return [
        _iso(row.get("dead_lettered_at")),
        str(row.get("position", "")),
        str(row.get("reason", "")),
        str(row.get("subscription_id") or ""),
        str(row.get("event_type") or ""),
        str(row.get("attempts", "")),
        str(last),
    ]


def _finite(value: float | None, option: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a number", param_hint=f"'{option}'")
    return value


@dlq.command("replay")
@dlq_filters
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01, max=1e9),  # nan passes both bounds: _finite refuses it
    callback=lambda ctx, param, value: _finite(value, "--rate"),
    default=None,
    help="Replays per second at most.",
)
@click.option("--force", is_flag=True, help="Replay dead letters already replayed before, again.")
@click.option(
    "--resume",
    "resume_id",
    metavar="ID",
    default=None,
    help="Go on with replay ID where it stopped (cancelled, interrupted or failed), with its "
    "filters; what it sent is not sent again.",
)
@click.option(
    "--cancel",
    "cancel_id",
    metavar="ID",
    default=None,
    help="Cancel replay ID, running in a worker (through the management API).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@fail_cleanly
def dlq_replay(
    subscription: str | None,
    tenant: str | None,
    event_type: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    rate: float | None,
    force: bool,
    resume_id: str | None,
    cancel_id: str | None,
    as_json: bool,
) -> None:
    """Re-send matching dead letters with their original webhook-id, marked as replays.

    It counts first, then shows a bar that moves with every letter. Ctrl-C (or
    SIGTERM) stops it between two letters and says where; `--resume ID` goes on
    from there. A replay started through the API runs in a worker: `--cancel ID`
    stops it there.
    """
    filters = (subscription, tenant, event_type, reason, since, until)
    if cancel_id is not None:
        if any(v is not None for v in filters) or dry_run or force or resume_id or rate:
            raise click.UsageError("--cancel takes a replay id and no other option but --json")
        _cancel(cancel_id, as_json)
        return
    from streams.deadletter.replay import replay
    from streams.deadletter.scan import Stop, Stopped

    settings = settings_from_env()
    if resume_id is not None:
        if any(v is not None for v in filters) or force:
            raise click.UsageError(
                "--resume takes the filters and --force of the replay it resumes: give only "
                "--rate, --dry-run or --json with it"
            )
        summary, flt = _resumable(settings, resume_id)
        force = bool(summary.request.get("force"))
        if rate is None:
            rate = summary.request.get("rate")
    else:
        summary, flt = None, _dlq_filter(*filters)
    stop = Stop()
    with _stopped_by_signals(stop) as signalled:
        try:
            with _Bar("counting") as counting:
                counted = replay(
                    settings,
                    flt,
                    dry_run=True,
                    force=force,
                    replay_id=resume_id,
                    resume=resume_id is not None,
                    scan_progress=counting.update,
                    stop=stop,
                )
            if dry_run:
                _print_summary(counted, as_json, dry_run=True)
                return
            with _Bar("replaying") as sending:
                summary = replay(
                    settings,
                    flt,
                    force=force,
                    rate=rate,
                    summary=summary,
                    resume=resume_id is not None,
                    counted=counted,
                    progress=sending.update,
                    stop=stop,
                )
        except Stopped:  # before the first letter: while counting, or reading what was sent
            click.echo("interrupted before the first letter: nothing was sent", err=True)
            sys.exit(128 + (signalled[0] if signalled else signal.SIGINT))
    _print_summary(summary, as_json, dry_run=False)
    if summary.status == "failed":
        sys.exit(1)
    if summary.status in ("cancelled", "interrupted"):
        sys.exit(128 + (signalled[0] if signalled else signal.SIGINT))


class _Bar:
    """A progress bar on stderr that appears at its first update: a command that fails
    before (Kafka unreachable) prints its one error line and nothing else."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._stack = ExitStack()
        self._bar: Any = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = self._stack.enter_context(
                click.progressbar(
                    length=max(total, 1), label=self.label, file=sys.stderr, show_pos=True
                )
            )
        self._bar.length = max(total, 1)
        self._bar.update(done - self._bar.pos)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _print_summary(summary: Any, as_json: bool, *, dry_run: bool) -> None:
    if as_json:
        print_json(summary.as_dict())
        return
    if dry_run:
        click.echo(
            f"{summary.replay_id}: matched {summary.matched}, would replay {summary.to_send}, "
            f"skipped {summary.skipped} already replayed"
            + (" (use --force to send them again)" if summary.skipped else "")
        )
        return
    if summary.status == "finished":
        click.echo(
            f"{summary.replay_id}: matched {summary.matched}, replayed {summary.replayed}, "
            f"skipped {summary.skipped} already replayed"
            + (" (use --force to send them again)" if summary.skipped else "")
        )
        return
    click.echo(f"{summary.replay_id}: {summary.message()}")


def _resumable(settings: Any, replay_id: str) -> tuple[Any, Any]:
    """The summary and filter of a replay that may be resumed; one clear error otherwise."""
    import time

    from streams.deadletter.replay import RESUMABLE, load_summary
    from streams.errors import ConflictError, NotFoundError

    found = load_summary(settings, replay_id)
    if found is None:
        raise NotFoundError(
            f"no replay {replay_id} in {settings.topic_prefix}deliveries.dlq.replays (same "
            "STREAMS_TOPIC_PREFIX?)"
        )
    if found.lost(time.time()):
        found.status = "interrupted"
    if found.status not in RESUMABLE:
        raise ConflictError(
            f"replay {replay_id} is {found.status}: only a {', '.join(RESUMABLE)} replay "
            "can be resumed" + (" (cancel it first: --cancel)" if found.status == "running" else "")
        )
    found.resumes += 1
    return found, found.filter()


def _cancel(replay_id: str, as_json: bool) -> None:
    from streams.cli.common import _client

    with _client() as client:
        view = client.cancel_replay(replay_id)
    if as_json:
        print_json(view)
        return
    if view.get("status") == "running":
        click.echo(f"{replay_id}: cancelling (it stops after the letter it is sending)")
    else:
        click.echo(f"{replay_id}: {view.get('message') or view.get('status')}")


@contextmanager
def _stopped_by_signals(stop: Any) -> Iterator[list[int]]:
    """Ctrl-C or SIGTERM stops the replay between two letters (it records where); a second
    Ctrl-C interrupts at once. Yields the signals received."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        stop.set("interrupted")
        click.echo("stopping after the current letter (Ctrl-C again to quit at once)", err=True)

    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, previous in before.items():
            signal.signal(s, previous)
