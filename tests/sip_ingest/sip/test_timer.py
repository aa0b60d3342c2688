"""RFC 4028 negotiation, UAS side (section 9, table 2)."""

from __future__ import annotations

import pytest

from sip_ingest.sip.errors import SipError
from sip_ingest.sip.timer import SessionIntervalTooSmall, SessionTimer, negotiate


def nego(se: str | None, *, min_se: str | None = None, supported: str = "timer") -> object:
    return negotiate(
        session_expires=se, min_se=min_se, supported=supported.split(","), our_min_se=90,
        our_max=1800,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("se", "supported", "expected"),
    [
        ("600;refresher=uac", "timer", SessionTimer(600, "uac")),
        ("600;refresher=uas", "timer", SessionTimer(600, "uas")),
        ("600", "timer", SessionTimer(600, "uac")),  # the UAS chooses: the UAC refreshes
        ("600", "", SessionTimer(600, "uas")),  # UAC without timer support: we must refresh
        ("7200;refresher=uac", "timer", SessionTimer(1800, "uac")),  # reduced to our maximum
        (None, "timer, replaces", SessionTimer(1800, "uac")),
        (None, "", None),  # neither side asked: no timer (RTP inactivity still applies)
        ("600 ; Refresher = UAS", "timer", SessionTimer(600, "uas")),
    ],
)
def test_negotiation_table(se, supported, expected):
    assert nego(se, supported=supported) == expected


def test_too_small_an_interval_is_refused_with_our_min_se():
    with pytest.raises(SessionIntervalTooSmall) as exc:
        nego("30;refresher=uac")
    assert exc.value.status == 422 and exc.value.min_se == 90


def test_a_reduced_interval_never_goes_below_the_requests_min_se():
    assert nego("7200", min_se="3600") == SessionTimer(3600, "uac")


@pytest.mark.parametrize("bad", ["", "abc", "-5", "1e3", "99999999999;refresher=uac"])
def test_malformed_session_expires_is_a_400(bad):
    with pytest.raises(SipError) as exc:
        nego(bad)
    assert exc.value.status == 400


def test_response_headers_require_timer_only_when_the_uac_refreshes():
    assert SessionTimer(600, "uac").response_headers() == {
        "Session-Expires": "600;refresher=uac",
        "Require": "timer",
    }
    assert SessionTimer(600, "uas").response_headers() == {"Session-Expires": "600;refresher=uas"}
