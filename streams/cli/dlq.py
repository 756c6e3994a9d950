"""``streams dlq``: list and replay dead letters."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from streams.cli.common import F, fail_cleanly, print_json, settings_from_env


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
    for row in rows:
        click.echo(
            f"{row['position']:>10}  {row['reason']:<22} {row['subscription_id']}  "
            f"{row['event_type']}  attempts={row['attempts']}  "
            f"last={row['last_status'] or row['last_error']}"
        )


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
    as_json: bool,
) -> None:
    """Re-send matching dead letters with their original webhook-id, marked as replays."""
    from streams.deadletter.replay import replay

    flt = _dlq_filter(subscription, tenant, event_type, reason, since, until)
    with click.progressbar(length=1, label="scanning", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        summary = replay(
            settings_from_env(), flt, dry_run=dry_run, force=force, rate=rate, progress=progress
        )
    if as_json:
        print_json(summary.as_dict())
        return
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"{summary.replay_id}: matched {summary.matched}, {verb} "
        f"{summary.matched - summary.skipped if dry_run else summary.replayed}, "
        f"skipped {summary.skipped} already replayed"
        + (" (use --force to send them again)" if summary.skipped else "")
    )
