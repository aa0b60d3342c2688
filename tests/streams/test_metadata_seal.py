"""The pure sealing step: region, expiry, no clear numbers, clear refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callvault.control.workspaces import WorkspacePolicy
from callvault.simulate import call_events
from schemas.codec import get_codec
from streams.errors import InvalidRecord, UnknownWorkspace, WorkspaceDeleted
from streams.governance import CallKey
from streams.metadata import mask_number, number_hash, seal_call_event

POLICY = WorkspacePolicy("acme", "Acme", "apac", retention_days=45, version=7)
KEY = CallKey("ck-test", bytes(range(32)))


def event(**changes):
    ev = call_events("acme", rng=random.Random(3)).events[-1]
    return {**ev, **changes}


def test_sealed_record_carries_region_expiry_and_policy_version():
    ev = event()
    sealed = seal_call_event(ev, POLICY, pepper=b"k", key=KEY)
    assert sealed["region"] == "apac"
    assert sealed["expires_at"] == ev["call_started_at"] + timedelta(days=45)
    assert sealed["policy_version"] == 7
    get_codec().encode("SealedCallEvent", sealed)  # fits the contract


def test_every_event_of_a_call_gets_the_same_expiry():
    call = call_events("acme", rng=random.Random(4))
    expiries = {
        seal_call_event(ev, POLICY, pepper=b"k", key=KEY)["expires_at"] for ev in call.events
    }
    assert len(expiries) == 1


def test_no_clear_number_survives_sealing():
    ev = event(caller_number="+44 7700 900123", callee_number="+1 (202) 555-0143")
    blob = get_codec().encode("SealedCallEvent", seal_call_event(ev, POLICY, pepper=b"k", key=KEY))
    for digits in ("447700900123", "7700900123", "12025550143", "900123"):
        assert digits.encode() not in blob


def test_masking_keeps_only_prefix_and_last_two_digits():
    assert mask_number("+44 7700 900123") == "+4477******23"
    assert mask_number("12345") == "*****"


def test_number_hash_is_keyed_and_per_workspace():
    a = number_hash(b"k1", "acme", "+44 7700 900123")
    assert a == number_hash(b"k1", "acme", "+447700900123")  # formatting does not matter
    assert a != number_hash(b"k2", "acme", "+447700900123")
    assert a != number_hash(b"k1", "globex", "+447700900123")


def test_agent_with_recording_off_is_flagged():
    policy = WorkspacePolicy("acme", "Acme", "eu", agent_recording={"agent-1": False})
    assert seal_call_event(event(), policy, pepper=b"k", key=KEY)["recording_enabled"] is False


@pytest.mark.parametrize(
    ("policy", "changes", "error"),
    [
        (None, {}, UnknownWorkspace),
        (WorkspacePolicy("acme", "Acme", "eu", deleted=True), {}, WorkspaceDeleted),
        (POLICY, {"caller_number": "anonymous"}, InvalidRecord),
        (POLICY, {"call_id": ""}, InvalidRecord),
        (POLICY, {"call_started_at": datetime.now(UTC) + timedelta(days=3)}, InvalidRecord),
    ],
)
def test_refusals_name_their_reason(policy, changes, error):
    with pytest.raises(error) as info:
        seal_call_event(event(**changes), policy, pepper=b"k", key=KEY)
    assert info.value.reason


@given(st.text(max_size=40))
def test_masking_never_reveals_more_than_seven_digits(number):
    masked = mask_number(number)
    assert sum(ch.isdigit() for ch in masked) <= 7
