"""How every Callvault process connects to Kafka: one place, so no client is ever built without
TLS by accident.

``kafka_options(settings)`` is spread into every aiokafka constructor; ``faust_credentials``
gives the faust app the same TLS context. The context verifies the broker's certificate and host
name against the configured CA (the local stack's own CA by default, see
:mod:`callvault.devstack.pki`), TLS 1.2 at least.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

from callvault.errors import SettingsError
from callvault.settings import Settings


@functools.lru_cache(maxsize=8)
def _context(ca_file: Path, client_cert: Path | None) -> ssl.SSLContext:
    if not ca_file.is_file():
        raise SettingsError(
            f"kafka.ca_file: {ca_file} does not exist (the local stack creates it with "
            "`callvault dev up`; elsewhere point CALLVAULT_KAFKA__CA_FILE at the broker's CA)"
        )
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert))
    return ctx


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.kafka.tls:
        return None
    return _context(settings.kafka_ca_file, settings.kafka.client_cert_file)


def kafka_options(settings: Settings) -> dict[str, Any]:
    """``bootstrap_servers`` plus the security options, for any aiokafka client."""
    ctx = ssl_context(settings)
    if ctx is None:
        return {"bootstrap_servers": settings.kafka.bootstrap}
    return {
        "bootstrap_servers": settings.kafka.bootstrap,
        "security_protocol": "SSL",
        "ssl_context": ctx,
    }


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for faust (None without TLS)."""
    ctx = ssl_context(settings)
    if ctx is None:
        return None
    import faust

    return faust.SSLCredentials(ctx)
