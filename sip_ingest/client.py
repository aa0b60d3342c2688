"""A small SIP user-agent client: the ``callvault call`` command, the demo and the tests.

It places one call to an ingest node the way a PBX would — UDP, TCP or TLS, digest
authentication, optional SDES-SRTP — streams G.711 audio from a WAV file as RTP, and hangs up.
With ``siprec=True`` it acts as a Session Recording Client instead: one INVITE with
``Require: siprec``, a multipart SDP + rs-metadata body, and two recorded streams (caller and
agent) sent from two RTP sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from sip_ingest.media.sender import RtpSender
from sip_ingest.media.srtp import SrtpSender, new_master_key, sdes_inline
from sip_ingest.sip.digest import authorization_header, parse_challenge
from sip_ingest.sip.errors import SipError
from sip_ingest.sip.message import (
    PING,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
    parse_name_addr,
)
from sip_ingest.sip.multipart import encode_multipart
from sip_ingest.sip.sdp import SessionDescription

Transport = Literal["udp", "tcp", "tls"]


class CallFailed(Exception):
    """The call could not be placed; the message says which response or timeout, and
    ``response`` is that response when there was one (its headers, e.g. ``Min-SE``, explain)."""

    def __init__(self, message: str, response: SipResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass
class CallOptions:
    host: str
    port: int
    transport: Transport = "udp"
    username: str | None = None
    password: str | None = None
    caller: str = "+15550100"
    callee: str = "agent"
    audio: bytes = b""  # G.711 for the (first) leg
    agent_audio: bytes = b""  # G.711 for the second SIPREC leg
    codec: Literal["PCMU", "PCMA"] = "PCMU"
    srtp: bool = False
    siprec: bool = False
    paced: bool = True
    hold_s: float = 0.0  # extra time on the line after the audio
    #: Session timer (RFC 4028): ask for this interval; ``refresher`` says who refreshes.
    session_expires: int | None = None
    refresher: Literal["uac", "uas"] | None = None
    #: While holding, refresh the session with an UPDATE this often (we are the refresher).
    refresh_every_s: float | None = None
    #: Mid-audio, at this fraction of it, re-INVITE with a new RTP socket per leg (a new media
    #: address) and, for SRTP, new keys; the rest of the audio goes from the new sockets.
    renegotiate_at: float | None = None
    #: SRTP for the renegotiated media (default: as the call started); False tries a downgrade.
    renegotiate_srtp: bool | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tls_verify: bool = True
    tls_ca_file: str | None = None
    timeout_s: float = 10.0
    local_host: str = "127.0.0.1"
    #: Replace the built-in RTP senders: called with each leg's (remote address, local socket)
    #: once the call is up; the call hangs up when it returns (the load benchmark drives many
    #: calls' media from a separate process this way).
    media: Callable[[list[tuple[tuple[str, int], socket.socket]]], Awaitable[None]] | None = None


@dataclass
class CallOutcome:
    sip_call_id: str
    status: int
    packets_sent: list[int]
    bytes_sent: list[int]


class _Channel:
    """One signalling connection; incoming messages land in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.send: Callable[[bytes], None] = lambda _b: None
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self._close: Callable[[], Awaitable[None]] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, opts: CallOptions) -> None:
        loop = asyncio.get_running_loop()
        if opts.transport == "udp":
            channel = self

            class _Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    with contextlib.suppress(SipError):
                        channel.queue.put_nowait(parse_message(data))

            transport, _ = await loop.create_datagram_endpoint(
                _Proto, local_addr=(opts.local_host, 0), remote_addr=(opts.host, opts.port)
            )
            self.send = transport.sendto
            self.local = transport.get_extra_info("sockname")[:2]

            async def close_udp() -> None:
                transport.close()

            self._close = close_udp
            return
        ctx = None
        if opts.transport == "tls":
            ctx = ssl.create_default_context(cafile=opts.tls_ca_file)
            if not opts.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(
            opts.host, opts.port, ssl=ctx, server_hostname=opts.host if ctx else None
        )
        self.send = writer.write
        self.local = writer.get_extra_info("sockname")[:2]
        framer = StreamFramer()

        async def read() -> None:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    if item is not PING and isinstance(item, SipRequest | SipResponse):
                        self.queue.put_nowait(item)

        self._reader = asyncio.create_task(read())

        async def close_stream() -> None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

        self._close = close_stream

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._close is not None:
            await self._close()


