"""``callvault worker``: the stream processors and analytics sink of one region."""

from __future__ import annotations

import click

from callvault.cli.main import get_settings


@click.group()
def worker() -> None:
    """Stream workers (seal metadata, write analytics)."""


@worker.command("run")
@click.pass_context
def run_(ctx: click.Context) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT.

    Serves /metrics, /healthz and /analytics/query on worker.web_host:worker.web_port.
    """
    from streams.worker import run_worker

    run_worker(get_settings(ctx))
