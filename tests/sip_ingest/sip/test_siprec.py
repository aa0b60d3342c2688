"""RFC 7865 recording metadata: participants, streams, labels, caller/callee, hostile XML."""

from __future__ import annotations

import pytest

from sip_ingest.sip import SipParseError, parse_recording_metadata
from tests.sip_ingest.sip.samples import RFC7865_METADATA, SIPREC_METADATA

BOB = "srfBElmCRp2QB23b7Mpk0w=="
PAUL = "zSfPoSvdSDCmU3A3TRDxAw=="


def test_rfc7865_example() -> None:
    md = parse_recording_metadata(RFC7865_METADATA)
    assert md.datamode == "complete"
    assert md.session_ids == ("hVpd7YQgRW2nD22h7q60JQ==",)
    bob, paul = md.participants
    assert (bob.participant_id, bob.aor, bob.name) == (BOB, "sip:bob@biloxi.com", "Bob")
    assert (paul.participant_id, paul.aor, paul.name) == (PAUL, "sip:Paul@biloxi.com", "Paul")
    assert bob.number == "bob" and paul.number == "Paul"
    assert [s.label for s in md.streams] == ["96", "97", "98", "99"]
    assert all(s.session_id == "hVpd7YQgRW2nD22h7q60JQ==" for s in md.streams)
    assert bob.send == ("i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw==")
    assert set(paul.recv) == set(bob.send)
    assert {label: p.participant_id for label, p in md.label_to_participant.items()} == {
        "96": BOB,
        "97": BOB,
        "98": PAUL,
        "99": PAUL,
    }
    caller, callee = md.caller_callee()
    assert caller is bob and callee is paul
    assert md.role_of_label("98") == "callee" and md.role_of_label("96") == "caller"
    assert md.role_of_label("nope") is None
    # SDP order overrides document order
    caller, callee = md.caller_callee(labels_in_sdp_order=["99", "96"])
    assert caller is paul and callee is bob
    assert md.participant(PAUL) is paul and md.participant("x") is None


def test_siprec_sample_caller_and_callee_numbers() -> None:
    md = parse_recording_metadata(SIPREC_METADATA)
    caller, callee = md.caller_callee()
    assert caller is not None and callee is not None
    assert (caller.number, caller.name) == ("+14155550100", "Alice Example")
    assert (callee.number, callee.name) == ("+4930555000", None)
    assert md.label_to_participant["1"] is caller and md.label_to_participant["2"] is callee


def test_legacy_send_recv_inside_participant_and_no_namespace() -> None:
    md = parse_recording_metadata(
        b"""<recording>
  <participant participant_id="a">
    <nameID aor="tel:+15551234"/><send>s1</send><recv>s2</recv>
  </participant>
  <participant participant_id="b"><nameID aor="sip:b@example.com"/><send>s2</send></participant>
  <stream stream_id="s1"><label>10</label></stream>
  <stream stream_id="s2"><label>11</label></stream>
</recording>"""
    )
    caller, callee = md.caller_callee()
    assert caller is not None and caller.number == "+15551234"
    assert callee is not None and callee.participant_id == "b"


def test_metadata_without_associations_gives_no_caller() -> None:
    md = parse_recording_metadata(
        b'<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>partial</datamode>'
        b'<stream stream_id="s1"><label>1</label></stream></recording>'
    )
    assert md.caller_callee() == (None, None) and md.datamode == "partial"
    assert md.label_to_participant == {}


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"not xml",
        b"<recording",
        b"<other xmlns='urn:ietf:params:xml:ns:recording:1'/>",
        b"<r:recording xmlns:r='urn:example:not-recording'/>",
        b"<recording><participant/></recording>",
        b"<recording><stream><label>1</label></stream></recording>",
        b"<recording><participantstreamassoc><send>x</send></participantstreamassoc></recording>",
        # billion laughs
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<recording>&lol2;</recording>",
        # external entity (XXE)
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<recording><datamode>&x;</datamode></recording>",
        # any DTD at all
        b'<?xml version="1.0"?><!DOCTYPE recording SYSTEM "http://example.com/r.dtd"><recording/>',
        # found by fuzzing: expat raises LookupError/UnicodeError for odd declared encodings
        b'<?xml version="1.0" encoding="TF-8"?><recording/>',
        b'<?xml version="1.0" encoding="idna"?><recording/>',
        b"<recording>" + b"<x/>" * 300 + b"</recording>",
        b"<recording>" + b" " * 300_000 + b"</recording>",
    ],
)
def test_hostile_or_malformed_documents(doc: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_recording_metadata(doc)