def _sdp_offer(
    host: str, ports: list[int], codec: str, keys: list[bytes | None], labels: list[str | None]
) -> str:
    pt = 0 if codec == "PCMU" else 8
    lines = [
        "v=0",
        f"o=callvault-client {secrets.randbits(32)} 1 IN IP4 {host}",
        "s=callvault call",
        f"c=IN IP4 {host}",
        "t=0 0",
    ]
    for port, key, label in zip(ports, keys, labels, strict=True):
        proto = "RTP/SAVP" if key else "RTP/AVP"
        lines.append(f"m=audio {port} {proto} {pt} 101")
        lines.append(f"a=rtpmap:{pt} {codec}/8000")
        lines.append("a=rtpmap:101 telephone-event/8000")
        lines.append("a=fmtp:101 0-15")
        if key:
            lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {sdes_inline(key)}")
        if label:
            lines.append(f"a=label:{label}")
        lines.append("a=sendonly")
    return "\r\n".join(lines) + "\r\n"


def _rs_metadata(caller: str, callee: str) -> str:
    """Two participants, each sending one labelled stream (RFC 7865)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="c2Vzc2lvbjE="><sipSessionID>callvault-client</sipSessionID></session>
  <participant participant_id="cGFydDE=">
    <nameID aor="sip:{caller}@pbx.example"><name>Caller</name></nameID>
  </participant>
  <participant participant_id="cGFydDI=">
    <nameID aor="sip:{callee}@pbx.example"><name>Agent</name></nameID>
  </participant>
  <stream stream_id="c3RyZWFtMQ==" session_id="c2Vzc2lvbjE="><label>1</label></stream>
  <stream stream_id="c3RyZWFtMg==" session_id="c2Vzc2lvbjE="><label>2</label></stream>
  <participantstreamassoc participant_id="cGFydDE=">
    <send>c3RyZWFtMQ==</send><recv>c3RyZWFtMg==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="cGFydDI=">
    <send>c3RyZWFtMg==</send><recv>c3RyZWFtMQ==</recv>
  </participantstreamassoc>
</recording>
"""


