"""Client of a worker's ``/analytics/query`` endpoint (used by ``callvault query``, the demo and
the tests): with embedded chDB, the worker is the only process that may open the store."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from callvault.errors import CallvaultError
from callvault.settings import Settings


class AnalyticsQueryError(CallvaultError):
    pass


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


def query(
    settings: Settings, sql: str, *, workspace: str | None = None, timeout_s: float = 30.0
) -> QueryResult:
    """Run read-only SQL on the worker; with ``workspace``, in a session the engine confines to
    that workspace's rows."""
    url = f"http://{settings.worker.web_host}:{settings.worker.web_port}/analytics/query"
    req = urllib.request.Request(
        url,
        data=json.dumps({"sql": sql, **({"workspace": workspace} if workspace else {})}).encode(),
        headers={
            "Authorization": f"Bearer {settings.worker.query_token.get_secret_value()}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]
        raise AnalyticsQueryError(f"query refused ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AnalyticsQueryError(
            f"no worker answering at {url} ({exc}); start one with `callvault worker run`",
            retriable=True,
        ) from None
    return QueryResult(body["columns"], body["rows"])
