"""Splunk HTTP Event Collector sink for ``audit.events`` (``POST /services/collector/event``).

Delivery guarantee: **at-least-once, duplicates carry the same event id.** A batch is done only
when HEC answered HTTP 200 with ``{"code": 0}``; 5xx, 429 and connection errors are retried with
capped exponential backoff until ``backoff.deadline`` (then :class:`~sinks.errors.SinkUnavailable`,
buffer kept). 400/401/403 (and any other 4xx) raise :class:`~sinks.errors.SinkRejected`: the
caller dead-letters the batch (a wrong token must not stall the stream forever, but it must not
lose the events either). A retried request that Splunk had in fact indexed produces duplicates:
every event has ``fields.event_id`` to deduplicate on.

Without indexer acknowledgement HEC's 200 means "accepted by the HEC input", not "indexed";
``channel`` sets ``X-Splunk-Request-Channel`` for tokens that require it (indexer acks on).
The token is a ``SecretStr`` and is never logged or put into an error message.
"""

from __future__ import annotations

import gzip as gzip_mod
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from pydantic import SecretStr

from sinks.errors import SinkRejected, SinkUnavailable
from sinks.siem.formats import to_hec
from sinks.siem.retry import Attempts, Backoff

EVENT_PATH = "/services/collector/event"


class HecSink:
    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        session: aiohttp.ClientSession,
        host: str | None = None,
        index: str | None = None,
        source: str = "callvault",
        sourcetype: str = "callvault:audit",
        gzip: bool = False,
        channel: str | None = None,
        backoff: Backoff | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = base_url.rstrip("/") + EVENT_PATH
        self._token = token
        self._session = session
        self._meta: dict[str, Any] = {
            "host": host,
            "index": index,
            "source": source,
            "sourcetype": sourcetype,
        }
        self._gzip = gzip
        self._channel = channel
        self._backoff = backoff or Backoff()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._events: list[Mapping[str, Any]] = []
        self.requests = 0

    def add(self, event: Mapping[str, Any]) -> None:
        self._events.append(event)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def event_ids(self) -> list[str]:
        return [e["event_id"] for e in self._events]

    def clear(self) -> None:
        self._events.clear()

    def _request(self) -> tuple[bytes, dict[str, str]]:
        body = to_hec(self._events, **self._meta)
        headers = {
            "Authorization": f"Splunk {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        if self._gzip:
            body = gzip_mod.compress(body)
            headers["Content-Encoding"] = "gzip"
        if self._channel:
            headers["X-Splunk-Request-Channel"] = self._channel
        return body, headers

    async def flush(self) -> None:
        """POST the buffer; returns after HEC accepted it (200, code 0). Buffer kept on error."""
        if not self._events:
            return
        body, headers = self._request()
        attempts = Attempts(self._backoff)
        while True:
            try:
                self.requests += 1
                async with self._session.post(
                    self.url, data=body, headers=headers, timeout=self._timeout
                ) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and _code(text) == 0:
                    self.clear()
                    return
                reason = f"HTTP {status}: {text[:200]}"
                if 400 <= status < 500 and status not in (408, 429):
                    raise SinkRejected(f"Splunk HEC rejected {len(self)} events: {reason}")
            if not await attempts.wait():
                raise SinkUnavailable(
                    f"Splunk HEC {self.url} unavailable after {attempts.attempt + 1} "
                    f"attempts: {reason}"
                )


def _code(text: str) -> int | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
