"""The single-object codec: wire format, round trips, and that bad input only ever fails cleanly."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import HEADER_SIZE, MAGIC, Codec, get_codec
from schemas.errors import (
    SchemaDecodeError,
    SchemaDefinitionError,
    SchemaEncodeError,
    SchemaError,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)

TOOL = {
    "name": "book_appointment",
    "invoked_at": T0 + timedelta(seconds=42),
    "duration_ms": 830,
    "status": "OK",
    "arguments_redacted": '{"date": "2025-03-20", "card": "[REDACTED]"}',
}

SAMPLES: dict[str, dict[str, Any]] = {
    "CallEvent": {
        "event_id": "6f1c2a9e-3d4b-4c8e-9a51-0b7d2f4e8c13",
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "kind": "ENDED",
        "occurred_at": T0 + timedelta(minutes=3, seconds=5),
        "call_started_at": T0,
        "answered_at": T0 + timedelta(seconds=4),
        "ended_at": T0 + timedelta(minutes=3, seconds=5),
        "duration_ms": 181_000,
        "caller_number": "+447911123456",
        "callee_number": "+442071838750",
        "direction": "INBOUND",
        "trunk_id": "trunk-7",
        "agent_id": "agent-ai-frontdesk",
        "codec": "PCMA",
        "end_reason": "CALLER_HANGUP",
        "recording_enabled": True,
        "suppressed": False,
        "suppression_reason": None,
        "tool_invocations": [TOOL, {**TOOL, "status": "ERROR", "duration_ms": None}],
        "packets_received": 9_050,
        "packets_lost": 3,
        "jitter_ms": 1.75,
        "audio_chunks": {"CALLER": 42, "AGENT": 41},
        "sip_call_id": "a84b4c76e66710@pbx.example.net",
        "ingest_node": "ingest-eu-1",
    },
    "SealedCallEvent": {
        "event_id": "6f1c2a9e-3d4b-4c8e-9a51-0b7d2f4e8c13",
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "region": "eu",
        "expires_at": T0 + timedelta(days=90),
        "kind": "ENDED",
        "occurred_at": T0 + timedelta(minutes=3, seconds=5),
        "call_started_at": T0,
        "answered_at": T0 + timedelta(seconds=4),
        "ended_at": T0 + timedelta(minutes=3, seconds=5),
        "duration_ms": 181_000,
        "caller_number_hash": "9f2c" * 16,
        "caller_number_masked": "+4479*******56",
        "callee_number_hash": "03be" * 16,
        "callee_number_masked": "+4420*******50",
        "direction": "INBOUND",
        "trunk_id": "trunk-7",
        "agent_id": "agent-ai-frontdesk",
        "codec": "PCMA",
        "end_reason": "CALLER_HANGUP",
        "recording_enabled": True,
        "suppressed": True,
        "suppression_reason": "caller-request",
        "tool_invocations": [TOOL],
        "packets_received": 9_050,
        "packets_lost": 3,
        "jitter_ms": 1.75,
        "audio_chunks": {"CALLER": 42, "AGENT": 41},
        "redaction_count": 2,
        "sealed_at": T0 + timedelta(minutes=3, seconds=5, milliseconds=40),
        "policy_version": 12,
        "numbers_ciphertext": b"CV\x01\x05ck-01" + bytes(12) + bytes(range(60)),
    },
    "SealedAudioChunk": {
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "region": "eu",
        "expires_at": T0 + timedelta(days=90),
        "leg": "AGENT",
        "seq": 41,
        "first_rtp_seq": 65_530,
        "rtp_timestamp": 4_294_960_000,
        "captured_at": T0 + timedelta(seconds=8, milliseconds=200),
        "codec": "PCMA",
        "sample_rate": 8000,
        "payload_bytes": 8000,
        "missing_packets": 0,
        "ciphertext": b"CV\x01\x05ck-01" + bytes(12) + bytes(range(256)) * 3,
        "sealed_at": T0 + timedelta(seconds=9),
        "policy_version": 12,
    },
    "SealedTranscriptSegment": {
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "region": "eu",
        "expires_at": T0 + timedelta(days=90),
        "segment_id": "summary",
        "kind": "SUMMARY",
        "speaker": "SYSTEM",
        "started_at": T0 + timedelta(minutes=4),
        "ended_at": None,
        "language": "en-GB",
        "confidence": None,
        "redaction_count": 1,
        "ciphertext": b"CV\x01\x05ck-01" + bytes(12) + b"\x9a" * 80,
        "sealed_at": T0 + timedelta(minutes=4, seconds=1),
        "policy_version": 12,
    },
    "AudioChunk": {
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "leg": "CALLER",
        "seq": 41,
        "first_rtp_seq": 65_530,
        "rtp_timestamp": 4_294_960_000,
        "captured_at": T0 + timedelta(seconds=8, milliseconds=200),
        "codec": "PCMU",
        "sample_rate": 8000,
        "payload": bytes(range(256)) * 6 + b"\xff" * 64,
        "missing_packets": 1,
        "call_started_at": T0,
        "agent_id": "agent-ai-frontdesk",
        "suppressed": False,
    },
    "TranscriptSegment": {
        "call_id": "call-01HQ7Z3K8M",
        "workspace_id": "ws-acme-eu",
        "segment_id": "seg-0007",
        "kind": "SEGMENT",
        "speaker": "CALLER",
        "text": "Hi, I'd like to move my appointment to Thursday — ideally after 3 pm.",
        "started_at": T0 + timedelta(seconds=12),
        "ended_at": T0 + timedelta(seconds=16, milliseconds=250),
        "language": "en-GB",
        "confidence": 0.9375,
        "call_started_at": T0,
        "agent_id": "agent-ai-frontdesk",
        "suppressed": False,
    },
    "AuditEvent": {
        "event_id": "0c7e1f3a-8d2b-4b6f-a1e9-5f3c7d9b2a40",
        "occurred_at": T0,
        "actor": {"kind": "USER", "id": "user-42", "workspace_id": "ws-acme-eu"},
        "action": "recording.decrypt",
        "workspace_id": "ws-acme-eu",
        "region": "eu",
        "target": "call-01HQ7Z3K8M",
        "outcome": "DENIED",
        "details": {"role": "analyst", "missing_permission": "recordings.decrypt"},
        "prev_hash": bytes.fromhex("aa" * 32),
        "hash": bytes.fromhex("bb" * 32),
        "signature": None,
    },
    "WorkspacePolicy": {
        "workspace_id": "ws-acme-eu",
        "name": "Acme Dental (EU)",
        "region": "eu",
        "retention_days": 30,
        "recording_default": True,
        "agent_recording": {"agent-human-7": False},
        "suppression_rules": ["caller_prefix:+4480"],
        "key_id": "key-ws-acme-eu-3",
        "version": 12,
        "updated_at": T0 - timedelta(days=2),
        "deleted": False,
    },
    "TrunkCredential": {
        "trunk_id": "trunk-7",
        "workspace_id": "ws-acme-eu",
        "username": "acme-eu-7",
        "realm": "sip.callvault.example",
        "ha1_md5": "5f4dcc3b5aa765d61d8327deb882cf99",
        "ha1_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "status": "ACTIVE",
        "version": 3,
        "updated_at": T0,
        "rotated_from": "acme-eu-7@2",
    },
    "Extension": {
        "workspace_id": "ws-acme-eu",
        "extension": "+442071838750",
        "agent_id": "agent-ai-frontdesk",
        "label": "front desk",
        "version": 2,
        "updated_at": T0,
        "updated_by": "olivia",
    },
    "IdentityRecord": {
        "id": "token:3f9a0c1d2e4b",
        "kind": "TOKEN",
        "status": "ACTIVE",
        "user_id": "alice",
        "workspace_id": None,
        "name": "laptop",
        "email": None,
        "memberships": {},
        "permissions": [],
        "secret_digest": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "expires_at": T0 + timedelta(days=90),
        "created_by": "alice",
        "created_at": T0,
        "version": 1,
        "updated_at": T0,
    },
    "KeyRecord": {
        "key_id": "key-call-01HQ7Z3K8M",
        "scope": "CALL",
        "workspace_id": "ws-acme-eu",
        "call_id": "call-01HQ7Z3K8M",
        "wrapped_key": bytes(12) + bytes(range(32)) + bytes(16),
        "wrapping_key_id": "key-ws-acme-eu-3",
        "algorithm": "AES-256-GCM",
        "created_at": T0,
        "destroyed": False,
        "call_started_at": T0 - timedelta(minutes=1),
    },
    "ErasureRequest": {
        "request_id": "er-2025-0007",
        "kind": "SUBJECT",
        "workspace_id": "ws-acme-eu",
        "subject_phone_hash": "9f2c" * 16,
        "requested_by": "user-dpo-1",
        "requested_at": T0 + timedelta(days=10),
        "reason": "GDPR art. 17 request, ticket DPO-311",
    },
    "DeletionCertificate": {
        "certificate_id": "cert-2025-0007",
        "request_id": "er-2025-0007",
        "workspace_id": "ws-acme-eu",
        "kind": "SUBJECT",
        "issued_at": T0 + timedelta(days=10, minutes=5),
        "items": [
            {
                "store": "s3",
                "locator": "eu/ws-acme-eu/call-01HQ7Z3K8M/recording.mp3.enc",
                "version": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
                "count": 1,
                "deleted_at": T0 + timedelta(days=10, minutes=1),
            },
            {
                "store": "clickhouse",
                "locator": "calls WHERE caller_number_hash = '9f2c…'",
                "version": None,
                "count": 14,
                "deleted_at": T0 + timedelta(days=10, minutes=2),
            },
        ],
        "key_ids_shredded": ["key-call-01HQ7Z3K8M"],
        "signature": b"\x30\x45" + bytes(range(69)),
        "signing_key_id": "cert-signing-1",
    },
    "DeadLetter": {
        "source_topic": "ingest.metadata",
        "partition": 3,
        "offset": 1_234_567,
        "key": b"call-01HQ7Z3K8M",
        "value": b"\xc3\x01not really avro",
        "reason": "unknown writer schema fingerprint",
        "error_type": "schemas.errors.SchemaDecodeError",
        "failed_at": T0,
        "stage": "redaction",
    },
}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return get_codec()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


# ------------------------------------------------------------------------- wire format


def test_samples_cover_every_message_type(codec: Codec) -> None:
    assert sorted(SAMPLES) == list(codec.names)


def test_fastavro_fingerprint_bytes_are_the_spec_single_object_header() -> None:
    # The Avro project's own vector (lang/ruby test_fingerprints.rb): schema "int" has
    # CRC-64-AVRO 0x7275d51a3f395c8f and single-object header C3 01 8F 5C 39 3F 1A D5 75 72.
    pcf = to_parsing_canonical_form(parse_schema("int"))
    assert crc64_avro(pcf.encode()) == 0x7275D51A3F395C8F
    assert bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO")) == bytes.fromhex("8f5c393f1ad57572")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_header_is_marker_plus_little_endian_crc64_of_canonical_form(
    codec: Codec, name: str
) -> None:
    pcf = to_parsing_canonical_form(parse_schema(codec.schema(name), named_schemas={}))
    expected_fp = struct.pack("<Q", crc64_avro(pcf.encode()))
    data = codec.encode(name, SAMPLES[name])
    assert codec.fingerprint(name) == expected_fp
    assert data[:HEADER_SIZE] == MAGIC + expected_fp


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_body_is_plain_avro_binary_any_reader_can_decode(codec: Codec, name: str) -> None:
    parsed = parse_schema(codec.schema(name), named_schemas={})
    body = codec.encode(name, SAMPLES[name])[HEADER_SIZE:]
    assert schemaless_reader(io.BytesIO(body), parsed, None) == SAMPLES[name]
    out = io.BytesIO()
    schemaless_writer(out, parsed, SAMPLES[name])
    assert out.getvalue() == body


def test_every_schema_documents_every_field(codec: Codec) -> None:
    undocumented: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, path)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "enum") and not node.get("doc"):
                undocumented.append(f"{path} ({node['name']})")
            for field in node.get("fields", []):
                if not field.get("doc"):
                    undocumented.append(f"{path}.{field['name']}")
                walk(field["type"], f"{path}.{field['name']}")
            for key in ("items", "values"):
                if key in node:
                    walk(node[key], path)

    for name in codec.names:
        walk(codec.schema(name), name)
    assert undocumented == []


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name])
    assert codec.decode(name, data) == SAMPLES[name]
    assert codec.decode_any(data) == (name, SAMPLES[name])


def test_decode_accepts_any_bytes_like(codec: Codec) -> None:
    data = codec.encode("AudioChunk", SAMPLES["AudioChunk"])
    assert codec.decode("AudioChunk", bytearray(data)) == SAMPLES["AudioChunk"]
    assert codec.decode("AudioChunk", memoryview(data)) == SAMPLES["AudioChunk"]


def test_fields_with_defaults_may_be_left_out(codec: Codec) -> None:
    started = {
        key: SAMPLES["CallEvent"][key]
        for key in (
            "event_id",
            "call_id",
            "workspace_id",
            "caller_number",
            "callee_number",
            "direction",
        )
    } | {"kind": "STARTED", "occurred_at": T0, "call_started_at": T0}
    decoded = codec.decode("CallEvent", codec.encode("CallEvent", started))
    assert decoded["recording_enabled"] is True
    assert decoded["suppressed"] is False
    assert decoded["tool_invocations"] == []
    assert decoded["answered_at"] is None
    assert decoded["end_reason"] is None
    key = codec.decode("KeyRecord", codec.encode("KeyRecord", _without("KeyRecord", "algorithm")))
    assert key["algorithm"] == "AES-256-GCM"
    policy = codec.decode(
        "WorkspacePolicy",
        codec.encode("WorkspacePolicy", _without("WorkspacePolicy", "retention_days")),
    )
    assert policy["retention_days"] == 90


def test_timestamps_come_back_as_aware_utc_datetimes(codec: Codec) -> None:
    plus_one = datetime(2025, 3, 14, 10, 26, 53, 589793, tzinfo=timezone(timedelta(hours=1)))
    record = SAMPLES["ErasureRequest"] | {"requested_at": plus_one}
    decoded = codec.decode("ErasureRequest", codec.encode("ErasureRequest", record))
    assert decoded["requested_at"] == plus_one
    assert decoded["requested_at"].tzinfo == UTC


def _without(name: str, *fields: str) -> dict[str, Any]:
    return {key: value for key, value in SAMPLES[name].items() if key not in fields}


# ------------------------------------------------------------------------- encode errors

ENCODE_ERRORS = [
    ({"kind": "HUNG_UP"}, r"^CallEvent\.kind: expected a CallEventKind symbol .*none of them"),
    ({"duration_ms": 181.5}, r"^CallEvent\.duration_ms: expected int or null, got float"),
    ({"recording_enabled": "false"}, r"^CallEvent\.recording_enabled: expected bool, got str"),
    ({"packets_lost": True}, r"^CallEvent\.packets_lost: expected int or null, got bool"),
    ({"packets_lost": 2**63}, r"^CallEvent\.packets_lost: int out of the 64-bit range"),
    ({"occurred_at": datetime(2025, 1, 1)}, r"^CallEvent\.occurred_at: .*timezone-aware"),
    ({"occurred_at": "2025-01-01T00:00:00Z"}, r"^CallEvent\.occurred_at: expected datetime"),
    ({"caller_number": None}, r"^CallEvent\.caller_number: expected str, got NoneType"),
    ({"caller_numbr": "+447911123456"}, r"^CallEvent: unknown field\(s\) caller_numbr"),
    ({"tool_invocations": None}, r"^CallEvent\.tool_invocations: expected list of record"),
    (
        {"tool_invocations": [TOOL, {**TOOL, "status": "TIMEOUT"}]},
        r"^CallEvent\.tool_invocations\[1\]\.status: expected a ToolInvocationStatus symbol",
    ),
    (
        {"tool_invocations": [{key: v for key, v in TOOL.items() if key != "invoked_at"}]},
        r"^CallEvent\.tool_invocations\[0\]\.invoked_at: required field is missing",
    ),
]


@pytest.mark.parametrize(("change", "message"), ENCODE_ERRORS)
def test_encode_rejects_records_that_do_not_fit(
    codec: Codec, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchemaEncodeError, match=message):
        codec.encode("CallEvent", SAMPLES["CallEvent"] | change)


def test_encode_names_a_missing_required_field(codec: Codec) -> None:
    with pytest.raises(SchemaEncodeError, match=r"^CallEvent\.callee_number: required field"):
        codec.encode("CallEvent", _without("CallEvent", "callee_number"))


def test_encode_errors_never_quote_the_value(codec: Codec) -> None:
    # Messages end up in logs and DeadLetter.reason; a phone number must not.
    with pytest.raises(SchemaEncodeError) as caught:
        codec.encode("CallEvent", SAMPLES["CallEvent"] | {"caller_number": 447911123456})
    assert "447911123456" not in str(caught.value)
    with pytest.raises(SchemaEncodeError) as caught:
        codec.encode("CallEvent", SAMPLES["CallEvent"] | {"direction": "+447911123456"})
    assert "447911123456" not in str(caught.value)


def test_encode_rejects_wrong_shapes_and_names(codec: Codec) -> None:
    with pytest.raises(SchemaEncodeError, match="expected record CallEvent"):
        codec.encode("CallEvent", [("call_id", "x")])  # type: ignore[arg-type]
    with pytest.raises(SchemaEncodeError, match=r"unknown message type 'Call'; known types: "):
        codec.encode("Call", SAMPLES["CallEvent"])
    with pytest.raises(SchemaEncodeError, match=r"int out of the 32-bit range"):
        codec.encode("AudioChunk", SAMPLES["AudioChunk"] | {"sample_rate": 2**31})
    with pytest.raises(SchemaEncodeError, match=r"details\['n'\]: expected str, got int"):
        codec.encode("AuditEvent", SAMPLES["AuditEvent"] | {"details": {"n": 3}})
    with pytest.raises(SchemaEncodeError, match=r"agent_recording: map keys must be str"):
        codec.encode("WorkspacePolicy", SAMPLES["WorkspacePolicy"] | {"agent_recording": {1: True}})


# ------------------------------------------------------------------------- decode errors


def test_decode_rejects_short_messages(codec: Codec) -> None:
    for data in (b"", b"\xc3", MAGIC + codec.fingerprint("CallEvent")[:7]):
        with pytest.raises(SchemaDecodeError, match=r"shorter than the 10-byte single-object"):
            codec.decode("CallEvent", data)


def test_decode_rejects_a_missing_marker(codec: Codec) -> None:
    data = codec.encode("CallEvent", SAMPLES["CallEvent"])
    with pytest.raises(SchemaDecodeError, match=r"marker C3 01 \(starts with 4f62\)"):
        codec.decode("CallEvent", b"Obj\x01" + data[4:])
    with pytest.raises(SchemaDecodeError, match="marker C3 01"):
        codec.decode_any(b"\x00" + data)


def test_decode_rejects_an_unknown_fingerprint(codec: Codec) -> None:
    data = codec.encode("CallEvent", SAMPLES["CallEvent"])
    forged = MAGIC + bytes(8) + data[HEADER_SIZE:]
    with pytest.raises(SchemaDecodeError, match=r"unknown writer schema fingerprint 0{16}"):
        codec.decode("CallEvent", forged)
    with pytest.raises(SchemaDecodeError, match="unknown writer schema fingerprint"):
        codec.decode_any(forged)


@pytest.mark.parametrize("written", sorted(SAMPLES))
def test_decode_rejects_a_message_of_another_type(codec: Codec, written: str) -> None:
    data = codec.encode(written, SAMPLES[written])
    for expected in codec.names:
        if expected != written:
            with pytest.raises(
                SchemaDecodeError, match=rf"expected a {expected} message, got a {written} message"
            ):
                codec.decode(expected, data)


def test_decode_rejects_non_bytes_such_as_a_tombstone(codec: Codec) -> None:
    with pytest.raises(SchemaDecodeError, match=r"got NoneType \(a tombstone"):
        codec.decode("WorkspacePolicy", None)  # type: ignore[arg-type]
    with pytest.raises(SchemaDecodeError, match=r"expected bytes, got str"):
        codec.decode_any("\xc3\x01")  # type: ignore[arg-type]


def test_decode_rejects_an_unknown_expected_type(codec: Codec) -> None:
    data = codec.encode("CallEvent", SAMPLES["CallEvent"])
    with pytest.raises(SchemaDecodeError, match="unknown message type 'Call'"):
        codec.decode("Call", data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_decode_rejects_every_truncation(codec: Codec, name: str) -> None:
    data = codec.encode(name, SAMPLES[name])
    for end in range(HEADER_SIZE, len(data)):
        with pytest.raises(SchemaDecodeError, match=rf"^{name}: body is truncated or corrupt"):
            codec.decode(name, data[:end])


def test_decode_rejects_trailing_bytes(codec: Codec) -> None:
    data = codec.encode("TranscriptSegment", SAMPLES["TranscriptSegment"])
    with pytest.raises(SchemaDecodeError, match=r"3 unexpected bytes after the record body"):
        codec.decode("TranscriptSegment", data + b"\x00\x00\x00")
    with pytest.raises(SchemaDecodeError, match="unexpected bytes after the record body"):
        codec.decode_any(data + data)


def test_decode_rejects_a_garbage_body(codec: Codec) -> None:
    header = MAGIC + codec.fingerprint("AuditEvent")
    # event_id claims 64 bytes, the message ends after 3: EOF inside a string.
    with pytest.raises(SchemaDecodeError, match=r"AuditEvent: body is truncated or corrupt"):
        codec.decode("AuditEvent", header + b"\x80\x01abc")
    # A valid AuditEvent prefix, then an enum index (ActorKind) far out of range.
    good = codec.encode("AuditEvent", SAMPLES["AuditEvent"])
    actor_kind_at = good.index(b"user-42") - 2  # zigzag varint before the id string's length
    corrupt = good[:actor_kind_at] + b"\x7e" + good[actor_kind_at + 1 :]
    with pytest.raises(SchemaDecodeError, match=r"AuditEvent: body is truncated or corrupt"):
        codec.decode("AuditEvent", corrupt)


def test_decode_rejects_invalid_utf8(codec: Codec) -> None:
    good = codec.encode("TranscriptSegment", SAMPLES["TranscriptSegment"])
    at = good.index(b"seg-0007")
    corrupt = good[:at] + b"\xff" + good[at + 1 :]
    with pytest.raises(SchemaDecodeError, match="UnicodeDecodeError"):
        codec.decode("TranscriptSegment", corrupt)


def test_errors_form_one_tree_and_are_not_retriable() -> None:
    for error in (SchemaEncodeError, SchemaDecodeError, SchemaDefinitionError):
        assert issubclass(error, SchemaError)
        assert error("x").retriable is False
    assert SchemaDecodeError("x", retriable=True).retriable is True


# ------------------------------------------------------------------------- properties

ENCODED = {name: get_codec().encode(name, sample) for name, sample in SAMPLES.items()}
FINGERPRINTS = [get_codec().fingerprint(name) for name in sorted(SAMPLES)]
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _decodes_or_fails_cleanly(codec: Codec, data: bytes) -> None:
    for name in ("CallEvent", "AuditEvent"):
        with contextlib.suppress(SchemaDecodeError):
            codec.decode(name, data)
    try:
        name, record = codec.decode_any(data)
    except SchemaDecodeError:
        return
    assert name in codec.names
    assert isinstance(record, dict)


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_schema_decode_error(data: bytes) -> None:
    _decodes_or_fails_cleanly(get_codec(), data)


@PROPERTY_SETTINGS
@given(st.sampled_from(FINGERPRINTS), st.binary(max_size=512))
def test_arbitrary_bodies_behind_a_valid_header_only_raise_schema_decode_error(
    fp: bytes, body: bytes
) -> None:
    _decodes_or_fails_cleanly(get_codec(), MAGIC + fp + body)


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(ENCODED)), st.data())
def test_corrupted_messages_only_raise_schema_decode_error(name: str, data: st.DataObject) -> None:
    message = bytearray(ENCODED[name])
    for _ in range(data.draw(st.integers(1, 4), label="corruptions")):
        at = data.draw(st.integers(0, len(message) - 1), label="at")
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]), label="action")
        if action == "flip":
            message[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif action == "drop":
            del message[at]
        else:
            message[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="inserted")
        if not message:
            break
    _decodes_or_fails_cleanly(get_codec(), bytes(message))


# ------------------------------------------------------------------------- loading


def test_get_codec_is_built_once() -> None:
    assert get_codec() is get_codec()


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py*"))
    return tmp_path / "schemas"


def test_a_copied_schema_directory_loads_identically(codec: Codec, schema_copy: Path) -> None:
    copied = Codec(schema_copy)
    assert copied.names == codec.names
    assert all(copied.fingerprint(n) == codec.fingerprint(n) for n in codec.names)


def _edit(path: Path, change: Any) -> None:
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def test_a_named_type_defined_twice_is_refused(schema_copy: Path) -> None:
    def define_leg_again(schema: dict[str, Any]) -> None:
        schema["fields"].append(
            {
                "name": "leg",
                "type": {"type": "enum", "name": "Leg", "symbols": ["A"]},
                "default": "A",
            }
        )

    _edit(schema_copy / "TranscriptSegment.avsc", define_leg_again)
    with pytest.raises(SchemaDefinitionError, match=r"callvault\.Leg is defined in both"):
        Codec(schema_copy)


def test_file_and_type_names_must_agree(schema_copy: Path) -> None:
    shutil.copy(schema_copy / "DeadLetter.avsc", schema_copy / "Parked.avsc")
    with pytest.raises(SchemaDefinitionError, match=r"Parked\.avsc: must hold one named type"):
        Codec(schema_copy)


def test_a_message_must_be_a_record(schema_copy: Path) -> None:
    orphan = {"type": "enum", "name": "Orphan", "namespace": "callvault", "symbols": ["A"]}
    (schema_copy / "Orphan.avsc").write_text(json.dumps(orphan))
    with pytest.raises(SchemaDefinitionError, match=r"Orphan\.avsc: a message schema must"):
        Codec(schema_copy)


def test_history_files_must_follow_the_naming_rule(schema_copy: Path) -> None:
    shutil.copy(
        schema_copy / "history" / "CallEvent.v1.avsc", schema_copy / "history" / "CallEvent.avsc"
    )
    with pytest.raises(SchemaDefinitionError, match=r"named <MessageName>\.v<N>\.avsc"):
        Codec(schema_copy)


def test_history_files_must_belong_to_a_current_message(schema_copy: Path) -> None:
    shutil.copy(
        schema_copy / "history" / "CallEvent.v1.avsc", schema_copy / "history" / "Call.v1.avsc"
    )
    with pytest.raises(SchemaDefinitionError, match=r"no current schema Call\.avsc"):
        Codec(schema_copy)


def test_history_files_must_be_self_contained(schema_copy: Path) -> None:
    # A plain copy of CallEvent.avsc references shared types by name: if it were accepted, it
    # would silently pick up later edits of those shared files.
    shutil.copy(schema_copy / "CallEvent.avsc", schema_copy / "history" / "CallEvent.v2.avsc")
    with pytest.raises(
        SchemaDefinitionError, match=r"history/CallEvent\.v2\.avsc .*self-contained"
    ):
        Codec(schema_copy)


def test_broken_json_is_reported_with_its_file(schema_copy: Path) -> None:
    (schema_copy / "DeadLetter.avsc").write_text("{")
    with pytest.raises(SchemaDefinitionError, match=r"DeadLetter\.avsc: not readable JSON"):
        Codec(schema_copy)


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaDefinitionError, match=r"no \.avsc files"):
        Codec(tmp_path)
