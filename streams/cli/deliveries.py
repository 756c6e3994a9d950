"""``streams deliveries``: the delivery log through the management API (list, show, redeliver)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from streams.cli.common import _client, _json_option, _table, fail_cleanly, print_json


def when(value: str | None, now: float | None = None) -> str | None:
    """A time option as the API takes it: a duration (``1h``, ``2d``) means that long
    ago, in unix seconds; RFC 3339 and unix seconds pass as given (the API checks them)."""
    if value is None:
        return None
    from streams.errors import ConfigError
    from streams.retry.schedule import parse_duration

    try:
        ago = parse_duration(value)
    except ConfigError:
        return value
    return f"{(time.time() if now is None else now) - ago:.3f}"


def iso_ms(ts: Any) -> str:
    """Unix seconds as ISO 8601 in UTC, to the millisecond (``2026-04-29T19:12:33.120Z``)."""
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return "" if ts is None else str(ts)


def outcome_text(row: dict[str, Any]) -> str:
    word = {"give_up": "failed", "retry": "retrying"}.get(row.get("outcome") or "", "delivered")
    status = row.get("status")
    return f"{word} {status}" if status is not None else word


def _clip(text: Any, width: int) -> str:
    value = "" if text is None else str(text).replace("\n", " ")
    return value if len(value) <= width else value[: width - 3] + "..."


@click.group()
def deliveries() -> None:
    """The delivery log: what was sent, how each attempt went, and redelivery."""


@deliveries.command("list")
@click.option("--subscription", default=None, help="Only this subscription id.")
@click.option("--tenant", default=None, help="Only this tenant (admin token).")
@click.option(
    "--status",
    default=None,
    help="delivered, failed, retrying, or an HTTP status such as 503.",
)
@click.option("--event-type", default=None, help="Only this event type.")
@click.option(
    "--since",
    default=None,
    help="First attempt at or after: a duration ago (1h, 2d), RFC 3339 or unix seconds.",
)
@click.option("--until", default=None, help="First attempt before (same forms as --since).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, help="The next page: the cursor a list printed.")
@_json_option
@fail_cleanly
def deliveries_list(
    subscription: str | None,
    tenant: str | None,
    status: str | None,
    event_type: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Deliveries, newest first, each with the outcome of its latest attempt."""
    with _client() as client:
        page = client.list_deliveries(
            subscription_id=subscription,
            tenant_id=tenant,
            status=status,
            event_type=event_type,
            since=when(since),
            until=when(until),
            limit=limit,
            cursor=cursor,
        )
    if as_json:
        print_json(page)
        return
    rows = page.get("data") or []
    if not rows:
        click.echo("no deliveries match")
        return
    _table(
        [
            "FIRST ATTEMPT (UTC)",
            "DELIVERY",
            "STATUS",
            "ATTEMPTS",
            "SUBSCRIPTION",
            "EVENT TYPE",
            "LAST ERROR",
        ],
        [
            [
                iso_ms(r.get("first_attempt_at")),
                str(r.get("delivery_id")),
                outcome_text(r),
                str(r.get("attempts")),
                str(r.get("subscription_id")),
                str(r.get("event_type")),
                _clip(r.get("last_error"), 40),
            ]
            for r in rows
        ],
    )
    if page.get("next_cursor"):
        click.echo(f"more: --cursor {page['next_cursor']}")


@deliveries.command("show")
@click.argument("delivery_id")
@_json_option
@fail_cleanly
def deliveries_show(delivery_id: str, as_json: bool) -> None:
    """A delivery and every attempt, oldest first."""
    with _client() as client:
        found = client.show_delivery(delivery_id)
    if as_json:
        print_json(found)
        return
    for label, key in (
        ("delivery", "delivery_id"),
        ("event", "event_id"),
        ("event type", "event_type"),
        ("tenant", "tenant_id"),
        ("subscription", "subscription_id"),
    ):
        click.echo(f"{label:<13}{found.get(key)}")
    click.echo(f"{'status':<13}{outcome_text(found)}")
    click.echo("")
    _table(
        ["#", "AT (UTC)", "OUTCOME", "STATUS", "MS", "REPLAY", "ERROR / RESPONSE"],
        [
            [
                str(a.get("attempt")),
                iso_ms(a.get("at")),
                str(a.get("outcome")) + ("" if a.get("sent", True) else " (not sent)"),
                "" if a.get("status") is None else str(a.get("status")),
                f"{a.get('duration_ms') or 0:.1f}",
                a.get("replay_id") or "",
                _clip(a.get("error") or a.get("response_snippet"), 60),
            ]
            for a in found.get("attempts") or []
        ],
    )


@deliveries.command("redeliver")
@click.argument("delivery_id")
@_json_option
@fail_cleanly
def deliveries_redeliver(delivery_id: str, as_json: bool) -> None:
    """Send a past delivery again: the same body and webhook-id, marked as a replay."""
    with _client() as client:
        queued = client.redeliver(delivery_id)
    if as_json:
        print_json(queued)
        return
    click.echo(
        f"queued {queued.get('delivery_id')} again ({queued.get('replay_id')}): "
        f"`streams deliveries show {queued.get('delivery_id')}` shows the new attempt"
    )
