"""Schema evolution: data written with any released version must stay readable by the current code.

Two independent guards, so neither can pass by accident:

* a static checker of Avro's schema-resolution rules (:func:`reader_compatibility_problems`),
  run for every (current, historical) pair and proven able to fail on in-test schemas;
* a property test that writes random records with each historical schema, frames them exactly as
  an old producer would, and decodes them with today's codec.

Plus two bookkeeping guards: the current schema must be frozen in ``history/`` (so the next change
has something to be checked against), and frozen files must never change.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import MAGIC, Codec, freeze, get_codec
from schemas.errors import SchemaDecodeError, SchemaDefinitionError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
HISTORY_DIR = SCHEMA_DIR / "history"

# Fingerprints of released versions. Data with these fingerprints may sit in Kafka, replays and
# dead-letter topics, so a frozen file must never change. Add a line when you freeze a version;
# never edit one.
RELEASED = {
    "AudioChunk.v1": "6a3e125026be8fc6",
    "AudioChunk.v2": "ef0d532fd5e154b1",
    "AuditEvent.v1": "dcdd811967f3f99e",
    "CallEvent.v1": "8131b163458b6551",
    "CallEvent.v2": "583e1bbdced5f907",
    "DeadLetter.v1": "eb7c14e71a86fae6",
    "DeletionCertificate.v1": "e3d5daa492c5f384",
    "Extension.v1": "54b41f34f4e85dd6",
    "IdentityRecord.v1": "cb2cf915a5be9434",
    "ErasureRequest.v1": "58df765c4b0abd55",
    "KeyRecord.v1": "17dd760c502a685e",
    "KeyRecord.v2": "71b8ef96ef476292",
    "SealedAudioChunk.v1": "d08c4a892b76d330",
    "SealedCallEvent.v1": "d2d463e8f9687710",
    "SealedCallEvent.v2": "da0398d7a5cfb223",
    "SealedCallEvent.v3": "d06238174defe682",
    "SealedTranscriptSegment.v1": "1d32056898297201",
    "TranscriptSegment.v1": "897fe2f2220001f9",
    "TranscriptSegment.v2": "7b877aa043c766f0",
    "TrunkCredential.v1": "9eb662c5b6ad1840",
    "WorkspacePolicy.v1": "1bafa7504b4167bf",
}

Schema = Any


# ------------------------------------------------------------------------- the checker

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
_NAMED = ("record", "error", "enum", "fixed")


def parse(schema: Schema) -> Schema:
    return parse_schema(schema, named_schemas={})


def reader_compatibility_problems(reader: Schema, writer: Schema) -> list[str]:
    """Why data written with ``writer`` could not be read with ``reader``; empty if it can.

    Avro's resolution rules (spec, "Schema Resolution"), plus one stricter rule: a changed
    logical type is a problem, because the bytes would be read with a different meaning (a
    ``timestamp-millis`` read as ``timestamp-micros`` is off by 1000x) while the fingerprint,
    which ignores logical types, stays the same. Both schemas are fastavro-parsed (full names).
    """
    return _Resolver(reader, writer).problems


class _Resolver:
    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_named = dict(_named_types(reader))
        self.writer_named = dict(_named_types(writer))
        self.visiting: set[tuple[str, str]] = set()
        self.problems: list[str] = []
        self.check(reader, writer, _short(writer))

    def resolve(self, node: Schema, named: dict[str, Schema]) -> Schema:
        return named.get(node, node) if isinstance(node, str) else node

    def fits(self, reader: Schema, writer: Schema) -> bool:
        trial = _Resolver.__new__(_Resolver)
        trial.reader_named, trial.writer_named = self.reader_named, self.writer_named
        trial.visiting, trial.problems = set(self.visiting), []
        trial.check(reader, writer, "")
        return not trial.problems

    def check(self, reader: Schema, writer: Schema, path: str) -> None:
        reader = self.resolve(reader, self.reader_named)
        writer = self.resolve(writer, self.writer_named)
        if isinstance(writer, list):
            for branch in writer:
                if isinstance(reader, list):
                    if not any(self.fits(option, branch) for option in reader):
                        self.problems.append(
                            f"{path}: writer union branch {_describe(branch)} matches no branch "
                            f"of the reader union"
                        )
                else:
                    self.check(reader, branch, path)
            return
        if isinstance(reader, list):
            if not any(self.fits(option, writer) for option in reader):
                self.problems.append(f"{path}: no reader union branch reads {_describe(writer)}")
            return
        reader_kind, writer_kind = _kind(reader), _kind(writer)
        if reader_kind != writer_kind and (writer_kind, reader_kind) not in _PROMOTIONS:
            self.problems.append(f"{path}: {writer_kind} data cannot be read as {reader_kind}")
            return
        reader_logical, writer_logical = _logical(reader), _logical(writer)
        if reader_logical != writer_logical:
            self.problems.append(
                f"{path}: logical type changed from {writer_logical} to {reader_logical}"
            )
        if reader_kind in _NAMED and not _same_name(reader, writer):
            self.problems.append(
                f"{path}: {writer_kind} {writer['name']} cannot be read as {reader['name']} "
                f"(add the old name to the reader's aliases)"
            )
            return
        if reader_kind in ("record", "error"):
            self.check_record(reader, writer, path)
        elif reader_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.problems.append(
                    f"{path}: enum symbols {missing} were removed and the enum has no default"
                )
        elif reader_kind == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(f"{path}: fixed size changed {writer['size']}->{reader['size']}")
        elif reader_kind == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif reader_kind == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")

    def check_record(self, reader: Schema, writer: Schema, path: str) -> None:
        key = (reader["name"], writer["name"])
        if key in self.visiting:  # recursive type: already being checked further up
            return
        self.visiting.add(key)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            source = next((written[n] for n in names if n in written), None)
            if source is not None:
                self.check(field["type"], source["type"], f"{path}.{field['name']}")
            elif "default" not in field:
                self.problems.append(
                    f"{path}.{field['name']}: new field without a default; data written with "
                    f"the older schema has no value for it"
                )
        self.visiting.discard(key)


def _named_types(node: Schema) -> Iterator[tuple[str, Schema]]:
    if isinstance(node, list):
        for branch in node:
            yield from _named_types(branch)
    elif isinstance(node, dict):
        if node.get("type") in _NAMED:
            yield node["name"], node
        for field in node.get("fields", []):
            yield from _named_types(field["type"])
        for key in ("items", "values"):
            if key in node:
                yield from _named_types(node[key])
        if isinstance(node.get("type"), dict | list):
            yield from _named_types(node["type"])


def _kind(node: Schema) -> str:
    if isinstance(node, str):
        return node
    kind = node["type"]
    return kind if isinstance(kind, str) else _kind(kind)


def _logical(node: Schema) -> str | None:
    return node.get("logicalType") if isinstance(node, dict) else None


def _same_name(reader: Schema, writer: Schema) -> bool:
    namespace = reader["name"].rpartition(".")[0]
    aliases = {a if "." in a else f"{namespace}.{a}" for a in reader.get("aliases", [])}
    return writer["name"] == reader["name"] or writer["name"] in aliases


def _short(node: Schema) -> str:
    return node["name"].rpartition(".")[2] if isinstance(node, dict) and "name" in node else ""


def _describe(node: Schema) -> str:
    return node if isinstance(node, str) else node.get("name", _kind(node))


# ------------------------------------------------------------------------- the checker can fail

BASE = {
    "type": "record",
    "name": "Probe",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
    ],
}


def _changed(change: Any) -> Schema:
    schema = json.loads(json.dumps(BASE))
    change(schema)
    return schema


def _field(schema: Schema, name: str) -> Schema:
    return next(field for field in schema["fields"] if field["name"] == name)


INCOMPATIBLE = {
    "new required field": (
        lambda s: s["fields"].append({"name": "region", "type": "string"}),
        r"Probe\.region: new field without a default",
    ),
    "narrowed type": (
        lambda s: _field(s, "at").update(type="int"),
        r"Probe\.at: long data cannot be read as int",
    ),
    "changed type": (
        lambda s: _field(s, "count").update(type="string"),
        r"Probe\.count: int data cannot be read as string",
    ),
    "removed enum symbol": (
        lambda s: _field(s, "colour")["type"].update(symbols=["RED"]),
        r"Probe\.colour: enum symbols \['BLUE'\] were removed",
    ),
    "nullable made required": (
        lambda s: _field(s, "note").update(type="string", default="none"),
        r"Probe\.note: .*null",
    ),
    "changed logical type": (
        lambda s: _field(s, "at")["type"].update(logicalType="timestamp-millis"),
        r"Probe\.at: logical type changed from timestamp-micros to timestamp-millis",
    ),
    "renamed record": (
        lambda s: s.update(name="Sonde"),
        r"record test\.Probe cannot be read as test\.Sonde",
    ),
}

COMPATIBLE = {
    "unchanged": lambda s: None,
    "new field with default": lambda s: s["fields"].append(
        {"name": "region", "type": "string", "default": "eu"}
    ),
    "removed field": lambda s: s["fields"].remove(_field(s, "count")),
    "promoted int to long": lambda s: _field(s, "count").update(type="long"),
    "made nullable": lambda s: _field(s, "count").update(type=["null", "int"]),
    "added enum symbol": lambda s: _field(s, "colour")["type"].update(
        symbols=["RED", "BLUE", "GREEN"]
    ),
    "removed symbol with enum default": lambda s: _field(s, "colour")["type"].update(
        symbols=["RED", "OTHER"], default="OTHER"
    ),
    "renamed record with alias": lambda s: s.update(name="Sonde", aliases=["Probe"]),
    "renamed field with alias": lambda s: _field(s, "note").update(name="memo", aliases=["note"]),
}


@pytest.mark.parametrize("case", sorted(INCOMPATIBLE))
def test_the_checker_catches_incompatible_changes(case: str) -> None:
    change, message = INCOMPATIBLE[case]
    problems = reader_compatibility_problems(parse(_changed(change)), parse(BASE))
    assert problems, f"{case} was not detected"
    assert any(re.search(message, p) for p in problems), problems


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_the_checker_accepts_compatible_changes(case: str) -> None:
    problems = reader_compatibility_problems(parse(_changed(COMPATIBLE[case])), parse(BASE))
    assert problems == []


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_fastavro_agrees_with_the_checker_on_compatible_changes(case: str) -> None:
    # Keeps the checker honest: whatever it accepts, fastavro must actually resolve.
    writer, reader = parse(BASE), parse(_changed(COMPATIBLE[case]))
    record = {"id": "p-1", "count": 7, "at": 1_700_000_000_000_000, "note": "n", "colour": "RED"}
    out = io.BytesIO()
    schemaless_writer(out, writer, record)
    decoded: Any = schemaless_reader(io.BytesIO(out.getvalue()), writer, reader)
    assert decoded["id"] == "p-1"


# ------------------------------------------------------------------------- the real schemas


def history_files() -> list[tuple[str, int, Path]]:
    found = []
    for path in sorted(HISTORY_DIR.glob("*.avsc")):
        name, version = path.name.removesuffix(".avsc").rsplit(".v", 1)
        found.append((name, int(version), path))
    return found


def load_history(path: Path) -> Schema:
    return parse(json.loads(path.read_text()))


def current(codec: Codec, name: str) -> Schema:
    return parse(codec.schema(name))


def unfrozen_messages(codec: Codec) -> list[str]:
    """Message types whose current schema is not the latest frozen version."""
    return [
        name
        for name in codec.names
        if not codec.history(name)
        or codec.history(name)[max(codec.history(name))] != codec.fingerprint(name)
    ]


def test_every_current_schema_is_frozen_in_history() -> None:
    assert unfrozen_messages(get_codec()) == [], (
        "a schema changed without a frozen copy; after checking the change is compatible run "
        "python -c \"from schemas.codec import freeze; print(freeze('<Name>'))\" and add the "
        "new fingerprint to RELEASED in this file"
    )


def test_released_versions_never_change() -> None:
    on_disk = {
        f"{name}.v{version}": fingerprint(
            to_parsing_canonical_form(load_history(path)), "CRC-64-AVRO"
        )
        for name, version, path in history_files()
    }
    assert on_disk == RELEASED


@pytest.mark.parametrize(
    ("name", "version", "path"), history_files(), ids=[f"{n}.v{v}" for n, v, _ in history_files()]
)
def test_current_schema_reads_every_released_version(name: str, version: int, path: Path) -> None:
    problems = reader_compatibility_problems(current(get_codec(), name), load_history(path))
    assert problems == [], f"{name} can no longer read data written as v{version}"


# ------------------------------------------------------------------------- old data, decoded


def records(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Records that fit a parsed schema, leaving out fields with defaults some of the time."""
    named = dict(_named_types(schema))

    def build(node: Schema) -> st.SearchStrategy[Any]:
        node = named.get(node, node) if isinstance(node, str) else node
        if isinstance(node, list):
            return st.one_of([build(branch) for branch in node])
        kind = _kind(node)
        if _logical(node) in ("timestamp-micros", "timestamp-millis"):
            return st.datetimes(timezones=st.just(UTC))
        if kind in ("record", "error"):
            required = {f["name"]: build(f["type"]) for f in node["fields"] if "default" not in f}
            optional = {f["name"]: build(f["type"]) for f in node["fields"] if "default" in f}
            return st.fixed_dictionaries(required, optional=optional)
        if kind == "enum":
            return st.sampled_from(node["symbols"])
        if kind == "array":
            return st.lists(build(node["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), build(node["values"]), max_size=4)
        if kind == "fixed":
            return st.binary(min_size=node["size"], max_size=node["size"])
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "string": st.text(max_size=40),
            "bytes": st.binary(max_size=40),
        }[kind]

    return build(schema)


def encode_as_old_producer(writer: Schema, record: dict[str, Any]) -> bytes:
    """Single-object encoding done without the codec, the way any Avro producer would do it."""
    body = io.BytesIO()
    schemaless_writer(body, writer, record)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))
    return MAGIC + fp + body.getvalue()


