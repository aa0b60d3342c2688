"""Structured logs (JSON lines by default) with a last line of defence against leaking secrets.

Secrets are ``SecretStr`` everywhere, so they print masked; the processor below additionally masks
values of keys that look like credentials, in case someone logs a raw dict.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from callvault.settings import Settings

_SECRET_KEYS = (
    "password", "secret", "token", "authorization", "pepper", "private_key", "ha1", "plaintext",
)  # fmt: skip
#: Libraries whose DEBUG output includes request bodies: botocore logs a KMS call's
#: ``Plaintext`` (a data key) and S3 payloads. They never go below INFO, whatever the log level.
_BODY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def _mask_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event[key] = "**********"
    return event


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level)
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if settings.plaintext_links_allowed:  # an exception to "encrypted everywhere": say so
        structlog.get_logger(__name__).warning(
            "plaintext_links_allowed", links=list(settings.plaintext_links_allowed),
            environment=settings.environment,
        )  # fmt: skip