class _Dialog:
    def __init__(self, opts: CallOptions, channel: _Channel) -> None:
        self.opts = opts
        self.ch = channel
        self.call_id = f"{secrets.token_hex(8)}@callvault-client"
        self.from_tag = secrets.token_hex(4)
        self.to_tag: str | None = None
        self.cseq = secrets.randbelow(1000) + 1
        self.uri = f"sip:{opts.callee}@{opts.host}:{opts.port}"
        if opts.transport != "udp":
            self.uri += f";transport={opts.transport}"

    def request(
        self,
        method: str,
        *,
        branch: str | None = None,
        body: bytes = b"",
        ctype: str | None = None,
        extra: dict[str, str] | None = None,
        cseq: int | None = None,
    ) -> tuple[SipRequest, str]:
        host, port = self.ch.local
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        req = SipRequest(method, self.uri)
        req.headers.add(
            "Via", f"SIP/2.0/{self.opts.transport.upper()} {host}:{port};branch={branch};rport"
        )
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", f"<sip:{self.opts.caller}@{host}>;tag={self.from_tag}")
        to = f"<sip:{self.opts.callee}@{self.opts.host}>"
        req.headers.add("To", f"{to};tag={self.to_tag}" if self.to_tag else to)
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{cseq or self.cseq} {method}")
        req.headers.add("Contact", f"<sip:client@{host}:{port}>")
        for name, value in (extra or {}).items():
            req.headers.add(name, value)
        if ctype:
            req.headers.add("Content-Type", ctype)
        req.body = body
        return req, branch

    async def final_response(self, method: str, request: bytes | None = None) -> SipResponse:
        """Wait for the final response; over UDP, retransmit ``request`` (RFC 3261 Timer A/E:
        T1 doubling to T2) until anything answers, since a datagram can be lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.timeout_s
        resend = request if self.opts.transport == "udp" else None
        interval = 0.5
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CallFailed(f"no final response to {method} within {self.opts.timeout_s}s")
            try:
                msg = await asyncio.wait_for(
                    self.ch.queue.get(), min(remaining, interval) if resend else remaining
                )
            except TimeoutError:
                if resend is not None:
                    self.ch.send(resend)
                    interval = min(interval * 2, 4.0)
                continue
            if isinstance(msg, SipResponse) and msg.cseq.method == method:
                resend = None  # answered: the server's transaction takes over
                if msg.status >= 200:
                    return msg
            if isinstance(msg, SipRequest):
                self.answer_request(msg)

    def answer_request(self, msg: SipRequest) -> None:
        """Requests from the node inside the dialog: its BYE ends the call; its UPDATE session
        refreshes (RFC 4028, when it is the refresher), OPTIONS and INFO are answered 200."""
        if msg.method == "ACK":
            return
        self.ch.send(make_response(msg, 200).to_bytes())
        if msg.method == "BYE":
            raise CallFailed("the node ended the call")


async def place_call(opts: CallOptions) -> CallOutcome:
    channel = _Channel()
    await channel.open(opts)
    legs = 2 if opts.siprec else 1
    rtp_socks = []
    for _ in range(legs):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((opts.local_host, 0))
        rtp_socks.append(s)
    keys = [new_master_key() if opts.srtp else None for _ in range(legs)]
    labels: list[str | None] = ["1", "2"] if opts.siprec else [None]
    dialog = _Dialog(opts, channel)
    try:
        sdp = _sdp_offer(
            opts.local_host, [s.getsockname()[1] for s in rtp_socks], opts.codec, keys, labels
        )
        if opts.siprec:
            ctype, body = encode_multipart(
                [
                    ("application/sdp", sdp.encode()),
                    (
                        "application/rs-metadata+xml",
                        _rs_metadata(opts.caller, opts.callee).encode(),
                    ),
                ]
            )
            extra = {"Require": "siprec", "Accept": "application/sdp, application/rs-metadata+xml"}
        else:
            ctype, body, extra = "application/sdp", sdp.encode(), {}
        if opts.session_expires is not None:
            refresher = f";refresher={opts.refresher}" if opts.refresher else ""
            extra["Session-Expires"] = f"{opts.session_expires}{refresher}"
            extra["Supported"] = "timer"
        extra.update(opts.headers)
        answer = await _invite(dialog, body, ctype, extra)
        offer_answer = SessionDescription.parse(answer.body)
        audio_lines = [m for m in offer_answer.media if m.media == "audio" and m.port]
        if len(audio_lines) != legs:
            raise CallFailed(f"the answer accepted {len(audio_lines)} of {legs} streams")
        remotes = []
        for media in audio_lines:
            conn = offer_answer.media_connection(media)
            remotes.append((conn.host if conn else opts.host, media.port))
        if opts.media is not None:
            await opts.media(list(zip(remotes, rtp_socks, strict=True)))
            return await _hang_up(dialog, opts, [0] * legs, [0] * legs)
        senders = []
        for sock, key, remote in zip(rtp_socks, keys, remotes, strict=True):
            senders.append(
                RtpSender(remote, codec=opts.codec, sock=sock,
                          srtp=SrtpSender(key) if key else None)
            )  # fmt: skip
        payloads = [opts.audio, opts.agent_audio][:legs]
        packets, sizes = [0] * legs, [0] * legs
        if opts.renegotiate_at is not None:
            cuts = [_frame_cut(p, opts.renegotiate_at) for p in payloads]
            await _send_all(senders, [p[:c] for p, c in zip(payloads, cuts, strict=True)], opts,
                            packets, sizes)  # fmt: skip
            senders = await _renegotiate(dialog, senders, labels, rtp_socks)
            payloads = [p[c:] for p, c in zip(payloads, cuts, strict=True)]
        await _send_all(senders, payloads, opts, packets, sizes)
        if opts.hold_s:
            await _hold(dialog, opts.hold_s)
        return await _hang_up(dialog, opts, packets, sizes)
    finally:
        for s in rtp_socks:
            s.close()
        await channel.close()


async def _hang_up(
    dialog: _Dialog, opts: CallOptions, packets: list[int], sizes: list[int]
) -> CallOutcome:
    dialog.cseq += 1
    bye, _ = dialog.request("BYE")
    data = bye.to_bytes()
    dialog.ch.send(data)
    resp = await dialog.final_response("BYE", data)
    return CallOutcome(dialog.call_id, resp.status, packets, sizes)


async def _send_all(
    senders: list[RtpSender], payloads: list[bytes], opts: CallOptions,
    packets: list[int], sizes: list[int],
) -> None:  # fmt: skip
    reports = await asyncio.gather(
        *(s.send(p, paced=opts.paced) for s, p in zip(senders, payloads, strict=True))
    )
    for i, r in enumerate(reports):
        packets[i] += r.audio_packets
        sizes[i] += r.payload_bytes


def _frame_cut(payload: bytes, fraction: float) -> int:
    """A cut on a 20 ms frame boundary, so neither part ends in a short packet."""
    frames = len(payload) // 160
    return min(len(payload), round(frames * fraction) * 160)


async def _renegotiate(
    dialog: _Dialog, senders: list[RtpSender], labels: list[str | None],
    sockets: list[socket.socket],
) -> list[RtpSender]:  # fmt: skip
    """re-INVITE with a new RTP socket per leg and, for SRTP, new keys; continue each stream
    (same SSRC, next sequence number and timestamp) from its new address."""
    opts = dialog.opts
    srtp = opts.srtp if opts.renegotiate_srtp is None else opts.renegotiate_srtp
    new_socks = []
    for _ in senders:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((opts.local_host, 0))
        new_socks.append(s)
    sockets.extend(new_socks)  # closed with the others when the call ends
    keys = [new_master_key() if srtp else None for _ in senders]
    sdp = _sdp_offer(
        opts.local_host, [s.getsockname()[1] for s in new_socks], opts.codec, keys, labels
    )
    dialog.cseq += 1
    req, branch = dialog.request("INVITE", body=sdp.encode(), ctype="application/sdp")
    data = req.to_bytes()
    dialog.ch.send(data)
    resp = await dialog.final_response("INVITE", data)
    ack, _ = dialog.request("ACK", branch=None if resp.status < 300 else branch, cseq=dialog.cseq)
    dialog.ch.send(ack.to_bytes())
    if resp.status >= 300:
        await _hang_up(dialog, opts, [], [])
        raise CallFailed(f"re-INVITE answered {resp.status} {resp.reason}", resp)
    return [
        RtpSender(
            old.remote, codec=opts.codec, sock=sock, ssrc=old.ssrc, start_seq=old.next_seq,
            start_ts=old.next_timestamp, srtp=SrtpSender(key) if key else None,
        )
        for old, sock, key in zip(senders, new_socks, keys, strict=True)
    ]  # fmt: skip


async def _hold(dialog: _Dialog, seconds: float) -> None:
    """Stay on the line without media, answering the node's requests (a BYE ends the call);
    with ``refresh_every_s``, refresh the session timer by UPDATE meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    every = dialog.opts.refresh_every_s
    next_refresh = loop.time() + every if every else deadline
    while (remaining := deadline - loop.time()) > 0:
        if loop.time() >= next_refresh and every:
            dialog.cseq += 1
            update, _ = dialog.request("UPDATE")
            data = update.to_bytes()
            dialog.ch.send(data)
            resp = await dialog.final_response("UPDATE", data)
            if resp.status >= 300:
                raise CallFailed(f"UPDATE answered {resp.status} {resp.reason}", resp)
            next_refresh = loop.time() + every
            continue
        try:
            msg = await asyncio.wait_for(
                dialog.ch.queue.get(), min(remaining, max(0.0, next_refresh - loop.time()))
            )
        except TimeoutError:
            continue
        if isinstance(msg, SipRequest):
            dialog.answer_request(msg)


