"""``callvault demo``: the whole slice on the local stack, ending with where the data landed."""

from __future__ import annotations

import random

import click

from callvault.analytics_client import AnalyticsQueryError, query
from callvault.cli.asyncrun import run
from callvault.cli.main import get_settings
from callvault.cli.output import emit_table
from callvault.control.workspaces import WorkspaceDirectory
from callvault.errors import ControlError
from callvault.settings import Settings
from callvault.simulate import publish_events, simulated_calls
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, wait_caught_up
from streams.app import app_id


def _say(msg: str) -> None:
    click.secho(f"==> {msg}", fg="cyan", err=True)


@click.command()
@click.option("--workspace", "workspace_id", default="demo-eu", show_default=True)
@click.option("--calls", type=click.IntRange(1, 10_000), default=5, show_default=True)
@click.option("--keep-worker", is_flag=True, help="Leave the stream worker running afterwards.")
@click.pass_context
def demo(ctx: click.Context, workspace_id: str, calls: int, keep_worker: bool) -> None:
    """Start the stack, create a workspace, push call events through the pipeline, show rows."""
    from callvault.devstack import stack

    settings = get_settings(ctx)
    _say("starting the local stack (Kafka, SeaweedFS; chDB is embedded in the worker)")
    for service in stack.up(settings):
        click.echo(f"    {service.name:<10} {service.state:<16} {service.endpoint}", err=True)
    _say("ensuring topics")
    run(ensure_topics(settings))
    run(_ensure_workspace(settings, workspace_id))

    worker: WorkerProcess | None = None
    try:
        query(settings, "SELECT 1")
        _say("a worker is already running; using it")
    except AnalyticsQueryError:
        _say("starting the stream worker")
        worker = WorkerProcess(settings, settings.home / "logs" / "demo-worker.log")
        worker.start()
        run(worker.wait_healthy())
    try:
        batch = list(
            simulated_calls(workspace_id, calls, seed=random.SystemRandom().randint(0, 2**31))
        )
        events = [ev for c in batch for ev in c.events]
        _say(f"publishing {len(events)} call events ({calls} calls) to ingest.metadata")
        run(publish_events(settings, events))
        topics = Topics(settings)
        run(
            wait_caught_up(
                settings,
                app_id(settings),
                [topics.ingest_metadata, topics.sealed_metadata],
                worker=worker,
            )
        )
        # The ids are UUIDs this command generated; nothing user-typed reaches the SQL.
        ids = ", ".join(f"'{c.call_id}'" for c in batch)
        db = settings.clickhouse.database
        sql = f"SELECT substring(call_id, 1, 8) AS call, region, state, caller_number_masked AS caller, intDiv(duration_ms, 1000) AS secs, end_reason, toDate(expires_at) AS expires FROM {db}.calls FINAL WHERE call_id IN ({ids}) ORDER BY call_id"  # noqa: S608, E501
        res = query(settings, sql)
        emit_table(
            f"{settings.clickhouse.database}.calls (workspace {workspace_id})",
            res.columns,
            res.rows,
        )
        click.echo("Where it landed:")
        click.echo(
            f"  raw events     Kafka {settings.kafka.bootstrap} topic {topics.ingest_metadata}"
        )
        click.echo(
            f"  sealed events  Kafka {settings.kafka.bootstrap} topic {topics.sealed_metadata}"
        )
        click.echo(
            f"  analytics rows {settings.clickhouse_dsn.split('@')[-1]} "
            f"tables {settings.clickhouse.database}.calls, .call_events "
            f"({len(res.rows)} calls shown)"
        )
        click.echo(f"  dead letters   Kafka topic {topics.deadletter_metadata}")
        click.echo(
            'Query more: callvault query "SELECT ... FROM callvault.calls FINAL" '
            "(while a worker runs)"
        )
    finally:
        if worker is not None and not keep_worker:
            _say("stopping the demo worker")
            worker.stop()


async def _ensure_workspace(settings: Settings, workspace_id: str) -> None:
    async with WorkspaceDirectory(settings) as d:
        try:
            policy = d.get(workspace_id)
            _say(f"workspace {workspace_id} exists (region {policy.region})")
        except ControlError:
            policy = await d.create(workspace_id, region=settings.region)
            _say(
                f"created workspace {workspace_id} (region {policy.region}, "
                f"retention {policy.retention_days} days)"
            )
