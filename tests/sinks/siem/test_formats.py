from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from callvault.audit import audit_event
from sinks.siem import formats
from tests.sinks.siem.parse import check_hec_event, parse_cef, parse_hec_body, parse_rfc5424

WHEN = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def event(action: str = "recording.decrypt", outcome: str = "SUCCESS", **kw: Any) -> dict:
    ev = audit_event(action, actor_kind="USER", actor_id="u-1", outcome=outcome, **kw)  # type: ignore[arg-type]
    ev["occurred_at"] = WHEN
    return ev


@pytest.mark.parametrize(("outcome", "severity"), [("SUCCESS", 6), ("FAILURE", 5), ("DENIED", 4)])
def test_rfc5424_header_pri_and_timestamp(outcome: str, severity: int) -> None:
    ev = event(outcome=outcome, workspace_id="ws1", target="call-9")
    msg = parse_rfc5424(formats.to_rfc5424(ev, hostname="node-1"))
    assert msg["pri"] == str(10 * 8 + severity)
    assert msg["version"] == "1"
    assert msg["timestamp"] == "2026-03-01T12:30:45.123456Z"
    assert (msg["hostname"], msg["app_name"], msg["procid"]) == ("node-1", "callvault", "-")
    assert msg["msgid"] == "recording.decrypt"
    sd = msg["sd"]["callvault@32473"]
    assert sd["eventId"] == ev["event_id"]
    assert (sd["workspace"], sd["outcome"], sd["target"]) == ("ws1", outcome, "call-9")
    local4 = parse_rfc5424(formats.to_rfc5424(ev, hostname="h", facility=formats.FACILITY_LOCAL4))
    assert local4["pri"] == str(20 * 8 + severity)


def test_rfc5424_timestamp_from_avro_micros() -> None:
    ev = event()
    ev["occurred_at"] = 1_772_368_245_123_456  # what fastavro gives without logical types
    assert parse_rfc5424(formats.to_rfc5424(ev, hostname="h"))["timestamp"] == (
        "2026-03-01T12:30:45.123456Z"
    )


def test_rfc5424_sd_escaping_msgid_sanitising_and_bom() -> None:
    tricky = 'a"b\\c]d=e'
    ev = event(action="weird action ünïcode." + "x" * 40, target=tricky, details={"k": "ä"})
    raw = formats.to_rfc5424(ev, hostname="host with space", payload="json")
    msg = parse_rfc5424(raw)
    assert msg["sd"]["callvault@32473"]["target"] == tricky
    assert len(msg["msgid"]) == 32 and msg["msgid"].startswith("weird_action_")
    assert msg["hostname"] == "host_with_space"
    assert msg["bom"] is True  # non-ASCII payload: UTF-8 with BOM
    assert json.loads(msg["msg"])["details"] == {"k": "ä"}
    ascii_msg = parse_rfc5424(formats.to_rfc5424(event(), hostname="h"))
    assert ascii_msg["bom"] is False


def test_cef_header_and_extension_escaping() -> None:
    ev = event(
        action="trunk|rotate\\x",
        outcome="DENIED",
        workspace_id="ws=1",
        target="a|b\\c\nd",
        details={"reason": "role=viewer"},
        region="eu",
    )
    ev["hash"] = bytes(range(4))
    text = formats.to_cef(ev)
    assert text.startswith("CEF:0|Callvault|Callvault|")
    assert "\n" not in text
    header, ext = parse_cef(text)
    assert header[4] == "trunk|rotate\\x" and header[6] == "7"
    assert header[5] == "trunk|rotate\\x denied"
    assert ext["externalId"] == ev["event_id"]
    assert ext["rt"] == str(int(WHEN.timestamp() * 1000))
    assert ext["suser"] == "u-1" and ext["outcome"] == "denied"
    labels = {ext[f"cs{n}Label"]: ext[f"cs{n}"] for n in range(1, 7) if f"cs{n}" in ext}
    assert labels == {
        "workspace": "ws=1",
        "region": "eu",
        "target": "a|b\\c\nd",
        "actorKind": "USER",
        "chainHash": "00010203",
    }
    assert json.loads(ext["msg"]) == {"reason": "role=viewer"}


