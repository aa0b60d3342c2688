"""Syslog over TLS (RFC 5425) for ``audit.events``: RFC 5424 messages, octet-counting framing.

Delivery guarantee: **at-least-once to a healthy connection, duplicates carry the same eventId.**
Syslog over TCP/TLS has no application-level acknowledgement, so "delivered" can only mean
"written and drained (``writer.drain()``) to a connection that was healthy". To narrow the gap
a peer crash leaves (bytes accepted by the kernel after the peer died are silently lost):

* each (re)connection waits a short ``settle`` window for the server to drop it (rsyslog closes
  a TLS 1.3 client without an acceptable certificate only *after* the handshake);
* every flush first checks the connection (EOF, reset, closing); a broken connection is
  replaced and the **previous batch is re-sent with the current one**, because it may have gone
  into a connection that was already dead. A batch therefore counts as confirmed only once the
  next flush finds its connection alive; :meth:`SyslogTlsSink.close` does the same check.

Every message carries its event id (SD param ``eventId``, CEF ``externalId``, JSON ``event_id``)
so the SIEM can drop duplicates. Connection errors are retried with capped exponential backoff
until ``backoff.deadline``; then :class:`~sinks.errors.SinkUnavailable` is raised and the buffer
kept, so the caller retries the same batch later (it must not commit its offsets meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sinks.errors import SinkUnavailable
from sinks.siem.formats import FACILITY_AUTHPRIV, Payload, octet_frame, to_rfc5424
from sinks.siem.retry import Attempts, Backoff

_CONN_ERRORS = (OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError)


def client_tls_context(
    ca_file: Path | None, client_cert: Path | None = None, client_key: Path | None = None
) -> ssl.SSLContext:
    """Verify the server (chain and host name) against ``ca_file`` (``None``: the system trust
    store); present ``client_cert`` (a PEM with key and chain, or with ``client_key``
    separately) for mutual TLS."""
    cafile = str(ca_file) if ca_file is not None else None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return ctx


class SyslogTlsSink:
    """``add(event)`` renders an audit event; ``flush()`` sends the batch (see module docstring
    for the delivery guarantee). Not safe for concurrent flushes; one sink per consumer loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        payload: Payload = "cef",
        app_name: str = "callvault",
        hostname: str | None = None,
        facility: int = FACILITY_AUTHPRIV,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        settle: float = 0.05,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._server_hostname = server_hostname or host
        self._payload: Payload = payload
        self._app_name = app_name
        self._hostname = hostname
        self._facility = facility
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._settle = settle
        self._frames: list[bytes] = []
        self._ids: list[str] = []
        self._unconfirmed: list[bytes] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: counters for metrics/logging
        self.reconnects = 0
        self._connected_once = False
        self.resent = 0

    def add(self, event: Mapping[str, Any]) -> None:
        message = to_rfc5424(
            event,
            app_name=self._app_name,
            hostname=self._hostname,
            facility=self._facility,
            payload=self._payload,
        )
        self._frames.append(octet_frame(message))
        self._ids.append(event["event_id"])

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def event_ids(self) -> list[str]:
        return list(self._ids)

    def clear(self) -> None:
        self._frames.clear()
        self._ids.clear()

    def _healthy(self) -> bool:
        r, w = self._reader, self._writer
        if r is None or w is None:
            return False
        return not (w.is_closing() or r.at_eof() or r.exception() is not None)

    async def _drop(self) -> None:
        w, self._reader, self._writer = self._writer, None, None
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1.0)

    async def _connect(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self._server_hostname
            ),
            self._connect_timeout,
        )
        self._reader, self._writer = reader, writer
        if self._settle > 0:
            try:
                data = await asyncio.wait_for(reader.read(1), self._settle)
            except TimeoutError:
                return  # nothing from the server: the normal case
            # a syslog server never sends data: EOF or bytes both mean it refused us
            await self._drop()
            raise ConnectionResetError(f"server closed the connection after the handshake {data!r}")

    async def _send(self, batch: list[bytes]) -> None:
        """Write ``batch`` to a healthy connection, reconnecting with backoff as needed; on a new
        connection the previous (unconfirmed) batch goes first."""
        attempts = Attempts(self._backoff)
        while True:
            try:
                if self._healthy():
                    data = batch
                else:
                    await self._drop()
                    await self._connect()
                    if self._connected_once:
                        self.reconnects += 1
                    self._connected_once = True
                    data = self._unconfirmed + batch
                    self.resent += len(self._unconfirmed)
                assert self._writer is not None
                self._writer.write(b"".join(data))
                await self._writer.drain()
                if not self._healthy():
                    raise ConnectionResetError("connection broke while writing")
                self._unconfirmed = data
                return
            except (*_CONN_ERRORS, TimeoutError) as exc:
                await self._drop()
                if not await attempts.wait():
                    raise SinkUnavailable(
                        f"syslog {self.host}:{self.port} unavailable after "
                        f"{attempts.attempt + 1} attempts: {exc!r}"
                    ) from exc

    async def flush(self) -> None:
        """Send the buffer; returns once it is written and drained to a healthy connection. On
        :class:`SinkUnavailable` the buffer is kept for the caller to retry."""
        # let pending transport events (a FIN or reset from a crashed server) reach the reader
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if not self._frames and (self._healthy() or not self._unconfirmed):
            return
        await self._send(list(self._frames))
        self.clear()

    async def close(self) -> None:
        """Confirm the last batch (re-sending it if its connection broke), then close. Raises
        :class:`SinkUnavailable` if that re-send failed: the last batch may not have arrived."""
        try:
            await self.flush()
        finally:
            self._unconfirmed = []
            await self._drop()
