"""The one error tree of the SIP protocol layer.

Every error carries the SIP status the node should answer with when the fault lies in a request,
so the transaction layer maps an exception to a response without inspecting messages. The tree
hangs under :class:`callvault.errors.CallvaultError` so a supervisor that catches the package root
also catches protocol faults, and keeps the ``retriable`` convention (a malformed message never
becomes valid by retrying it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from callvault.errors import CallvaultError

if TYPE_CHECKING:
    from sip_ingest.sip.message import SipRequest, SipResponse


class SipError(CallvaultError):
    """A SIP protocol fault.

    ``partial`` is the message as far as it could be parsed (start line and headers intact, a
    semantic check failed). It is there so the transaction layer can still answer with ``status``
    (a response needs the request's Via, From, To, Call-ID and CSeq); it is ``None`` when the bytes
    were too broken to answer, in which case the datagram is dropped or the stream closed.
    """

    status: int = 400
    retriable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        partial: SipRequest | SipResponse | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        if status is not None:
            self.status = status
        #: Reason phrase for the response; ``None`` means the standard phrase for ``status``.
        self.reason = reason
        self.partial = partial


class SipParseError(SipError):
    """The bytes are not a well-formed SIP message (or SDP, multipart body, metadata document)."""

    status = 400


class UnsupportedExtension(SipError):
    """The request requires option-tags we do not implement; answer 420 with ``Unsupported``."""

    status = 420

    def __init__(
        self,
        unsupported: Iterable[str],
        *,
        partial: SipRequest | SipResponse | None = None,
    ) -> None:
        tags = tuple(unsupported)
        super().__init__(
            "unsupported extension(s): " + ", ".join(tags),
            reason="Bad Extension",
            partial=partial,
        )
        #: The option-tags to list in the response's ``Unsupported`` header.
        self.unsupported = tags

    @property
    def option_tags(self) -> tuple[str, ...]:
        return self.unsupported


class AuthError(SipError):
    """Credentials could not be understood (not: were wrong, which is a ``Verdict``).

    401 rather than 400: RFC 4475 (regaut01) asks a server that cannot use the offered scheme to
    re-challenge with one it understands, and a fresh challenge is the only way such a client can
    recover.
    """

    status = 401
