"""Avro single-object encoding for every Callvault topic.

Every topic value is framed as the Avro spec's *single-object encoding*: the marker ``C3 01``,
the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form,
then the Avro binary body. The fingerprint lets any reader, in any language, find the schema the
bytes were written with, so an old message stays readable after the schema moved on: the codec
keeps every released version of a schema (``history/<Name>.v<N>.avsc``) and resolves old bodies
against the current schema with Avro's schema-resolution rules.

Schemas are authored as one ``<Name>.avsc`` per named type. Types used by several messages (enums,
``ToolInvocation``) live in their own files marked ``"callvault.shared": true`` and are inlined at
their first use, so each message schema the codec works with is self-contained: its fingerprint
covers the shared types too, and a frozen history copy cannot change when a shared file does.

Speed: everything is parsed and compiled once per :class:`Codec`; ``encode`` and ``decode`` only
look up dictionaries, run a precompiled validator and call fastavro's C reader/writer.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.resources.abc import Traversable
from io import BytesIO
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.errors import (
    SchemaDecodeError,
    SchemaDefinitionError,
    SchemaEncodeError,
    SchemaError,
)

__all__ = ["HEADER_SIZE", "MAGIC", "Codec", "freeze", "get_codec"]

MAGIC: Final = b"\xc3\x01"
"""The two marker bytes that open every single-object-encoded message (Avro spec)."""

HEADER_SIZE: Final = 10
"""Marker plus the 8-byte fingerprint."""

SHARED_MARKER: Final = "callvault.shared"
"""Top-level property of a ``.avsc`` file that holds a type shared between messages rather than
a message of its own. Parsing Canonical Form drops it, so it never affects a fingerprint."""

_HISTORY_FILE: Final = re.compile(r"^(?P<name>[A-Za-z_]\w*)\.v(?P<version>[1-9]\d*)\.avsc$")
_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_NAMED_KINDS: Final = frozenset({"record", "error", "enum", "fixed"})
_INT32: Final = range(-(2**31), 2**31)
_INT64: Final = range(-(2**63), 2**63)

SchemaJSON = dict[str, Any]
SchemaDir = Traversable | str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# Public API


class Codec:
    """Encodes and decodes every Callvault message type; safe to share between threads.

    Construction parses and checks every schema file, so a broken contract fails at start-up, not
    on the first message. Use :func:`get_codec` for the package's own schemas; pass
    ``schema_dir`` to work with another directory (tests, tooling).
    """

    def __init__(self, schema_dir: SchemaDir | None = None) -> None:
        root = _as_traversable(schema_dir)
        self._current: dict[str, _Current] = _load_current(root)
        self._names = tuple(sorted(self._current))
        self._history: dict[str, dict[int, bytes]] = {name: {} for name in self._current}
        self._writers: dict[bytes, _Writer] = {
            current.fingerprint: _Writer(current.name, None, current.parsed, None)
            for current in self._current.values()
        }
        for name, version, parsed, fp in _load_history(root, self._current):
            self._history[name][version] = fp
            known = self._writers.get(fp)
            if known is None:
                reader = self._current[name].parsed
                self._writers[fp] = _Writer(name, version, parsed, reader)
            elif known.name != name:
                raise SchemaDefinitionError(
                    f"history/{name}.v{version}.avsc has the same fingerprint as a schema of "
                    f"{known.name}; one fingerprint must identify one message type"
                )

    @property
    def names(self) -> tuple[str, ...]:
        """Every message type this codec encodes, sorted."""
        return self._names

    def fingerprint(self, name: str) -> bytes:
        """The 8 bytes (little-endian CRC-64-AVRO) that follow the marker in messages of ``name``.

        Consumers can route on ``data[2:10]`` without decoding a body.
        """
        return self._lookup(name).fingerprint

    def schema(self, name: str) -> SchemaJSON:
        """The current, self-contained schema of ``name`` as JSON data (a copy).

        For tooling that derives other artefacts (table DDL, documentation) from the contract.
        """
        return copy.deepcopy(self._lookup(name).schema)

    def history(self, name: str) -> dict[int, bytes]:
        """Frozen versions of ``name``: version number to writer fingerprint."""
        return dict(self._history[self._lookup(name).name])

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` against the current schema of ``name`` and frame it.

        Validation is stricter than fastavro's writer on purpose: the writer silently truncates
        ``1.7`` to an int, writes ``"false"`` as boolean true, accepts a naive datetime as UTC and
        writes ints that overflow ``int``, all of which would reach every downstream store.
        Fields with a default may be left out; unknown fields are refused, as they are usually a
        misspelt field name.
        """
        current = self._lookup(name, SchemaEncodeError)
        try:
            current.check(record)
        except _Invalid as exc:
            raise SchemaEncodeError(f"{name}{exc.where()}: {exc.problem}") from None
        buf = BytesIO()
        buf.write(current.header)
        try:
            schemaless_writer(buf, current.parsed, record, strict_allow_default=True)
        except Exception as exc:
            # The validator should have caught it; keep the value out of the message anyway.
            raise SchemaEncodeError(
                f"{name}: fastavro refused the record ({type(exc).__name__})"
            ) from exc
        return buf.getvalue()

    def decode(self, name: str, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        """Decode a message that must be of type ``name``, in the shape of its current schema.

        Written with an older version, fields added since get their defaults and removed ones are
        dropped. A message of another type is refused rather than misread, because a topic mix-up
        would otherwise surface as confusing field errors (or not at all) further down the line.
        """
        writer = self._writer_of(data)
        if writer.name != name:
            self._lookup(name, SchemaDecodeError)
            raise SchemaDecodeError(
                f"expected a {name} message, got a {writer.name} message "
                f"(writer fingerprint {bytes(data[2:HEADER_SIZE]).hex()})"
            )
        return _read_body(writer, data)

    def decode_any(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
        """Decode a message of any known type; returns ``(type name, record)``.

        For topics that legitimately mix types (dead-letter topics, replay tooling).
        """
        writer = self._writer_of(data)
        return writer.name, _read_body(writer, data)

    def _lookup(self, name: str, error: type[SchemaError] = SchemaError) -> _Current:
        try:
            return self._current[name]
        except (KeyError, TypeError):
            raise error(
                f"unknown message type {name!r}; known types: {', '.join(self.names)}"
            ) from None

    def _writer_of(self, data: bytes | bytearray | memoryview) -> _Writer:
        if not isinstance(data, bytes | bytearray | memoryview):
            # Compacted control topics deliver deletes as a None value: say so, and keep the
            # promise that decoding only ever raises SchemaDecodeError.
            hint = " (a tombstone: handle deletes before decoding)" if data is None else ""
            raise SchemaDecodeError(f"expected bytes, got {_type_name(data)}{hint}")
        size = len(data)
        if size < HEADER_SIZE:
            raise SchemaDecodeError(
                f"message is {size} bytes, shorter than the {HEADER_SIZE}-byte single-object header"
            )
        if data[:2] != MAGIC:
            raise SchemaDecodeError(
                "message does not start with the Avro single-object marker C3 01 "
                f"(starts with {bytes(data[:2]).hex()})"
            )
        fp = bytes(data[2:HEADER_SIZE])
        writer = self._writers.get(fp)
        if writer is None:
            raise SchemaDecodeError(
                f"unknown writer schema fingerprint {fp.hex()}: not a Callvault message, or "
                "written with a schema version this build does not know (deploy consumers "
                "before producers)"
            )
        return writer


@functools.cache
def get_codec() -> Codec:
    """The process-wide codec for the package's schemas, built on first use."""
    return Codec()


def freeze(name: str, schema_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the current schema of ``name`` to ``history/`` as the next version; returns the path.

    Run after changing a message schema (tests insist on it). The copy is self-contained, shared
    types inlined, so later edits of a shared ``.avsc`` cannot alter a released version.
    """
    directory = Path(schema_dir) if schema_dir is not None else Path(__file__).parent
    codec = Codec(directory)
    frozen = codec.history(name)
    current_fp = codec.fingerprint(name)
    if frozen and frozen[max(frozen)] == current_fp:
        raise SchemaDefinitionError(
            f"{name} is unchanged on the wire since v{max(frozen)} (same fingerprint "
            f"{current_fp.hex()}); nothing to freeze"
        )
    version = max(frozen, default=0) + 1
    path = directory / "history" / f"{name}.v{version}.avsc"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(codec.schema(name), indent=2, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, slots=True)
class _Current:
    name: str
    schema: SchemaJSON
    parsed: SchemaJSON
    fingerprint: bytes
    header: bytes
    check: _Check


@dataclass(frozen=True, slots=True)
class _Writer:
    name: str
    version: int | None
    parsed: SchemaJSON
    reader: SchemaJSON | None
    """Current schema to resolve against, or None when the writer is the current schema (fastavro
    then skips resolution and a deep dict comparison)."""


def _as_traversable(schema_dir: SchemaDir | None) -> Traversable:
    if schema_dir is None:
        # Not importlib.resources.files(): under an editable install made before this package
        # had an __init__.py it resolves "schemas" as a namespace package and fails. The .avsc
        # files always sit next to this module (package-data, never zipped).
        return Path(__file__).parent
    if isinstance(schema_dir, str | os.PathLike):
        return Path(schema_dir)
    return schema_dir


def _read_json(entry: Traversable, label: str) -> Any:
    try:
        return json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaDefinitionError(f"{label}: not readable JSON ({exc})") from exc


def _load_current(root: Traversable) -> dict[str, _Current]:
    raw: dict[str, SchemaJSON] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc") or not entry.is_file():
            continue
        stem = entry.name.removesuffix(".avsc")
        doc = _read_json(entry, entry.name)
        if not isinstance(doc, dict) or doc.get("name") != stem:
            raise SchemaDefinitionError(
                f"{entry.name}: must hold one named type called {stem!r} (file name = type name)"
            )
        raw[stem] = doc
    if not raw:
        raise SchemaDefinitionError(f"no .avsc files in {root}")

    defined_in: dict[str, str] = {}
    for stem, doc in raw.items():
        for full in _defined_names(doc, ""):
            if full in defined_in:
                raise SchemaDefinitionError(
                    f"named type {full} is defined in both {defined_in[full]}.avsc and "
                    f"{stem}.avsc; move it to its own file marked {SHARED_MARKER!r}"
                )
            defined_in[full] = stem

    shared = {
        _fullname(doc["name"], doc.get("namespace", "")): doc
        for doc in raw.values()
        if doc.get(SHARED_MARKER) is True
    }
    current: dict[str, _Current] = {}
    for stem, doc in raw.items():
        if doc.get(SHARED_MARKER) is True:
            continue
        if doc.get("type") != "record":
            raise SchemaDefinitionError(
                f"{stem}.avsc: a message schema must be a record; mark shared types with "
                f"{SHARED_MARKER!r}"
            )
        schema = copy.deepcopy(_expand(doc, shared, set(), ""))
        parsed = _parse(schema, f"{stem}.avsc")
        fp = _fingerprint(parsed)
        current[stem] = _Current(stem, schema, parsed, fp, MAGIC + fp, _compile_validator(parsed))
    return current


def _load_history(
    root: Traversable, current: Mapping[str, _Current]
) -> Iterator[tuple[str, int, SchemaJSON, bytes]]:
    history = root / "history"
    if not history.is_dir():
        return
    for entry in sorted(history.iterdir(), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        match = _HISTORY_FILE.match(entry.name)
        if match is None:
            raise SchemaDefinitionError(
                f"history/{entry.name}: history files are named <MessageName>.v<N>.avsc"
            )
        name, version = match["name"], int(match["version"])
        if name not in current:
            raise SchemaDefinitionError(
                f"history/{entry.name}: no current schema {name}.avsc to read its data with"
            )
        label = f"history/{entry.name}"
        parsed = _parse(_read_json(entry, label), f"{label} (history files are self-contained)")
        yield name, version, parsed, _fingerprint(parsed)


def _parse(schema: SchemaJSON, label: str) -> SchemaJSON:
    try:
        parsed = parse_schema(schema, named_schemas={})
    except Exception as exc:
        raise SchemaDefinitionError(f"{label}: invalid Avro schema ({exc})") from exc
    if not isinstance(parsed, dict):  # pragma: no cover - schema is a dict, so is the result
        raise SchemaDefinitionError(f"{label}: not a named type")
    return parsed


def _fingerprint(parsed: SchemaJSON) -> bytes:
    # fastavro returns the hex of the 64-bit CRC in little-endian byte order, which is exactly
    # the byte order single-object encoding puts on the wire (checked against the Avro spec's
    # test vector in tests/schemas/test_codec.py).
    return bytes.fromhex(_avro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _fullname(name: str, namespace: str) -> str:
    if "." in name or name in _PRIMITIVES or not namespace:
        return name
    return f"{namespace}.{name}"


def _own_namespace(node: SchemaJSON, enclosing: str) -> tuple[str, str]:
    """Full name of a named type and the namespace its children inherit."""
    full = _fullname(node["name"], node.get("namespace", enclosing))
    return full, full.rpartition(".")[0]


def _defined_names(node: Any, namespace: str) -> Iterator[str]:
    if isinstance(node, list):
        for branch in node:
            yield from _defined_names(branch, namespace)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in _NAMED_KINDS and "name" in node:
        full, namespace = _own_namespace(node, namespace)
        yield full
    if kind in ("record", "error"):
        for field in node.get("fields", []):
            yield from _defined_names(field.get("type"), namespace)
    elif kind == "array":
        yield from _defined_names(node.get("items"), namespace)
    elif kind == "map":
        yield from _defined_names(node.get("values"), namespace)
    elif isinstance(kind, dict | list):
        yield from _defined_names(kind, namespace)


def _expand(node: Any, shared: Mapping[str, SchemaJSON], defined: set[str], namespace: str) -> Any:
    """Inline each shared type at its first reference; later references stay names (Avro allows
    a named type to be defined only once per schema)."""
    if isinstance(node, str):
        full = _fullname(node, namespace)
        if full in shared and full not in defined:
            return _expand(shared[full], shared, defined, namespace)
        return node
    if isinstance(node, list):
        return [_expand(branch, shared, defined, namespace) for branch in node]
    if not isinstance(node, dict):
        return node
    out = {key: value for key, value in node.items() if key != SHARED_MARKER}
    kind = node.get("type")
    if kind in _NAMED_KINDS and "name" in node:
        full, namespace = _own_namespace(node, namespace)
        defined.add(full)
    if kind in ("record", "error"):
        out["fields"] = [
            {**field, "type": _expand(field.get("type"), shared, defined, namespace)}
            for field in node.get("fields", [])
        ]
    elif kind == "array":
        out["items"] = _expand(node.get("items"), shared, defined, namespace)
    elif kind == "map":
        out["values"] = _expand(node.get("values"), shared, defined, namespace)
    elif isinstance(kind, dict | list) or (
        isinstance(kind, str) and kind not in _PRIMITIVES and kind not in _NAMED_KINDS
    ):
        out["type"] = _expand(kind, shared, defined, namespace)
    return out


# --------------------------------------------------------------------------------------------
# Decoding


def _read_body(writer: _Writer, data: bytes | bytearray | memoryview) -> dict[str, Any]:
    fo = BytesIO(data)
    fo.seek(HEADER_SIZE)
    try:
        record = schemaless_reader(fo, writer.parsed, writer.reader)
    except Exception as exc:
        # fastavro's messages describe the failure (EOF, bad index, bad UTF-8), not the data.
        detail = str(exc)[:200]
        raise SchemaDecodeError(
            f"{writer.name}{_version_label(writer)}: body is truncated or corrupt "
            f"({type(exc).__name__}{': ' + detail if detail else ''})"
        ) from exc
    end = fo.tell()
    if end != len(data):
        raise SchemaDecodeError(
            f"{writer.name}{_version_label(writer)}: {len(data) - end} unexpected bytes after "
            "the record body (concatenated or corrupt message)"
        )
    if not isinstance(record, dict):  # pragma: no cover - every message schema is a record
        raise SchemaDecodeError(f"{writer.name}: body did not decode to a record")
    return record


def _version_label(writer: _Writer) -> str:
    return "" if writer.version is None else f" (written as v{writer.version})"


# --------------------------------------------------------------------------------------------
# Validation: compiled once per schema into nested closures. Errors travel up as _Invalid,
# collecting the field path on the way, so the happy path builds no strings.

_Check = Callable[[Any], None]
_MISSING: Final = object()


class _Invalid(Exception):
    def __init__(self, problem: str, *, expected: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.expected = expected
        self.path: list[str] = []

    def where(self) -> str:
        return "".join(reversed(self.path))


def _mismatch(expected: str, value: Any) -> _Invalid:
    return _Invalid(f"expected {expected}, got {_type_name(value)}", expected=expected)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_null(value: Any) -> None:
    if value is not None:
        raise _mismatch("null", value)


def _check_boolean(value: Any) -> None:
    if value is not True and value is not False:
        raise _mismatch("bool", value)


def _check_int(value: Any) -> None:
    if not _is_integer(value):
        raise _mismatch("int", value)
    if value not in _INT32:
        raise _Invalid("int out of the 32-bit range of an Avro int")


def _check_long(value: Any) -> None:
    if not _is_integer(value):
        raise _mismatch("int", value)
    if value not in _INT64:
        raise _Invalid("int out of the 64-bit range of an Avro long")


def _check_floating(value: Any) -> None:
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise _mismatch("float", value)


def _check_string(value: Any) -> None:
    if not isinstance(value, str):
        raise _mismatch("str", value)


def _check_bytes(value: Any) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _mismatch("bytes", value)


def _check_timestamp(value: Any) -> None:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise _Invalid("expected a timezone-aware datetime, got a naive one")
    elif _is_integer(value):
        if value not in _INT64:
            raise _Invalid("timestamp out of the 64-bit range of an Avro long")
    else:
        raise _mismatch("datetime", value)


def _check_local_timestamp(value: Any) -> None:
    if not isinstance(value, datetime):
        _check_long(value)


def _check_anything(value: Any) -> None:
    """For logical types Callvault does not use; fastavro's writer is the only check."""


_PRIMITIVE_CHECKS: Final[Mapping[str, tuple[_Check, str]]] = {
    "null": (_check_null, "null"),
    "boolean": (_check_boolean, "bool"),
    "int": (_check_int, "int"),
    "long": (_check_long, "int"),
    "float": (_check_floating, "float"),
    "double": (_check_floating, "float"),
    "string": (_check_string, "str"),
    "bytes": (_check_bytes, "bytes"),
}
_LOGICAL_CHECKS: Final[Mapping[str, tuple[_Check, str]]] = {
    "timestamp-micros": (_check_timestamp, "datetime"),
    "timestamp-millis": (_check_timestamp, "datetime"),
    "local-timestamp-micros": (_check_local_timestamp, "datetime"),
    "local-timestamp-millis": (_check_local_timestamp, "datetime"),
}


def _compile_validator(parsed: SchemaJSON) -> _Check:
    return _compile(parsed, {})[0]


def _compile(node: Any, named: dict[str, tuple[_Check, str]]) -> tuple[_Check, str]:
    """Return a check for ``node`` and a short description of what it accepts."""
    if isinstance(node, str):
        if node in _PRIMITIVE_CHECKS:
            return _PRIMITIVE_CHECKS[node]
        if node in named:
            return named[node]
        # A reference to a type still being compiled (a recursive record): bind late.
        return (lambda value: named[node][0](value)), node.rpartition(".")[2]
    if isinstance(node, list):
        return _compile_union([_compile(branch, named) for branch in node])
    kind = node["type"]
    if kind in ("record", "error"):
        return _compile_record(node, named)
    if kind == "enum":
        return _compile_enum(node, named)
    if kind == "array":
        return _compile_array(_compile(node["items"], named))
    if kind == "map":
        return _compile_map(_compile(node["values"], named))
    if kind == "fixed":
        return _compile_fixed(node, named)
    logical = node.get("logicalType")
    if logical is not None:
        return _LOGICAL_CHECKS.get(logical, (_check_anything, logical))
    return _compile(kind, named)


def _compile_record(node: SchemaJSON, named: dict[str, tuple[_Check, str]]) -> tuple[_Check, str]:
    full = node["name"]
    description = f"record {full.rpartition('.')[2]}"
    fields: list[tuple[str, _Check, bool]] = []
    known = frozenset(field["name"] for field in node["fields"])

    def check(value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _mismatch(f"{description} (a mapping)", value)
        get = value.get
        for name, field_check, required in fields:
            item = get(name, _MISSING)
            if item is _MISSING:
                if required:
                    missing = _Invalid("required field is missing")
                    missing.path.append(f".{name}")
                    raise missing
                continue
            try:
                field_check(item)
            except _Invalid as exc:
                exc.path.append(f".{name}")
                raise
        if not known.issuperset(value.keys()):
            unknown = sorted(str(key) for key in value if key not in known)
            raise _Invalid(f"unknown field(s) {', '.join(unknown)} (not in the schema)")

    named[full] = (check, description)
    for field in node["fields"]:
        fields.append((field["name"], _compile(field["type"], named)[0], "default" not in field))
    return check, description


def _compile_enum(node: SchemaJSON, named: dict[str, tuple[_Check, str]]) -> tuple[_Check, str]:
    symbols = frozenset(node["symbols"])
    short = node["name"].rpartition(".")[2]
    listed = ", ".join(node["symbols"])

    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise _mismatch(f"a {short} symbol ({listed})", value)
        if value not in symbols:
            raise _Invalid(f"expected a {short} symbol ({listed}), got a str that is none of them")

    named[node["name"]] = (check, short)
    return check, short


def _compile_fixed(node: SchemaJSON, named: dict[str, tuple[_Check, str]]) -> tuple[_Check, str]:
    size = node["size"]
    description = f"{size} bytes"

    def check(value: Any) -> None:
        _check_bytes(value)
        if len(value) != size:
            raise _Invalid(f"expected exactly {size} bytes, got {len(value)}")

    named[node["name"]] = (check, description)
    return check, description


def _compile_array(items: tuple[_Check, str]) -> tuple[_Check, str]:
    item_check, item_description = items
    description = f"list of {item_description}"

    def check(value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise _mismatch(description, value)
        for index, item in enumerate(value):
            try:
                item_check(item)
            except _Invalid as exc:
                exc.path.append(f"[{index}]")
                raise

    return check, description


def _compile_map(values: tuple[_Check, str]) -> tuple[_Check, str]:
    value_check, value_description = values
    description = f"mapping of str to {value_description}"

    def check(value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _mismatch(description, value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(f"map keys must be str, got {_type_name(key)}")
            try:
                value_check(item)
            except _Invalid as exc:
                exc.path.append(f"[{key!r}]")
                raise

    return check, description


def _compile_union(branches: list[tuple[_Check, str]]) -> tuple[_Check, str]:
    description = " or ".join(branch_description for _, branch_description in branches)
    others = [branch for branch in branches if branch[0] is not _check_null]
    if len(branches) == 2 and len(others) == 1:
        other_check = others[0][0]

        def check_optional(value: Any) -> None:
            if value is None:
                return
            try:
                other_check(value)
            except _Invalid as exc:
                if exc.expected is not None and not exc.path:
                    raise _mismatch(f"{exc.expected} or null", value) from None
                raise

        return check_optional, description

    checks = [branch_check for branch_check, _ in branches]

    def check_any(value: Any) -> None:
        for branch_check in checks:
            try:
                branch_check(value)
            except _Invalid:
                continue
            return
        raise _mismatch(description, value)

    return check_any, description
