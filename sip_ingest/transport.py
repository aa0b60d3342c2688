"""SIP transports: UDP (default), TCP (large SIPREC INVITEs) and TLS.

Responses go back where the request came from (RFC 3581 rport behaviour for UDP, the same
connection for TCP/TLS), which is what PBXs behind NAT need and what the spec's "network-level
trust" UDP default implies. Malformed input is counted and dropped (UDP) or answered with 400 and
the connection closed (streams); it never reaches the call layer and never raises out of here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import structlog

from sip_ingest.sip.errors import SipError, SipParseError
from sip_ingest.sip.message import (
    PING,
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)

log = structlog.get_logger(__name__)

Kind = Literal["UDP", "TCP", "TLS"]
SipMessage = SipRequest | SipResponse


@dataclass(eq=False)
class Source:
    """Where a message came from, and how to answer it."""

    kind: Kind
    host: str
    port: int
    send: Callable[[bytes], None] = field(repr=False)

    @property
    def reliable(self) -> bool:
        return self.kind != "UDP"


Handler = Callable[[SipMessage, Source], None]
Counter = Callable[[str], None]


class UdpTransport(asyncio.DatagramProtocol):
    """Signalling volume is a few datagrams per call, so the stock protocol is fine here (the RTP
    path, where per-packet cost matters, has its own reader)."""

    def __init__(self, handler: Handler, count_drop: Counter) -> None:
        self._handler = handler
        self._drop = count_drop
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport, so no isinstance
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00"):  # keepalives (RFC 5626 et al.)
            return
        try:
            msg = parse_message(data)
        except SipError as exc:
            self._drop("malformed")
            log.debug("sip_malformed_datagram", source=f"{addr[0]}:{addr[1]}", error=str(exc)[:200])
            return
        host, port = addr[0], addr[1]
        transport = self.transport
        assert transport is not None
        source = Source("UDP", host, port, lambda b: transport.sendto(b, (host, port)))
        self._handler(msg, source)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable etc.
        self._drop("udp_error")


class StreamServer:
    """TCP or TLS: one framer per connection; a framing error closes the connection after a 400
    when the broken message is recognisably a request."""

    def __init__(
        self,
        kind: Kind,
        handler: Handler,
        count_drop: Counter,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout_s: float = 600.0,
    ) -> None:
        self.kind = kind
        self._handler = handler
        self._drop = count_drop
        self._ssl = ssl_context
        self._idle = idle_timeout_s
        self.server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(
            self._serve, host, port, ssl=self._ssl, limit=1 << 20
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._conns):
                writer.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        host, port = str(peer[0]), int(peer[1])

        def send(data: bytes) -> None:
            # the peer may be gone (a BYE after a TLS client hung up): count, never raise
            if writer.is_closing():
                self._drop("send_on_closed_connection")
                return
            try:
                writer.write(data)
            except (OSError, RuntimeError, AttributeError):  # ssl proto torn down mid-write
                self._drop("send_on_closed_connection")

        source = Source(self.kind, host, port, send)
        framer = StreamFramer()
        self._conns.add(writer)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self._idle)
                except (TimeoutError, ConnectionError, ssl.SSLError):
                    return
                if not data:
                    return
                try:
                    messages = framer.feed(data)
                except SipError as exc:
                    self._drop("malformed")
                    log.info("sip_malformed_stream", source=f"{host}:{port}", error=str(exc)[:200])
                    writer.write(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                for item in messages:
                    if item is PING:  # CRLF keepalive ping (RFC 5626): answer with a pong
                        writer.write(b"\r\n")
                    elif isinstance(item, SipParseError):
                        # framed but invalid: answer 400 when it was a request, keep the link
                        self._drop("malformed")
                        if isinstance(item.partial, SipRequest):
                            writer.write(bad_request(item.partial, item))
                    elif isinstance(item, SipRequest | SipResponse):
                        self._handler(item, source)
        finally:
            self._conns.discard(writer)
            writer.close()


def bad_request(request: SipRequest, error: SipError) -> bytes:
    """A response to a request the call layer refused (status taken from the error)."""
    return make_response(request, error.status, error.reason).to_bytes()
