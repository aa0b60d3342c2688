"""Errors of the media layer, rooted in the package-wide tree so callers can test ``retriable``.

Only set-up problems raise (a bad key, no free port, an unreadable WAV). Anything a remote peer
sends -- garbage datagrams, forged SRTP, replays -- is a counted drop instead, because one hostile
packet must never unwind the shared receive loop.
"""

from __future__ import annotations

from callvault.errors import CallvaultError


class MediaError(CallvaultError):
    """Root of the errors raised by ``sip_ingest.media``."""


class RtpPortsExhausted(MediaError):
    """Every RTP port of the configured range is in use.

    Retriable: ports come back as calls end, so the call layer answers ``503`` with
    ``Retry-After`` rather than failing for good.
    """

    retriable = True


class SrtpKeyError(MediaError):
    """SDES key material is malformed or of a suite this node does not offer."""


class WavFormatError(MediaError):
    """A WAV file cannot be streamed as G.711 (wrong rate, encoding or a broken RIFF layout)."""
