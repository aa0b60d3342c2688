"""The SIP user-agent server of the ingest node: INVITE/ACK/BYE/CANCEL/OPTIONS/INFO, digest
authentication against the live trunk view, SDP negotiation, SIPREC, and the timers that make
sure no call stays open forever.

Transaction handling follows RFC 3261 for a UAS that answers at once:
- every response to a request is cached under the request's transaction key (top Via branch +
  method), so a retransmitted request gets the same answer instead of a second call;
- a 2xx to INVITE is retransmitted (T1 doubling to T2) until the ACK arrives, and the call is
  torn down with a BYE if it never does (64*T1) — as is a final non-2xx over UDP (Timer G/H);
- CANCEL of a pending INVITE answers 200 to the CANCEL and 487 to the INVITE.
All handlers are synchronous and non-blocking; publishing goes to a bounded queue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog

from callvault.audit import audit_event
from callvault.control.trunks import TrunkCredential
from callvault.control.workspaces import WorkspacePolicy
from callvault.settings import Settings
from sip_ingest.api.registry import CallInfo
from sip_ingest.calls import Call, LegStats
from sip_ingest.dialog import Dialog, new_branch, new_tag
from sip_ingest.media.errors import MediaError
from sip_ingest.sip.digest import DigestAuthenticator, FailureLimiter, parse_authorization
from sip_ingest.sip.errors import AuthError, SipError, UnsupportedExtension
from sip_ingest.sip.message import (
    SipRequest,
    SipResponse,
    SipUri,
    apply_rport,
    make_response,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from sip_ingest.sip.multipart import parse_multipart
from sip_ingest.sip.sdp import NegotiatedMedia, SessionDescription, answer
from sip_ingest.sip.siprec import parse_recording_metadata
from sip_ingest.sip.timer import SessionIntervalTooSmall, SessionTimer, negotiate
from sip_ingest.transport import Source

log = structlog.get_logger(__name__)

T1, T2 = 0.5, 4.0
SUPPORTED = ("siprec", "timer", "replaces")
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
LegRole = Literal["CALLER", "AGENT"]


class LegHandle(Protocol):
    local_port: int

    def stats(self) -> LegStats: ...
    def last_packet_at(self) -> float: ...
    @property
    def secure(self) -> bool: ...
    def update(self, media: NegotiatedMedia) -> None: ...
    def close(self) -> None: ...


class Media(Protocol):
    def allocate_port(self) -> int: ...
    def release_port(self, port: int) -> None: ...
    def open_leg(
        self, call: Call, role: LegRole, media: NegotiatedMedia, *, publish_audio: bool
    ) -> LegHandle: ...


class Sink(Protocol):
    """Where the UAS's outputs go (the node wires it to the publisher and the audit log)."""

    def call_event(self, record: dict[str, Any]) -> None: ...
    def audit(self, record: dict[str, Any]) -> None: ...
    def count(self, metric: str, **labels: str) -> None: ...


@dataclass
class ActiveCall:
    call: Call
    dialog: Dialog
    source: Source
    invite: SipRequest
    legs: list[LegHandle] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    answered: bool = False
    acked: bool = False
    ended: bool = False
    final_response: bytes | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    session_timer: SessionTimer | None = None
    last_refresh: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    refresh_timer: asyncio.TimerHandle | None = None


