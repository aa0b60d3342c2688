"""``callvault topics``: create and verify every Kafka topic with its required configuration."""

from __future__ import annotations

import dataclasses

import click

from callvault.cli.asyncrun import run
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.topics import Topics, ensure_topics


@click.group()
def topics() -> None:
    """Kafka topics and their configs (retention, compaction)."""


@topics.command("ensure")
@json_option
@click.pass_context
def ensure(ctx: click.Context, as_json: bool) -> None:
    """Create missing topics and restore drifted configs. Safe to run any number of times."""
    settings = get_settings(ctx)
    report = run(ensure_topics(settings))
    if as_json:
        emit_json(dataclasses.asdict(report))
        return
    rows = [(n, "created") for n in report.created] + [
        (n, "config restored") for n in report.updated
    ]
    rows += [(n, "ok") for n in report.unchanged]
    emit_table("Kafka topics", ("topic", "state"), rows)


@topics.command("list")
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Show the topics Callvault expects and their required configuration."""
    specs = Topics(get_settings(ctx)).specs.values()
    if as_json:
        emit_json([dataclasses.asdict(s) for s in specs])
        return
    emit_table(
        "Callvault topics",
        ("topic", "partitions", "config"),
        [(s.name, s.partitions, ", ".join(f"{k}={v}" for k, v in s.config.items())) for s in specs],
    )
