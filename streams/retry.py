"""Retrying a durable write inside the stream loop.

faust acknowledges an event even when the agent raises, so a failed write must never escape the
loop: transient errors are retried here with capped exponential backoff — consumption pauses,
nothing is acknowledged — and only errors the store calls permanent reach the caller, which
dead-letters the records instead of dropping them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def retry_transient(
    op: Callable[[], Awaitable[T]],
    *,
    is_transient: Callable[[BaseException], bool],
    max_backoff_s: float,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
    first_backoff_s: float = 0.1,
) -> T:
    delay = first_backoff_s
    attempt = 0
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            log.warning("write_retry", what=what, attempt=attempt, error=str(exc), backoff_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
