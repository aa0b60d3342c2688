"""Capped exponential backoff with full jitter, bounded by a deadline, for the SIEM sinks."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``initial * 2**n`` capped at ``cap`` (jittered down to half), retried until ``deadline``
    seconds have passed since the first attempt of a flush; then the sink raises
    ``SinkUnavailable`` and keeps its buffer, and the caller backs off or dead-letters."""

    initial: float = 0.1
    cap: float = 5.0
    deadline: float = 60.0

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * (2**attempt))
        return base / 2 + random.random() * base / 2


class Attempts:
    """Iterate attempts of one flush: ``await attempts.wait()`` sleeps the next delay, or returns
    False once the deadline would be passed."""

    def __init__(self, policy: Backoff) -> None:
        self._policy = policy
        self._start = time.monotonic()
        self.attempt = 0

    async def wait(self) -> bool:
        delay = self._policy.delay(self.attempt)
        if time.monotonic() + delay - self._start > self._policy.deadline:
            return False
        self.attempt += 1
        await asyncio.sleep(delay)
        return True