def _same_type(reader: Schema, writer: Schema) -> bool:
    return json.dumps(reader, sort_keys=True) == json.dumps(writer, sort_keys=True)


@pytest.mark.parametrize(
    ("name", "version", "path"), history_files(), ids=[f"{n}.v{v}" for n, v, _ in history_files()]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_data_written_with_every_released_version_decodes(
    name: str, version: int, path: Path, data: st.DataObject
) -> None:
    codec = get_codec()
    writer = load_history(path)
    record = data.draw(records(writer), label="record")
    message = encode_as_old_producer(writer, record)

    decoded = codec.decode(name, message)

    as_written: Any = schemaless_reader(io.BytesIO(message[10:]), writer, None)
    reader = current(codec, name)
    assert set(decoded) == {field["name"] for field in reader["fields"]}
    written_fields = {field["name"]: field for field in writer["fields"]}
    for field in reader["fields"]:
        source = written_fields.get(field["name"])
        if source is not None and _same_type(field["type"], source["type"]):
            assert decoded[field["name"]] == as_written[field["name"]], field["name"]


# ------------------------------------------------------------------------- a change, end to end


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py*"))
    return tmp_path / "schemas"


def v1_call_event() -> dict[str, Any]:
    started = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    return {
        "event_id": "5b0a1c9e-0d3b-4c8e-9a51-0b7d2f4e8c13",
        "call_id": "call-7",
        "workspace_id": "ws-acme-eu",
        "kind": "ANSWERED",
        "occurred_at": started + timedelta(seconds=4),
        "call_started_at": started,
        "answered_at": started + timedelta(seconds=4),
        "ended_at": None,
        "duration_ms": None,
        "caller_number": "+447911123456",
        "callee_number": "+442071838750",
        "direction": "INBOUND",
        "trunk_id": "trunk-7",
        "agent_id": "agent-1",
        "codec": "PCMU",
        "end_reason": None,
        "recording_enabled": True,
        "suppressed": False,
        "suppression_reason": None,
        "tool_invocations": [],
        "packets_received": None,
        "packets_lost": None,
        "jitter_ms": None,
        "sip_call_id": "a84b4c76e66710@pbx.example.net",
        "ingest_node": "ingest-eu-1",
    }


def _add_field(schema_dir: Path, name: str, field: dict[str, Any]) -> None:
    path = schema_dir / f"{name}.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(field)
    path.write_text(json.dumps(schema, indent=2))


def test_a_compatible_change_reads_old_data_and_is_frozen_as_the_next_version(
    schema_copy: Path,
) -> None:
    _add_field(
        schema_copy,
        "CallEvent",
        {"name": "queue_id", "type": ["null", "string"], "default": None, "doc": "ACD queue."},
    )
    evolved = Codec(schema_copy)
    old_message = get_codec().encode("CallEvent", v1_call_event())

    decoded = evolved.decode("CallEvent", old_message)

    assert decoded == v1_call_event() | {"audio_chunks": None, "queue_id": None}
    assert unfrozen_messages(evolved) == ["CallEvent"]  # the guard above would now fail
    path = freeze("CallEvent", schema_copy)
    assert path == schema_copy / "history" / "CallEvent.v3.avsc"
    refrozen = Codec(schema_copy)
    assert unfrozen_messages(refrozen) == []
    assert sorted(refrozen.history("CallEvent")) == [1, 2, 3]
    assert refrozen.decode("CallEvent", old_message) == decoded
    with pytest.raises(SchemaDefinitionError, match="nothing to freeze"):
        freeze("CallEvent", schema_copy)
    for version in (1, 2, 3):
        released = load_history(schema_copy / "history" / f"CallEvent.v{version}.avsc")
        assert reader_compatibility_problems(current(refrozen, "CallEvent"), released) == []


def test_an_incompatible_change_is_caught_by_the_checker_and_by_decoding(
    schema_copy: Path,
) -> None:
    _add_field(schema_copy, "CallEvent", {"name": "queue_id", "type": "string", "doc": "Queue."})
    evolved = Codec(schema_copy)
    v1 = load_history(schema_copy / "history" / "CallEvent.v1.avsc")

    problems = reader_compatibility_problems(current(evolved, "CallEvent"), v1)

    assert problems == [
        "CallEvent.queue_id: new field without a default; data written with the older schema "
        "has no value for it"
    ]
    old_message = get_codec().encode("CallEvent", v1_call_event())
    with pytest.raises(SchemaDecodeError, match=r"CallEvent \(written as v2\)"):
        evolved.decode("CallEvent", old_message)
