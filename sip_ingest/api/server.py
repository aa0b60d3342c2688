"""The ingest node's local HTTP API: the voice agent posts what it knows about a call.

- ``POST /v1/calls/{call_id}/transcript``: transcript segments -> ``ingest.transcript``
- ``POST /v1/calls/{call_id}/summary``: the call summary -> ``ingest.transcript`` (kind SUMMARY)
- ``POST /v1/calls/{call_id}/tool-invocations``: handed to the call layer, which publishes them
  inside the call's metadata (``CallEvent.tool_invocations``)
- ``GET /metrics`` (Prometheus) and ``GET /healthz``

``/v1`` requires ``Authorization: Bearer <ingest.api_token>``, compared in constant time. The
token is never logged, and neither is a wrong one (it may be another system's secret pasted in
the wrong place): aiohttp's access log is off, requests are logged by method, route and status.
``/metrics`` and ``/healthz`` stay open for scrapers and probes; like the API they listen on
loopback unless ``api_host`` says otherwise, and they expose no call data.

Accepted records are answered with 202: they are queued or journaled, not yet in Kafka. If the
publisher had to drop any, the answer is 503 with ``Retry-After``; re-posting is safe because
segments keep their ids and the summary has a fixed one, so downstream stores keep one copy.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from callvault.settings import Settings
from callvault.topics import Topics
from schemas.codec import get_codec
from schemas.errors import SchemaEncodeError
from sip_ingest.api.models import (
    ID_PATTERN,
    BodyError,
    SummaryIn,
    ToolInvocationsIn,
    TranscriptIn,
    invocation_record,
    parse,
    segment_record,
    summary_record,
)
from sip_ingest.api.registry import CallInfo, CallRegistry
from sip_ingest.publish.publisher import Publisher

log = structlog.get_logger(__name__)

#: Whole request body, checked by aiohttp before a handler parses anything.
MAX_BODY_BYTES = 1024 * 1024
_CALL_ID = re.compile(ID_PATTERN)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class IngestApi:
    """The app and its listener on ``ingest.api_host:api_port``."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        calls: CallRegistry,
        metrics_registry: CollectorRegistry,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._publisher = publisher
        self._calls = calls
        self._registry = metrics_registry
        self._clock = clock
        self._token = settings.ingest.api_token.get_secret_value().encode()
        self._transcript_topic = Topics(settings).name("ingest.transcript")
        self._requests = Counter(
            "callvault_ingest_api_requests",
            "Agent API requests by route and HTTP status",
            ["route", "status"],
            registry=metrics_registry,
        )
        self._auth_failures = Counter(
            "callvault_ingest_api_auth_failures",
            "Agent API requests refused for a missing or wrong bearer token",
            registry=metrics_registry,
        )
        self._suppressed = Counter(
            "callvault_ingest_api_discarded",
            "Transcript segments and summaries not published because the call's recording is "
            "off or suppressed",
            registry=metrics_registry,
        )
        self.app = self._build()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._token:
            log.error("api_token_empty", detail="every /v1 request will be refused")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        ingest = self.settings.ingest
        await web.TCPSite(self._runner, ingest.api_host, ingest.api_port).start()
        log.info("api_listening", host=ingest.api_host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        assert self._runner is not None
        address = self._runner.addresses[0]
        return int(address[1])

    # -- the app -----------------------------------------------------------------------------

    def _build(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        app.router.add_post("/v1/calls/{call_id}/transcript", self._transcript)
        app.router.add_post("/v1/calls/{call_id}/summary", self._summary)
        app.router.add_post("/v1/calls/{call_id}/tool-invocations", self._tool_invocations)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse
        if request.path.startswith("/v1/") and not self._authorized(request):
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="callvault-ingest"'
        else:
            try:
                response = await handler(request)
            except BodyError as exc:
                response = _error(400, f"invalid request: {exc}", fields=exc.fields)
            except _Refused as exc:
                response = _error(exc.status, str(exc))
            except web.HTTPException as exc:  # 404/405 from the router, 413 from the body cap
                response = _error(exc.status, exc.reason)
        route = _route(request)
        self._requests.labels(route, str(response.status)).inc()
        log.info(
            "api_request",
            method=request.method,
            route=route,
            call_id=request.match_info.get("call_id"),
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        ok = (
            bool(self._token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self._token)
        )
        if not ok:
            self._auth_failures.inc()
            log.warning(
                "api_auth_refused",
                remote=request.remote,
                route=_route(request),
                reason="no bearer token" if scheme.lower() != "bearer" else "wrong token",
            )
        return ok

    # -- handlers ----------------------------------------------------------------------------

    async def _transcript(self, request: web.Request) -> web.Response:
        call_id = _call_id(request)
        body: TranscriptIn = parse(TranscriptIn, await request.read())
        info = self._call(call_id, body.workspace_id)
        if not info.content_allowed:
            return self._discarded(len(body.segments))
        records = [segment_record(call_id, body.workspace_id, s) for s in body.segments]
        return self._publish(call_id, info, records)

    async def _summary(self, request: web.Request) -> web.Response:
        call_id = _call_id(request)
        body: SummaryIn = parse(SummaryIn, await request.read())
        info = self._call(call_id, body.workspace_id)
        if not info.content_allowed:
            return self._discarded(1)
        return self._publish(call_id, info, [summary_record(call_id, body, self._clock())])

    async def _tool_invocations(self, request: web.Request) -> web.Response:
        call_id = _call_id(request)
        body: ToolInvocationsIn = parse(ToolInvocationsIn, await request.read())
        self._call(call_id, body.workspace_id)
        records = [invocation_record(i) for i in body.invocations]
        if not self._calls.add_tool_invocations(call_id, body.workspace_id, records):
            raise _Refused(404, f"unknown call {call_id}")
        return web.json_response({"accepted": len(records)}, status=202)

    async def _metrics(self, request: web.Request) -> web.Response:
        # aiohttp refuses parameters inside content_type=, so the header is set as a whole.
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        status = self._publisher.status()
        return web.json_response(
            {
                "status": "ok" if status.running else "stopped",
                "kafka_up": status.kafka_up,
                "spooling": status.spooling,
                "queue_depth": status.queue_depth,
                "journal_bytes": status.journal_bytes,
            },
            status=200 if status.running else 503,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _call(self, call_id: str, workspace_id: str) -> CallInfo:
        info = self._calls.lookup(call_id)
        if info is None:
            raise _Refused(404, f"unknown call {call_id}")
        if not hmac.compare_digest(info.workspace_id.encode(), workspace_id.encode()):
            raise _Refused(403, f"call {call_id} does not belong to workspace {workspace_id}")
        return info

    def _discarded(self, count: int) -> web.Response:
        self._suppressed.inc(count)
        return web.json_response(
            {"accepted": 0, "discarded": count, "reason": "recording is off for this call"},
            status=202,
        )

    def _publish(
        self, call_id: str, info: CallInfo, records: Sequence[dict[str, Any]]
    ) -> web.Response:
        topic = self._transcript_topic
        context = info.artifact_context()
        try:
            # Encode everything first so an invalid segment fails the request before any of it
            # is published.
            values = [get_codec().encode("TranscriptSegment", {**r, **context}) for r in records]
        except SchemaEncodeError as exc:
            self._publisher.record_drop("encode_error", topic, str(exc))
            raise BodyError([("", str(exc))]) from None
        key = call_id.encode()
        accepted = sum(self._publisher.publish(topic, key, value) for value in values)
        if accepted < len(values):
            response = _error(
                503, f"the ingest node could take only {accepted} of {len(values)} records"
            )
            response.headers["Retry-After"] = "5"
            return response
        return web.json_response({"accepted": accepted}, status=202)


def _call_id(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    if not _CALL_ID.match(call_id):
        raise BodyError([("call_id", f"must match {ID_PATTERN}")])
    return call_id


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _error(status: int, message: str, *, fields: Sequence[tuple[str, str]] = ()) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = [{"field": path, "problem": problem} for path, problem in fields]
    return web.json_response(body, status=status)
