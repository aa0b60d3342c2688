"""``callvault ingest``: the SIP ingest node."""

from __future__ import annotations

import asyncio

import click

from callvault.cli.main import get_settings


@click.group()
def ingest() -> None:
    """SIP ingest node (UDP/TCP 5060, TLS 5061, RTP/SRTP, SIPREC, digest auth)."""


@ingest.command("run")
@click.pass_context
def run_(ctx: click.Context) -> None:
    """Run the ingest node in the foreground until SIGTERM/SIGINT.

    Listens on ingest.sip_host:sip_port (UDP, TCP) and tls_port when a certificate is set;
    the agent API, /metrics and /healthz on ingest.api_host:api_port.
    """
    from callvault.logging import configure_logging
    from sip_ingest.node import run_node

    settings = get_settings(ctx)
    configure_logging(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run_node(settings))
