"""``streams publish``: validate one event and publish it."""

from __future__ import annotations

import click

from streams.cli.common import fail_cleanly, print_json, settings_from_env


@click.command("publish")
@click.option("--type", "event_type", required=True, help="Event type, e.g. prospect.added.")
@click.option("--tenant", required=True, help="Tenant id (the Kafka key).")
@click.option("--data", required=True, help="The event's data: JSON text, or @file.json.")
@click.option("--id", "event_id", default=None, help="Event id (default: a new one).")
@click.option("--tenant-name", default=None, help="Tenant display name (keyed body shape).")
@click.option("--occurred-at", default=None, help="RFC 3339 time (default: now).")
@fail_cleanly
def publish_cmd(
    event_type: str,
    tenant: str,
    data: str,
    event_id: str | None,
    tenant_name: str | None,
    occurred_at: str | None,
) -> None:
    """Validate one event against schemas/ and publish it; print where it landed."""
    from streams.errors import InvalidEventError
    from streams.publish import EventPublisher, load_json_arg

    payload = load_json_arg(data)
    if not isinstance(payload, dict):
        raise InvalidEventError("--data must be a JSON object (the event's `data`)")
    settings = settings_from_env()
    with EventPublisher(settings) as publisher:
        event = publisher.build(
            event_type,
            tenant,
            payload,
            event_id=event_id,
            tenant_name=tenant_name,
            occurred_at=occurred_at,
        )
        publisher.encode(event)  # bad input is refused before Kafka is asked anything
        # A missing events topic is said in a fraction of a second, with the command
        # that creates it; the send itself would wait 30 s and say "Message timed out".
        publisher.connect()
        (published,) = publisher.publish_many([event])
    print_json(
        {
            "id": published.event.id,
            "type": published.event.type,
            "topic": published.topic,
            "partition": published.partition,
            "offset": published.offset,
        }
    )
