"""SDES-keyed SRTP (RFC 4568 / RFC 3711) over libsrtp, one session object per direction and key.

A re-INVITE that changes keys gets *new* objects rather than a mutated session: libsrtp keeps
per-SSRC rollover counters and replay windows that belong to the old key, and carrying them over
would reject the first packets under the new one.

The receive side never raises on packet contents. A forged, tampered or replayed packet is an
expected event on an open port, so it becomes ``None`` plus a per-reason counter that the metrics
endpoint exports; only bad key material (a set-up error) raises.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final, Literal

import pylibsrtp

from sip_ingest.media.errors import SrtpKeyError

__all__ = [
    "KEY_LEN",
    "MASTER_LEN",
    "SALT_LEN",
    "SrtpReceiver",
    "SrtpSender",
    "SrtpSuite",
    "master_key_from_sdes",
    "new_master_key",
    "sdes_inline",
]

SrtpSuite = Literal["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]

KEY_LEN: Final = 16
SALT_LEN: Final = 14
#: SDES ``inline:`` key material is the master key followed by the master salt.
MASTER_LEN: Final = KEY_LEN + SALT_LEN

_PROFILES: Final[dict[str, int]] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}

# libsrtp's status strings (pylibsrtp.ERRORS) mapped to drop-counter labels.
_REASONS: Final = {
    "authentication failure": "srtp_auth",
    "replay check failed (bad index)": "srtp_replay",
    "replay check failed (index too old)": "srtp_replay_old",
}


def new_master_key() -> bytes:
    """Fresh key||salt for the crypto line of an SDP answer."""
    return os.urandom(MASTER_LEN)


def sdes_inline(master_key: bytes) -> str:
    """``inline:<base64>`` key parameter for an ``a=crypto`` line."""
    _check_master(master_key)
    return "inline:" + base64.b64encode(master_key).decode("ascii")


def master_key_from_sdes(key_params: str) -> bytes:
    """Decode the key parameter of ``a=crypto:<tag> <suite> <key-params>`` to key||salt.

    Accepts ``inline:<base64>`` with an optional ``|<lifetime>``; refuses an MKI (``|<n>:<len>``)
    because one key per direction is all SDES peers use in practice and libsrtp would need MKI
    indices configured to match.
    """
    first = key_params.strip().split(";", 1)[0]  # several keys: RFC 4568 allows ';'-separated
    if not first.startswith("inline:"):
        raise SrtpKeyError("SDES key parameter must start with 'inline:'")
    parts = first[len("inline:") :].split("|")
    if any(":" in p for p in parts[1:]):
        raise SrtpKeyError("SDES keys with an MKI are not supported")
    try:
        master = base64.b64decode(parts[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SrtpKeyError("SDES key is not valid base64") from exc
    _check_master(master)
    return master


def _check_master(master_key: bytes) -> None:
    if not isinstance(master_key, bytes) or len(master_key) != MASTER_LEN:
        raise SrtpKeyError(f"SRTP master key||salt must be {MASTER_LEN} bytes")


def _policy(master_key: bytes, suite: str, ssrc_type: int) -> pylibsrtp.Policy:
    _check_master(master_key)
    try:
        profile = _PROFILES[suite]
    except KeyError:
        raise SrtpKeyError(f"unsupported SRTP suite {suite!r}") from None
    return pylibsrtp.Policy(key=master_key, ssrc_type=ssrc_type, srtp_profile=profile)


class SrtpReceiver:
    """Verifies and decrypts one leg's inbound SRTP; any SSRC the peer uses is accepted.

    ``failures`` counts rejected packets by reason (``srtp_auth``, ``srtp_replay``, ...).
    """

    __slots__ = ("_session", "failures", "suite")

    def __init__(self, master_key: bytes, suite: SrtpSuite = "AES_CM_128_HMAC_SHA1_80") -> None:
        self.suite = suite
        self._session = pylibsrtp.Session(
            _policy(master_key, suite, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        )
        self.failures: dict[str, int] = {}

    def unprotect(self, packet: bytes) -> bytes | None:
        """Plain RTP, or ``None`` after counting why the packet was rejected."""
        result = self.unprotect_or_reason(packet)
        if isinstance(result, str):
            self.failures[result] = self.failures.get(result, 0) + 1
            return None
        return result

    def unprotect_or_reason(self, packet: bytes) -> bytes | str:
        """Plain RTP, or the drop reason; counts nothing.

        For a caller that keeps its own counters, or tries a second (pre-rekey) session before
        deciding the packet is bad, so a packet is counted once, where it is finally dropped.
        """
        try:
            return self._session.unprotect(packet)
        except pylibsrtp.Error as exc:
            return _REASONS.get(str(exc), "srtp_error")
        except ValueError:  # longer than libsrtp's 1500-byte buffer
            return "srtp_oversize"


class SrtpSender:
    """Protects outbound RTP; used by the test client, the benchmark and the tests."""

    __slots__ = ("_session", "suite")

    def __init__(self, master_key: bytes, suite: SrtpSuite = "AES_CM_128_HMAC_SHA1_80") -> None:
        self.suite = suite
        self._session = pylibsrtp.Session(
            _policy(master_key, suite, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )

    def protect(self, packet: bytes) -> bytes:
        return self._session.protect(packet)