class IngestUAS:
    def __init__(
        self,
        settings: Settings,
        *,
        trunk_lookup: Callable[[str], TrunkCredential | None],
        policy_lookup: Callable[[str], WorkspacePolicy | None],
        trunk_by_id: Callable[[str], TrunkCredential | None] | None = None,
        extension_lookup: Callable[[str, str], str | None] | None = None,
        media: Media,
        sink: Sink,
    ) -> None:
        self.settings = settings
        cfg = settings.ingest
        self._trunk = trunk_lookup
        self._trunk_by_id = trunk_by_id
        self._policy = policy_lookup
        #: (workspace, dialled user part) -> agent id of that extension, None if none
        self._extension = extension_lookup
        self._media = media
        self._sink = sink
        self.auth = DigestAuthenticator(
            cfg.realm,
            cfg.nonce_secret.get_secret_value().encode(),
            cfg.nonce_ttl_s,
            algorithms=cfg.digest_algorithms,
        )
        self.limiter = FailureLimiter(cfg.auth_failures_per_minute)
        self._responses: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.calls: dict[str, ActiveCall] = {}
        #: our call id -> Call, live and recently ended (the agent posts summaries after hang-up)
        self._known: OrderedDict[str, Call] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep())

    async def stop(self) -> None:
        for active in list(self.calls.values()):
            self._end(active, "FAILED", send_bye=True)
        if self._sweeper is not None:
            self._sweeper.cancel()

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, msg: SipRequest | SipResponse, source: Source) -> None:
        if isinstance(msg, SipResponse):
            self._on_response(msg)
            return
        try:
            apply_rport(msg, source.host, source.port)
            key = self._tx_key(msg)
        except SipError as exc:
            self._sink.count("sip_dropped", reason="no_via")
            log.info("sip_request_without_usable_via", error=str(exc))
            return
        if msg.method == "ACK":
            self._on_ack(msg)
            return
        cached = self._responses.get(key)
        if cached is not None:  # retransmission: same answer, no new work
            source.send(cached)
            return
        try:
            handler = {
                "INVITE": self._on_invite,
                "BYE": self._on_bye,
                "CANCEL": self._on_cancel,
                "OPTIONS": self._on_options,
                "INFO": self._on_ok_in_dialog,
                "UPDATE": self._on_ok_in_dialog,
            }.get(msg.method)
            if handler is None:
                self._respond(msg, source, 405, headers={"Allow": ALLOW})
                return
            handler(msg, source)
        except SipError as exc:
            extra = {}
            if isinstance(exc, UnsupportedExtension):
                extra["Unsupported"] = ", ".join(exc.option_tags)
            if isinstance(exc, SessionIntervalTooSmall):
                extra["Min-SE"] = str(exc.min_se)
            self._respond(msg, source, exc.status, exc.reason, headers=extra)
        except MediaError as exc:  # out of RTP ports or sockets: the caller may retry later
            self._sink.count("sip_refused", reason=type(exc).__name__)
            log.warning("sip_media_unavailable", method=msg.method, error=str(exc))
            self._respond(msg, source, 503, "Service Unavailable", headers={"Retry-After": "5"})
        except Exception:  # a bug must cost one request, answered, never the node
            self._sink.count("sip_internal_error")
            log.exception("sip_handler_failed", method=msg.method)
            self._respond(msg, source, 500, "Server Internal Error")

    # -- CallRegistry (the agent API looks calls up here) -------------------------------------

    def lookup(self, call_id: str) -> CallInfo | None:
        call = self._find(call_id)
        if call is None:
            return None
        return CallInfo(
            call.workspace_id,
            call.recording_enabled,
            call.suppressed,
            agent_id=call.agent_id,
            started_at=call.started_at,
        )

    def add_tool_invocations(
        self, call_id: str, workspace_id: str, invocations: Sequence[Any]
    ) -> bool:
        call = self._find(call_id)
        if call is None or call.workspace_id != workspace_id:
            return False
        call.tool_invocations.extend(dict(inv) for inv in invocations)
        if call.ended_at is not None:
            # the call is over: a newer ENDED snapshot carries the invocations (newest wins)
            self._sink.call_event(call.event("ENDED", self.settings.ingest.node_id))
        return True

    def _find(self, call_id: str) -> Call | None:
        call = self._known.get(call_id)
        if call is None:
            active = self.calls.get(call_id)  # the agent may only know the SIP Call-ID
            call = active.call if active is not None else None
        return call

    def _remember(self, call: Call) -> None:
        self._known[call.call_id] = call
        while len(self._known) > 50_000:
            self._known.popitem(last=False)

    # -- requests ----------------------------------------------------------------------------

    def _on_options(self, req: SipRequest, source: Source) -> None:
        self._respond(
            req,
            source,
            200,
            headers={
                "Allow": ALLOW,
                "Accept": "application/sdp, multipart/mixed",
                "Supported": ", ".join(SUPPORTED),
            },
        )

    def _on_invite(self, req: SipRequest, source: Source) -> None:
        sip_call_id = req.headers.get("Call-ID") or ""
        if self._to_tag(req):  # in-dialog: a re-INVITE
            active = self._in_dialog(req, source)
            if active is not None:
                self._on_reinvite(active, req, source)
            return
        self._check_require(req)
        cred = self._authenticate(req, source)
        if cred is None:
            return
        policy = self._policy(cred.workspace_id)
        if policy is None or policy.deleted:
            self._sink.audit(
                self._audit(
                    "sip.call.refused", cred, "DENIED", source, reason="workspace has no policy"
                )
            )
            self._respond(req, source, 403, "Workspace not provisioned")
            return
        timer = self._session_timer(req)
        self._respond(req, source, 100)
        offer, metadata = self._offer(req)
        call = self._new_call(req, cred, policy, metadata)
        ports: list[int] = []
        try:
            # one local port per offered audio m-line; 0 keeps a line the offerer rejected rejected
            ports = [
                self._media.allocate_port() if m.port != 0 else 0
                for m in offer.media
                if m.media == "audio"
            ]
            sdp_answer, negotiated = answer(
                offer,
                local_ip=self.settings.ingest.advertised_host,
                ports=ports,
                srtp_key_factory=None,
            )
        except SipError:
            for p in ports:
                if p:
                    self._media.release_port(p)
            raise
        dialog = Dialog(
            sip_call_id=sip_call_id,
            local_tag=new_tag(),
            remote_tag=self._from_tag(req),
            local_uri=req.headers.get("To") or "",
            remote_uri=req.headers.get("From") or "",
            remote_target=self._contact_uri(req),
            remote_cseq=parse_cseq(req.headers.get("CSeq") or "")[0],
        )
        active = ActiveCall(call, dialog, source, req, ports=ports, session_timer=timer)
        self.calls[sip_call_id] = active
        self._remember(call)
        for role, media in zip(self._roles(negotiated, metadata), negotiated, strict=True):
            active.legs.append(
                self._media.open_leg(call, role, media, publish_audio=call.audio_allowed)
            )
        call.codec = negotiated[0].codec if negotiated else None
        self._sink.call_event(call.event("STARTED", self.settings.ingest.node_id))
        self._sink.count("calls_started", workspace=call.workspace_id)
        body = str(sdp_answer).encode()
        delay = self.settings.ingest.answer_delay_ms / 1000
        if delay > 0:
            self._respond(req, source, 180, to_tag=dialog.local_tag)
            assert self._loop is not None
            active.timers.append(self._loop.call_later(delay, self._answer, active, body))
        else:
            self._answer(active, body)

    def _answer(self, active: ActiveCall, body: bytes) -> None:
        if active.ended:
            return
        req = active.invite
        headers = {
            "Contact": self._our_contact(active.source, req),
            "Allow": ALLOW,
            "Supported": ", ".join(SUPPORTED),
        }
        if active.session_timer is not None:
            headers.update(active.session_timer.response_headers())
        resp = make_response(
            req,
            200,
            "OK",
            to_tag=active.dialog.local_tag,
            headers=headers,
            body=body,
            content_type="application/sdp",
        ).to_bytes()
        active.final_response = resp
        self._cache(req, resp)
        active.source.send(resp)
        active.answered = True
        active.call.answered_at = _now()
        self._sink.call_event(active.call.event("ANSWERED", self.settings.ingest.node_id))
        if not active.source.reliable:
            assert self._loop is not None
            active.timers.append(self._loop.call_later(T1, self._retransmit, active, T1 * 2))
        assert self._loop is not None
        active.timers.append(self._loop.call_later(64 * T1, self._ack_timeout, active))
        self._arm_refresh(active)

    def _retransmit(self, active: ActiveCall, interval: float) -> None:
        if active.acked or active.ended or active.final_response is None:
            return
        active.source.send(active.final_response)
        assert self._loop is not None
        active.timers.append(
            self._loop.call_later(interval, self._retransmit, active, min(interval * 2, T2))
        )

    def _ack_timeout(self, active: ActiveCall) -> None:
        if not active.acked and not active.ended:
            log.info("sip_no_ack", call_id=active.call.call_id)
            self._end(active, "TIMEOUT", send_bye=True)

    def _on_ack(self, req: SipRequest) -> None:
        active = self.calls.get(req.headers.get("Call-ID") or "")
        if active is not None:
            active.acked = True

    def _on_reinvite(self, active: ActiveCall, req: SipRequest, source: Source) -> None:
        """Hold/resume, new media address or new SRTP keys: renegotiate in place. A re-INVITE
        is also a session refresh (RFC 4028), possibly with a new interval."""
        timer = self._refresh_timer(active, req)
        self._respond(req, source, 100)
        offer, _ = self._offer(req)
        sdp_answer, negotiated = answer(
            offer,
            local_ip=self.settings.ingest.advertised_host,
            ports=[leg.local_port for leg in active.legs],
            srtp_key_factory=None,
        )
        pairs = list(zip(active.legs, negotiated, strict=False))
        if any(leg.secure and media.srtp_remote is None for leg, media in pairs):
            # a re-INVITE must not turn encrypted media into clear RTP: whoever can inject one
            # into the dialog could otherwise strip SRTP mid-call
            raise SipError("re-INVITE would downgrade SRTP to RTP", status=488)
        for leg, media in pairs:
            leg.update(media)
        self._refreshed(active, timer)
        headers = {"Contact": self._our_contact(source, req)}
        if timer is not None:
            headers.update(timer.response_headers())
        resp = make_response(
            req,
            200,
            "OK",
            to_tag=active.dialog.local_tag,
            headers=headers,
            body=str(sdp_answer).encode(),
            content_type="application/sdp",
        ).to_bytes()
        self._cache(req, resp)
        source.send(resp)

    def _on_bye(self, req: SipRequest, source: Source) -> None:
        active = self._in_dialog(req, source)
        if active is None:
            return
        self._respond(req, source, 200)
        self._end(active, "CALLER_HANGUP", send_bye=False)

    def _on_cancel(self, req: SipRequest, source: Source) -> None:
        active = self.calls.get(req.headers.get("Call-ID") or "")
        if active is None or active.answered:
            self._respond(req, source, 481 if active is None else 200)
            return
        self._respond(req, source, 200)
        resp = make_response(
            active.invite, 487, "Request Terminated", to_tag=active.dialog.local_tag
        ).to_bytes()
        self._cache(active.invite, resp)
        active.source.send(resp)
        self._end(active, "CANCELLED", send_bye=False)

    def _on_ok_in_dialog(self, req: SipRequest, source: Source) -> None:
        active = self._in_dialog(req, source)
        if active is None:
            return
        headers: dict[str, str] = {}
        if req.method == "INFO" and b"Signal=" in req.body:
            active.call.dtmf_events += 1  # SIP INFO DTMF: counted, the digit is never kept
        elif req.method == "UPDATE":  # without a body: a session refresh (RFC 4028 / 3311)
            timer = self._refresh_timer(active, req)
            self._refreshed(active, timer)
            if timer is not None:
                headers.update(timer.response_headers())
        self._respond(req, source, 200, headers=headers)

    def _in_dialog(self, req: SipRequest, source: Source) -> ActiveCall | None:
        """The call a mid-dialog request belongs to, or ``None`` after answering 481.

        Call-ID alone is not enough: it travels in clear over UDP, and a request that matched on
        it alone could end someone else's call or point their media (and keys) elsewhere. The
        dialog is Call-ID *and* both tags (RFC 3261 12).
        """
        active = self.calls.get(req.headers.get("Call-ID") or "")
        if active is None or not self._same_dialog(active, req):
            self._respond(req, source, 481, "Call/Transaction Does Not Exist")
            return None
        return active

    @staticmethod
    def _same_dialog(active: ActiveCall, req: SipRequest) -> bool:
        d = active.dialog
        return IngestUAS._from_tag(req) == d.remote_tag and IngestUAS._to_tag(req) == d.local_tag

    # -- session timers (RFC 4028) -----------------------------------------------------------

    def _session_timer(self, req: SipRequest) -> SessionTimer | None:
        cfg = self.settings.ingest
        supported = ",".join(req.headers.get_all("Supported")).split(",")
        return negotiate(
            session_expires=req.headers.get("Session-Expires"),
            min_se=req.headers.get("Min-SE"),
            supported=supported,
            our_min_se=cfg.session_min_se_s,
            our_max=cfg.session_expires_s,
        )

    def _refresh_timer(self, active: ActiveCall, req: SipRequest) -> SessionTimer | None:
        """A refresh without Session-Expires keeps the dialog's timer; one with it renegotiates
        (and may be refused with 422, which leaves the old timer running)."""
        if req.headers.get("Session-Expires") is None:
            return active.session_timer
        return self._session_timer(req)

    def _refreshed(self, active: ActiveCall, timer: SessionTimer | None) -> None:
        active.last_refresh = time.monotonic()
        active.session_timer = timer
        self._arm_refresh(active)

    def _arm_refresh(self, active: ActiveCall) -> None:
        """When we are the refresher, send an UPDATE at half the interval."""
        if active.refresh_timer is not None:
            active.refresh_timer.cancel()
            active.refresh_timer = None
        timer = active.session_timer
        if timer is None or timer.refresher != "uas" or active.ended:
            return
        assert self._loop is not None
        active.refresh_timer = self._loop.call_later(
            timer.refresh_after, self._send_refresh, active
        )
        active.timers.append(active.refresh_timer)

    def _send_refresh(self, active: ActiveCall) -> None:
        if active.ended:
            return
        timer = active.session_timer
        extra = {"Session-Expires": f"{timer.interval};refresher=uas"} if timer else {}
        try:
            self._send_in_dialog(active, "UPDATE", extra)
        except Exception as exc:  # a dead connection: the expiry check ends the call
            log.info("sip_refresh_failed", call_id=active.call.call_id, error=str(exc))
        self._arm_refresh(active)

    def _on_response(self, resp: SipResponse) -> None:
        """Answers to our own UPDATE refreshes and BYEs. A 408 or 481 to a refresh means the
        peer has lost the dialog (RFC 4028 10): end the call now rather than at expiry."""
        active = self.calls.get(resp.headers.get("Call-ID") or "")
        if active is None or resp.status < 200 or resp.cseq.method != "UPDATE":
            return
        if resp.status in (408, 481):
            self._end(active, "TIMEOUT", send_bye=False)
        else:  # any other final answer proves the peer still holds the dialog
            active.last_refresh = time.monotonic()

    # -- control changes ---------------------------------------------------------------------

    def credential_changed(self, cred: TrunkCredential) -> int:
        """A trunk was revoked: end its calls in progress (BYE), so a stolen password cannot
        keep the calls it already has. A rotation also revokes the old username but leaves the
        trunk an active successor: its calls go on, since a planned rotation must not drop
        traffic. Returns the number of calls ended."""
        if cred.active:
            return 0
        successor = self._trunk_by_id(cred.trunk_id) if self._trunk_by_id else None
        if successor is not None and successor.active:
            return 0
        return self._terminate(
            lambda a: (a.call.workspace_id, a.call.trunk_id) == (cred.workspace_id, cred.trunk_id),
            "credential revoked", target=f"trunk:{cred.trunk_id}",
        )  # fmt: skip

    def workspace_changed(self, policy: WorkspacePolicy) -> int:
        """An erased (deleted) workspace takes no more calls: end those in progress."""
        if not policy.deleted:
            return 0
        return self._terminate(
            lambda a: a.call.workspace_id == policy.workspace_id, "workspace erased",
            target=f"workspace:{policy.workspace_id}",
        )  # fmt: skip

    def _terminate(self, which: Callable[[ActiveCall], bool], reason: str, *, target: str) -> int:
        doomed = [a for a in self.calls.values() if not a.ended and which(a)]
        for active in doomed:
            call = active.call
            self._sink.audit(audit_event(
                "sip.call.terminated", actor_kind="SERVICE",
                actor_id=f"ingest:{self.settings.ingest.node_id}", outcome="DENIED",
                workspace_id=call.workspace_id, target=target,
                details={"call_id": call.call_id, "reason": reason},
            ))  # fmt: skip
            self._sink.count("calls_terminated", reason=reason)
            log.info("sip_call_terminated", call_id=call.call_id, reason=reason)
            self._end(active, "REJECTED", send_bye=True)
        return len(doomed)

    # -- pieces ------------------------------------------------------------------------------

    def _authenticate(self, req: SipRequest, source: Source) -> TrunkCredential | None:
        header = req.headers.get("Authorization") or req.headers.get("Proxy-Authorization")
        if header is None:
            self._challenge(req, source)
            return None
        if not self.limiter.allow(source.host):
            self._sink.count("auth_rate_limited")
            self._sink.audit(
                self._audit("sip.auth.failure", None, "DENIED", source, reason="rate limited")
            )
            self._respond(req, source, 403, "Too many failed attempts")
            return None
        try:
            creds = parse_authorization(header)
        except AuthError as exc:
            self._auth_failed(req, source, None, f"malformed authorization: {exc}")
            return None
        cred = self._trunk(creds.username)

        def lookup(username: str, algorithm: str) -> str | None:
            return cred.ha1_for(algorithm) if cred is not None and cred.active else None

        verdict = self.auth.verify(creds, req.method, lookup)
        if verdict.stale:
            self._challenge(req, source, stale=True)
            return None
        if not verdict.ok or cred is None or not cred.active:
            reason = verdict.reason if not verdict.ok else "credential revoked"
            if cred is not None and not cred.active:
                reason = "credential revoked"
            self._auth_failed(req, source, cred, reason, username=creds.username)
            return None
        return cred

    def _challenge(self, req: SipRequest, source: Source, *, stale: bool = False) -> None:
        resp = make_response(req, 401, "Unauthorized", to_tag=new_tag())
        for value in self.auth.challenges(stale=stale):
            resp.headers.add("WWW-Authenticate", value)
        data = resp.to_bytes()
        self._cache(req, data)
        source.send(data)

    def _auth_failed(
        self,
        req: SipRequest,
        source: Source,
        cred: TrunkCredential | None,
        reason: str,
        *,
        username: str | None = None,
    ) -> None:
        self.limiter.record_failure(source.host)
        self._sink.count("auth_failures")
        self._sink.audit(
            self._audit(
                "sip.auth.failure", cred, "DENIED", source, reason=reason, username=username or ""
            )
        )
        self._respond(req, source, 403, "Forbidden")

    def _audit(
        self,
        action: str,
        cred: TrunkCredential | None,
        outcome: str,
        source: Source,
        **details: str,
    ) -> dict[str, Any]:
        return audit_event(
            action,
            actor_kind="SERVICE",
            actor_id=f"ingest:{self.settings.ingest.node_id}",
            outcome=outcome,  # type: ignore[arg-type]
            workspace_id=cred.workspace_id if cred else None,
            target=f"trunk:{cred.trunk_id}" if cred else None,
            details={"source": f"{source.kind}:{source.host}:{source.port}", **details},
        )

    def _check_require(self, req: SipRequest) -> None:
        required = [t.strip() for t in (req.headers.get("Require") or "").split(",") if t.strip()]
        unknown = [t for t in required if t not in SUPPORTED]
        if unknown:
            raise UnsupportedExtension(unknown)

    def _offer(self, req: SipRequest) -> tuple[SessionDescription, Any]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        metadata = None
        sdp_body: bytes | None = None
        if ctype.startswith("application/sdp"):
            sdp_body = req.body
        elif ctype.startswith("multipart/mixed"):
            for part_type, _headers, body in parse_multipart(
                req.headers.get("Content-Type") or "", req.body
            ):
                pt = part_type.lower()
                if pt.startswith("application/sdp"):
                    sdp_body = body
                elif pt.startswith("application/rs-metadata+xml"):
                    metadata = parse_recording_metadata(body)
        if not sdp_body:
            raise SipError("an SDP offer is required", status=488)
        return SessionDescription.parse(sdp_body), metadata

    def _new_call(
        self, req: SipRequest, cred: TrunkCredential, policy: WorkspacePolicy, metadata: Any
    ) -> Call:
        from_user = parse_name_addr(req.headers.get("From") or "").uri.user or ""
        to_user = parse_name_addr(req.headers.get("To") or "").uri.user or ""
        caller, callee = from_user, to_user
        if metadata is not None:  # SIPREC: the recorded parties are in the metadata, not From/To
            rec_caller, rec_callee = metadata.caller_callee()
            caller = (rec_caller.number if rec_caller else None) or caller
            callee = (rec_callee.number if rec_callee else None) or callee
        agent = self._agent_for(req, cred.workspace_id, to_user)
        header_off = (req.headers.get("X-Callvault-Recording") or "").strip().lower() == "off"
        rule = policy.suppression_for(
            caller=caller, callee=callee, agent_id=agent, trunk_id=cred.trunk_id
        )
        reason = "sip_header" if header_off else (f"rule:{rule}" if rule else None)
        recording = policy.recording_enabled_for(agent)
        return Call(
            call_id=str(uuid.uuid4()),
            sip_call_id=req.headers.get("Call-ID") or "",
            workspace_id=cred.workspace_id,
            trunk_id=cred.trunk_id,
            agent_id=agent,
            caller_number=caller or "unknown",
            callee_number=callee or "unknown",
            recording_enabled=recording,
            suppressed=reason is not None,
            suppression_reason=reason,
            siprec=metadata is not None,
        )

    def _agent_for(self, req: SipRequest, workspace_id: str, to_user: str) -> str | None:
        """The agent the call is attributed to: the ``X-Callvault-Agent`` header, else the agent
        of the extension dialled (To user, then the Request-URI user, which a PBX may have
        retargeted), else the To user itself.

        Why it matters: the agent id selects per-agent recording and ``agent:`` suppression, so
        a PBX that dials ``201`` must be treated as calling the agent ``201`` routes to. The
        header wins because it is the PBX stating the agent outright; the To-user fallback keeps
        deployments that dial agent ids directly working.
        """
        header = req.headers.get("X-Callvault-Agent")
        if header:
            return header
        if self._extension is not None:
            candidates = [to_user]
            try:
                ruri = req.request_uri
            except SipError:  # an unparsable Request-URI only loses this fallback
                ruri = None
            ruri_user = ruri.user if isinstance(ruri, SipUri) else None
            if ruri_user and ruri_user != to_user:
                candidates.append(ruri_user)
            for dialled in candidates:
                agent = self._extension(workspace_id, dialled) if dialled else None
                if agent:
                    return agent
        return to_user or None

    @staticmethod
    def _roles(negotiated: list[NegotiatedMedia], metadata: Any) -> list[LegRole]:
        """One leg per audio stream; SIPREC's two streams are caller then agent unless the
        metadata says otherwise."""
        roles: list[LegRole] = []
        labels = [m.label for m in negotiated if m.label is not None]
        for i, media in enumerate(negotiated):
            role: LegRole = "CALLER" if i == 0 else "AGENT"
            if metadata is not None and media.label is not None:
                side = metadata.role_of_label(media.label, labels)
                role = {"caller": "CALLER", "callee": "AGENT"}.get(side or "", role)  # type: ignore[assignment]
            roles.append(role)
        return roles

    def _end(self, active: ActiveCall, reason: Any, *, send_bye: bool) -> None:
        if active.ended:
            return
        active.ended = True
        for timer in active.timers:
            timer.cancel()
        call = active.call
        call.ended_at = _now()
        call.end_reason = reason
        stats = []
        for leg in active.legs:
            leg.close()
            stats.append(leg.stats())
        for port in active.ports:
            if port:
                self._media.release_port(port)
        self.calls.pop(active.dialog.sip_call_id, None)
        if send_bye and active.answered:
            try:
                self._send_in_dialog(active, "BYE")
            except Exception as exc:  # a dead connection must not keep the call open
                self._sink.count("bye_failed")
                log.info("sip_bye_failed", call_id=call.call_id, error=str(exc))
        self._sink.call_event(call.event("ENDED", self.settings.ingest.node_id, stats))
        self._sink.count("calls_ended", reason=str(reason))

    def _send_in_dialog(
        self, active: ActiveCall, method: str, extra: dict[str, str] | None = None
    ) -> None:
        """A request of ours inside the dialog (BYE on timeouts, UPDATE refreshes). The Via
        names our listening port so a peer without rport support still answers us."""
        d = active.dialog
        src = active.source
        cfg = self.settings.ingest
        port = cfg.tls_port if src.kind == "TLS" else cfg.sip_port
        req = SipRequest(method, d.remote_target, None, b"")
        req.headers.add(
            "Via", f"SIP/2.0/{src.kind} {cfg.advertised_host}:{port};branch={new_branch()};rport"
        )
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", self._with_tag(d.local_uri, d.local_tag))
        req.headers.add("To", d.remote_uri)
        req.headers.add("Call-ID", d.sip_call_id)
        req.headers.add("CSeq", f"{d.next_cseq()} {method}")
        if method != "BYE":
            req.headers.add("Contact", self._our_contact(src, active.invite))
        for name, value in (extra or {}).items():
            req.headers.add(name, value)
        src.send(req.to_bytes())

    async def _sweep(self) -> None:
        """End calls whose media went silent or whose session timer lapsed."""
        inactivity = self.settings.ingest.rtp_inactivity_s
        while True:
            await asyncio.sleep(min(1.0, inactivity / 4))
            now = time.monotonic()
            for active in list(self.calls.values()):
                if not active.answered or active.ended:
                    continue
                try:
                    self._expire(active, now, inactivity)
                except Exception:  # one broken call must not stop timeouts for all others
                    log.exception("sip_sweep_failed", call_id=active.call.call_id)
            # forget cached responses older than 64*T1 (Timer J): bounded memory
            while len(self._responses) > 10_000:
                self._responses.popitem(last=False)

    def _expire(self, active: ActiveCall, now: float, inactivity: float) -> None:
        last_media = max((leg.last_packet_at() for leg in active.legs), default=0.0)
        last = max(last_media, active.last_refresh)
        timer = active.session_timer
        lapsed = timer is not None and now - active.last_refresh > timer.interval
        if now - last > inactivity:
            self._end(active, "MEDIA_TIMEOUT", send_bye=True)
        elif lapsed or now - active.started > self.settings.ingest.max_call_s:
            self._end(active, "TIMEOUT", send_bye=True)

    # -- helpers -----------------------------------------------------------------------------

    def _respond(
        self,
        req: SipRequest,
        source: Source,
        status: int,
        reason: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        to_tag: str | None = None,
    ) -> None:
        resp = make_response(req, status, reason, to_tag=to_tag, headers=headers).to_bytes()
        if status >= 200:
            self._cache(req, resp)
        source.send(resp)

    def _cache(self, req: SipRequest, data: bytes) -> None:
        self._responses[self._tx_key(req)] = data

    @staticmethod
    def _tx_key(req: SipRequest) -> tuple[str, str]:
        via = parse_via(req.headers.get("Via") or "")
        branch = via.params.get("branch") or ""
        method = "INVITE" if req.method == "ACK" else req.method
        if not branch.startswith("z9hG4bK"):  # RFC 2543 peers: fall back to dialog identifiers
            branch = f"{req.headers.get('Call-ID')}|{req.headers.get('CSeq')}|{via}"
        return branch, method

    @staticmethod
    def _from_tag(req: SipRequest) -> str:
        return parse_name_addr(req.headers.get("From") or "").params.get("tag") or ""

    @staticmethod
    def _to_tag(req: SipRequest) -> str | None:
        return parse_name_addr(req.headers.get("To") or "").params.get("tag")

    @staticmethod
    def _contact_uri(req: SipRequest) -> str:
        contact = req.headers.get("Contact")
        if contact:
            return str(parse_name_addr(contact).uri)
        return str(parse_name_addr(req.headers.get("From") or "").uri)

    def _our_contact(self, source: Source, req: SipRequest) -> str:
        """Our Contact for the dialog. SIPS only when the request was SIPS (RFC 3261 12.1.1):
        a TLS transport with a ``sip:`` Request-URI gets ``sip:...;transport=tls``, which is also
        the only form some stacks (libre/baresip) can route their ACK and BYE to."""
        cfg = self.settings.ingest
        port = cfg.tls_port if source.kind == "TLS" else cfg.sip_port
        scheme = "sips" if str(req.uri).lower().startswith("sips:") else "sip"
        transport = "" if source.kind == "UDP" else f";transport={source.kind.lower()}"
        return f"<{scheme}:callvault@{cfg.advertised_host}:{port}{transport}>"

    @staticmethod
    def _with_tag(name_addr: str, tag: str) -> str:
        return name_addr if ";tag=" in name_addr else f"{name_addr};tag={tag}"


def _now() -> datetime:
    return datetime.now(UTC)
