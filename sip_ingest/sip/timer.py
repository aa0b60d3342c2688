"""RFC 4028 session timers, UAS side: the negotiation, as a pure function.

Why the node does this at all: an ingest node that misses a BYE (a PBX rebooted, a NAT binding
died) would otherwise hold the call, its RTP ports and its half-written recording forever. Session
timers make the *signalling* prove it is alive; the RTP-inactivity timer covers media, and a hard
maximum call length covers a peer that keeps both alive by mistake.

Who refreshes follows RFC 4028 section 9 (table 2): the UAC's ``refresher`` parameter is honoured;
without one, a UAC that supports timers refreshes itself (``uac``: least work for a node carrying a
thousand calls); a UAC that does not support timers gets no timer unless it asked for one, because
refreshing it would mean sending it requests it never said it understands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sip_ingest.sip.errors import SipError

Refresher = Literal["uac", "uas"]

#: RFC 4028 section 4: the smallest interval any party may ask for (the default Min-SE).
RFC_MIN_SE = 90


class SessionIntervalTooSmall(SipError):
    """Session-Expires below our Min-SE: answer 422 with a ``Min-SE`` header (RFC 4028 6)."""

    status = 422

    def __init__(self, requested: int, min_se: int) -> None:
        super().__init__(
            f"Session-Expires {requested} is below Min-SE {min_se}",
            reason="Session Interval Too Small",
        )
        self.min_se = min_se


@dataclass(frozen=True)
class SessionTimer:
    interval: int
    refresher: Refresher

    def response_headers(self) -> dict[str, str]:
        """What the 2xx carries: ``Require: timer`` whenever the UAC is to refresh (RFC 4028 9)."""
        headers = {"Session-Expires": f"{self.interval};refresher={self.refresher}"}
        if self.refresher == "uac":
            headers["Require"] = "timer"
        return headers

    @property
    def refresh_after(self) -> float:
        """When the refresher should act: half the interval (RFC 4028 10), leaving the other half
        for a lost UDP request to be retried."""
        return self.interval / 2


def _delta(value: str, header: str) -> tuple[int, dict[str, str]]:
    head, *params = (p.strip() for p in value.split(";"))
    if not head.isdigit() or len(head) > 10:
        raise SipError(f"{header}: {value!r} is not delta-seconds", status=400)
    parsed: dict[str, str] = {}
    for p in params:
        name, _, val = p.partition("=")
        parsed[name.strip().lower()] = val.strip().lower()
    return int(head), parsed


def negotiate(
    *,
    session_expires: str | None,
    min_se: str | None,
    supported: Iterable[str],
    our_min_se: int,
    our_max: int,
) -> SessionTimer | None:
    """The timer for a new dialog (or a refresh), or ``None`` when the dialog runs without one.

    ``our_min_se`` is the smallest interval we accept (RFC 4028 says 90 s; tests use less);
    ``our_max`` is the interval we prefer and reduce a larger request to.
    """
    uac_supports = "timer" in {t.strip().lower() for t in supported}
    if session_expires is None:
        if not uac_supports:
            return None
        return SessionTimer(max(our_max, our_min_se), "uac")
    requested, params = _delta(session_expires, "Session-Expires")
    if requested < our_min_se:
        raise SessionIntervalTooSmall(requested, our_min_se)
    floor = our_min_se
    if min_se is not None:
        floor = max(floor, _delta(min_se, "Min-SE")[0])
    # we may shorten the interval, never below the request's Min-SE (RFC 4028 9)
    interval = max(min(requested, our_max), min(floor, requested))
    refresher = params.get("refresher")
    if refresher not in ("uac", "uas"):
        refresher = "uac" if uac_supports else "uas"
    return SessionTimer(interval, refresher)  # type: ignore[arg-type]