def test_json_stable_order_iso_time_and_hex() -> None:
    ev = event(details={"b": "2", "a": "1"})
    ev["prev_hash"] = b"\x01\xff"
    text = formats.to_json(ev)
    assert text == formats.to_json(dict(reversed(list(ev.items()))))
    obj = json.loads(text)
    assert list(obj) == [
        "event_id", "occurred_at", "actor", "action", "workspace_id", "region", "target",
        "outcome", "details", "prev_hash", "hash", "signature",
    ]  # fmt: skip
    assert list(obj["details"]) == ["a", "b"]
    assert obj["occurred_at"] == "2026-03-01T12:30:45.123456Z"
    assert obj["prev_hash"] == "01ff" and obj["hash"] is None


@pytest.mark.parametrize(
    ("action", "class_uid", "activity_id"),
    [
        ("user.login", 3002, 1),
        ("user.logout", 3002, 2),
        ("trunk.issue", 3001, 1),
        ("trunk.rotate", 3001, 3),
        ("trunk.revoke", 3001, 5),
        ("recording.decrypt", 6003, 2),
        ("workspace.create", 6003, 1),
        ("workspace.erase", 6003, 4),
        ("retention.update", 6003, 3),
        ("thing.frobnicate", 6003, 99),
    ],
)
def test_ocsf_class_table(action: str, class_uid: int, activity_id: int) -> None:
    out = formats.to_ocsf(event(action=action, target="t-1"))
    assert (out["class_uid"], out["activity_id"]) == (class_uid, activity_id)
    assert out["type_uid"] == class_uid * 100 + activity_id
    assert out["category_uid"] == class_uid // 1000


def test_ocsf_fields() -> None:
    ev = event(outcome="DENIED", workspace_id="ws1", region="eu", details={"why": "rbac"})
    out = formats.to_ocsf(ev)
    assert out["metadata"]["uid"] == ev["event_id"]
    assert out["metadata"]["product"]["name"] == "Callvault"
    assert out["metadata"]["tenant_uid"] == "ws1"
    assert out["time"] == int(WHEN.timestamp() * 1000)
    assert out["actor"]["user"]["uid"] == "u-1"
    assert (out["status_id"], out["status"], out["severity_id"]) == (2, "Failure", 3)
    assert out["unmapped"] == {"details": {"why": "rbac"}, "region": "eu"}
    assert out["api"] == {"operation": "recording.decrypt"}
    key, value = formats.encode_ocsf(ev)
    assert key == ev["event_id"].encode() and json.loads(value) == out


# Request bodies from Splunk's "HTTP Event Collector examples" / "Format events for HTTP Event
# Collector" pages (help.splunk.com): a single event with metadata, and a batch of objects
# concatenated back to back.
DOCUMENTED_HEC_BODIES = [
    b'{"time": 1426279439, "host": "localhost", "source": "random-data-generator", '
    b'"sourcetype": "my_sample_data", "index": "main", "event": "Hello world!"}',
    b'{"event": "Pony 1 has left the barn"}{"event": "Pony 2 has left the barn"}'
    b'{"event": "Pony 3 has left the barn", "fields": {"nested": "value1"}}',
    b'{"event": "Hello, world!", "sourcetype": "manual", "host": "host_1.splunk.com"}'
    b'{"event": "something happened", "sourcetype": "manual", "host": "host_1.splunk.com", '
    b'"fields":{"severity":"INFO", "category":["foo","bar"]}}',
]


@pytest.mark.parametrize("body", DOCUMENTED_HEC_BODIES)
def test_hec_parser_accepts_documented_examples(body: bytes) -> None:
    objs = parse_hec_body(body)
    assert objs
    for obj in objs:
        check_hec_event(obj)


def test_to_hec_batch_matches_documented_shape() -> None:
    evs = [event(details={"n": str(i)}) for i in range(3)]
    body = formats.to_hec(evs, host="node-1", index="audit")
    assert body.startswith(b'{"time":') and b"}{" in body  # concatenated, like the docs' batch
    objs = parse_hec_body(body)
    assert len(objs) == 3
    for ev, obj in zip(evs, objs, strict=True):
        check_hec_event(obj)
        assert obj["time"] == pytest.approx(WHEN.timestamp())
        assert (obj["host"], obj["source"], obj["sourcetype"], obj["index"]) == (
            "node-1", "callvault", "callvault:audit", "audit",
        )  # fmt: skip
        assert obj["fields"] == {"event_id": ev["event_id"]}
        assert obj["event"] == json.loads(formats.to_json(ev))
    assert "index" not in parse_hec_body(formats.to_hec(evs[:1]))[0]


def test_octet_frame() -> None:
    raw = formats.to_rfc5424(event(details={"k": "ü"}), hostname="h")
    framed = formats.octet_frame(raw)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(raw)
