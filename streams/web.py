"""HTTP endpoints of a worker (faust's web server, bound to loopback by default):

- ``GET /metrics``: Prometheus text format.
- ``GET /healthz``: 200 once the runtime is started.
- ``POST /analytics/query``: read-only SQL against the analytics store. With embedded chDB the
  worker owns the engine (it locks its directory to one process), so this is how the CLI, the
  demo and the tests read rows. Requires the bearer token from ``worker.query_token`` and runs
  with ``readonly=1``, so it cannot write, alter or change settings.
"""

from __future__ import annotations

import hmac
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.errors import SinkError
from streams.runtime import Runtime


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def register_views(app: faust.App, rt: Runtime) -> None:
    token = rt.settings.worker.query_token.get_secret_value().encode()

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; Prometheus accepts the bare type.
            content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return self.bytes(generate_latest(rt.metrics.registry), content_type=content_type)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ready = rt.ready
            return self.json({"ready": ready}, status=200 if ready else 503)

    @app.page("/analytics/query")
    class Query(View):
        async def post(self, request: Request) -> Response:
            auth = request.headers.get("Authorization", "")
            given = auth.removeprefix("Bearer ").encode()
            if not auth.startswith("Bearer ") or not hmac.compare_digest(given, token):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            try:
                body = json.loads(await request.text())
                sql = body["sql"]
                workspace = body.get("workspace")
                if not isinstance(sql, str):
                    raise TypeError("sql must be a string")
                if workspace is not None and not isinstance(workspace, str):
                    raise TypeError("workspace must be a string")
            except (ValueError, KeyError, TypeError) as exc:
                return self.json(
                    {"error": f"body must be JSON {{'sql': '...'}}: {exc}"}, status=400
                )
            await rt.ensure_started()
            try:
                if workspace is None:  # operator scope (the token holder), read-only
                    columns, rows = await rt.clickhouse.query(sql, settings={"readonly": 1})
                else:  # confined to one workspace by the engine (sinks/clickhouse/isolation.py)
                    columns, rows = await rt.clickhouse.query_scoped(workspace, sql)
            except SinkError as exc:
                status = 503 if exc.retriable else 400
                return self.json({"error": str(exc)}, status=status)
            return self.json(
                {"columns": columns, "rows": [[_jsonable(v) for v in row] for row in rows]}
            )
