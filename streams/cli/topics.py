"""``streams topics``: create and list the pipeline's topics."""

from __future__ import annotations

import click

from streams.cli.common import fail_cleanly, print_json, settings_from_env


@click.group()
def topics() -> None:
    """Topics of the pipeline."""


@topics.command("create")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def topics_create(as_json: bool) -> None:
    """Create every topic the pipeline uses; existing ones are left alone."""
    from streams.kafka.topics import create_topics

    result = create_topics(settings_from_env())
    if as_json:
        print_json(result)
        return
    for name, state in sorted(result.items()):
        click.echo(f"{state:8} {name}")


@topics.command("list")
@fail_cleanly
def topics_list() -> None:
    """List the topics the pipeline uses, with partitions and configuration."""
    from streams.kafka.topics import topic_specs

    for spec in topic_specs(settings_from_env()):
        conf = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        click.echo(f"{spec.name}  partitions={spec.partitions}  {conf}")