async def _invite(dialog: _Dialog, body: bytes, ctype: str, extra: dict[str, str]) -> SipResponse:
    opts = dialog.opts
    authorization: str | None = None
    for _attempt in range(3):
        headers = dict(extra)
        if authorization:
            headers["Authorization"] = authorization
        invite, branch = dialog.request("INVITE", body=body, ctype=ctype, extra=headers)
        data = invite.to_bytes()
        dialog.ch.send(data)
        resp = await dialog.final_response("INVITE", data)
        to_tag = parse_name_addr(resp.headers.get("To") or "").tag
        if resp.status >= 300:  # a non-2xx final response is ACKed in its own transaction
            saved = dialog.to_tag
            dialog.to_tag = to_tag
            ack, _ = dialog.request("ACK", branch=branch, cseq=dialog.cseq)
            dialog.to_tag = saved
            dialog.ch.send(ack.to_bytes())
        if resp.status in (401, 407) and opts.username and opts.password:
            challenges = resp.headers.get_all("WWW-Authenticate") or resp.headers.get_all(
                "Proxy-Authenticate"
            )
            parsed = [parse_challenge(c) for c in challenges]
            chosen = next((c for c in parsed if c.algorithm == "SHA-256"), parsed[0])
            dialog.cseq += 1
            authorization = authorization_header(
                chosen, username=opts.username, password=opts.password, method="INVITE",
                uri=dialog.uri,
            )  # fmt: skip
            continue
        if resp.status >= 300:
            raise CallFailed(f"INVITE answered {resp.status} {resp.reason}", resp)
        dialog.to_tag = to_tag
        ack, _ = dialog.request("ACK", cseq=dialog.cseq)
        dialog.ch.send(ack.to_bytes())
        return resp
    raise CallFailed("authentication was refused")
