"""``streams log``: this node's delivery-log store (rebuild it, see its state)."""

from __future__ import annotations

import sys

import click

from streams.cli.common import _iso, fail_cleanly, print_json, settings_from_env


@click.group("log")
def log_group() -> None:
    """The delivery-log store of this node (STREAMS_LOG_DIR)."""


@log_group.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask before deleting the store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@fail_cleanly
def log_rebuild(yes: bool, as_json: bool) -> None:
    """Delete the store and index the attempts topic into it again.

    Stop the log node that uses this store first (the command refuses while it
    runs). The topic is the source of truth: nothing is lost, and the rebuilt
    store answers as the old one did, for what the topic still holds.
    """
    from streams.kafka.topics import TopicNames
    from streams.log.indexer import rebuild, store_lock

    settings = settings_from_env()
    path = settings.log_path
    with store_lock(path):  # a running log node: say so before asking anything
        pass
    if not yes and path.exists():
        click.confirm(f"delete {path} and rebuild it from the attempts topic?", abort=True)
    with click.progressbar(
        length=1, label="indexing attempts", file=sys.stderr, show_pos=True, show_percent=True
    ) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        result = rebuild(
            settings, TopicNames(settings.topic_prefix).attempts, path, progress=progress
        )
    view = {
        "store": str(path),
        "records": result.records,
        "attempts": result.attempts,
        "deliveries": result.deliveries,
        "skipped": result.skipped,
        "seconds": round(result.seconds, 1),
    }
    if as_json:
        print_json(view)
        return
    click.echo(
        f"rebuilt {path}: {result.attempts} attempts of {result.deliveries} deliveries from "
        f"{result.records} records in {result.seconds:.1f}s"
        + (f" ({result.skipped} undecodable records skipped)" if result.skipped else "")
    )


@log_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def log_status(as_json: bool) -> None:
    """What the store holds: attempts, deliveries, oldest attempt, size, positions."""
    from streams.errors import StreamsError
    from streams.log.store import LogReader

    settings = settings_from_env()
    path = settings.log_path
    if not path.exists():
        raise StreamsError(
            f"no delivery-log store at {path}: a log node creates it when it starts "
            "(or run `streams log rebuild`)"
        )
    reader = LogReader(path)
    try:
        view = {
            "store": str(path),
            **reader.figures(None),
            **reader.layout(),
            "disk_bytes": reader.disk_bytes(),
            "positions": reader.positions(),
            "skipped": reader.skipped(),
        }
    finally:
        reader.close()
    if as_json:
        print_json(view)
        return
    click.echo(f"store       {path}")
    click.echo(f"attempts    {view['attempts']} of {view['deliveries']} deliveries")
    click.echo(f"oldest      {_iso(view['oldest_at']) or '-'}")
    click.echo(f"disk        {view['disk_bytes'] / 1e6:.1f} MB")
    ids = view["id_index"]
    click.echo(
        f"schema      {view['schema_version']}; id index: {ids['merged']} keys merged, "
        f"{ids['waiting']} waiting (merged a range per batch from {ids['merge_at']})"
    )
    hours = view["hours_open_from"]
    click.echo(
        "statistics  "
        + (
            f"hours before {_iso(hours)} written; later ones read from their minutes"
            if hours
            else "no attempt counted yet"
        )
    )
    saved = view["key_filter_saved"]
    click.echo(
        "key filter  "
        + (
            f"saved by the last log node to stop cleanly ({saved:,} keys): the next start loads it"
            if saved is not None
            else "none saved: a log node builds it from the id index when it starts"
        )
    )
    positions = view["positions"]
    click.echo(
        "positions   "
        + (", ".join(f"{p}:{o}" for p, o in sorted(positions.items())) or "(nothing read)")
    )
    for row in view["skipped"]:
        click.echo(f"skipped     {row['partition']}:{row['offset']}  {row['reason']}")
