"""Subject access export: everything a workspace holds about one phone number, in one archive.

A data subject may ask for a copy of their data (GDPR art. 15). Numbers are stored only as keyed
hashes, so the subject's calls are found by hashing the number the way the metadata sealer did
and asking the analytics store, in a session the engine confines to the workspace, for every call
where that hash is the caller *or* the callee. Their rows (calls, call events, tool invocations,
transcript segments without the ciphertext) and their recordings, transcripts and summaries go
into one tar, with ``manifest.json`` naming every file with its SHA-256 and size.

The tar never touches the disk in clear: it is streamed through the project's segmented AEAD
(:mod:`callvault.crypto.segmented`) into a 0600 file, under a key derived from a passphrase with
scrypt, so the archive can travel by any channel and the passphrase by another. File layout::

    offset   size    field
    0        6       magic, ASCII "CVDSAR"
    6        1       format version, 0x01
    7        16      scrypt salt, random (n=2**15, r=8, p=1, 32-byte key)
    23       2+W     u16be W, workspace id (UTF-8)
    25+W     2+R     u16be R, request id
    27+W+R   2+G     u16be G, region
    ...              segmented ciphertext of the tar, key id "dsar-scrypt"

Workspace, request id and region are in clear so the recipient's tool can build the
:class:`~callvault.crypto.envelope.Aad` (kind ``dsar-archive``); they go into the segmented
AEAD's key derivation, so changing any of them (or the salt) fails authentication.

A call whose key was shredded (erased, or expired) is listed as ``erased`` with no content; a
call with rows but no stored artifacts (recording off, suppressed, not finished) as ``missing``.
The export is audited (``dsar.export``, never the clear number) before the archive is published
under its final name: an export that cannot be audited is not released.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import shutil
import struct
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final, cast

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from callvault.analytics_client import query
from callvault.artifacts import artifact_aad, decrypt_artifact, locate_manifest
from callvault.audit import AuditLog, audit_event
from callvault.control.keys import Keys, open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.crypto.envelope import KEY_SIZE, Aad
from callvault.crypto.errors import DecryptionFailed, KeyDestroyed, KeyNotFound
from callvault.crypto.segmented import Encryptor, decrypt_stream, plaintext_size
from callvault.errors import CallvaultError
from callvault.files import PRIVATE_MODE, fsync_dir
from callvault.settings import Settings
from sinks.errors import SinkError, SinkRejected
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from streams.metadata import mask_number, normalise_number, number_hash

FORMAT: Final = "callvault-dsar"
MAGIC: Final = b"CVDSAR"
VERSION: Final = 1
AAD_KIND: Final = "dsar-archive"
KEY_ID: Final = "dsar-scrypt"
SALT_SIZE: Final = 16
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MIN_PASSPHRASE: Final = 16
MANIFEST: Final = "manifest.json"
CALLS: Final = "calls.json"
_ARTIFACT_FILES: Final[dict[layout.Artifact, str]] = {
    "recording": "recording.mp3",
    "transcript": "transcript.json",
    "summary": "summary.json",
}
_READ_SIZE: Final = 1 << 20

OnProgress = Callable[[int, int], None]
"""Called with (calls done, calls in total) as the export goes."""


class DsarError(CallvaultError):
    """A subject access export or archive could not be produced or opened; nothing was
    released (no archive published, no directory left behind)."""


@dataclass(frozen=True)
class Subject:
    """Who the request is about, in the only forms that may be written down: the keyed hash
    (what the stores hold) and the masked number (what a person recognises)."""

    workspace_id: str
    number_hash: str
    masked: str

    @classmethod
    def of(cls, settings: Settings, workspace_id: str, number: str) -> Subject:
        if sum(ch.isdigit() for ch in normalise_number(number)) < 3:
            raise DsarError("--phone must be a phone number (at least 3 digits)")
        pepper = settings.hash_pepper.get_secret_value().encode()
        return cls(workspace_id, number_hash(pepper, workspace_id, number), mask_number(number))

    @property
    def target(self) -> str:
        """The audit target: enough to find every export of one subject, not to dial them."""
        return f"subject:{self.number_hash[:16]}"


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """scrypt: memory-hard, so a stolen archive's passphrase costs real hardware to guess."""
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# export


async def export_subject(
    settings: Settings,
    workspace_id: str,
    number: str,
    out: Path,
    passphrase: str,
    *,
    actor: str,
    progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Write the subject's encrypted archive to ``out`` (0600, never overwritten) and audit it.

    The caller has checked the permission; ``actor`` is who the audit event names.
    """
    if len(passphrase) < MIN_PASSPHRASE:
        raise DsarError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    if await asyncio.to_thread(out.exists):
        raise DsarError(f"{out} already exists; an archive is never overwritten")
    subject = Subject.of(settings, workspace_id, number)
    async with WorkspaceDirectory(settings) as directory:
        region = directory.get(workspace_id).region
    tables = await asyncio.to_thread(_subject_rows, settings, subject)
    request_id = f"dsar-{uuid.uuid4().hex}"
    about = {
        "format": FORMAT, "version": VERSION, "request_id": request_id,
        "workspace_id": workspace_id, "region": region,
        "exported_at": datetime.now(UTC).isoformat(), "exported_by": actor,
        "subject": {"number_masked": subject.masked, "number_hash": subject.number_hash},
    }  # fmt: skip
    store = ObjectStore(settings, region)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        async with open_keys(settings) as keys:
            aad = Aad(workspace_id, request_id, AAD_KIND, region)
            writer = await asyncio.to_thread(_ArchiveWriter.create, tmp, passphrase, aad)
            try:
                manifest = await _fill(writer, keys, store, subject, tables, about, progress)
                sha256, size = await asyncio.to_thread(writer.close)
            except BaseException:
                await asyncio.to_thread(writer.abort)
                raise
            counts = {
                "calls": len(manifest["calls"]), "files": len(manifest["files"]),
                "exported": sum(c["status"] == "exported" for c in manifest["calls"]),
                "erased": len(manifest["erased"]), "missing": len(manifest["missing"]),
            }  # fmt: skip
            # audited before the archive is published: an export that cannot be audited fails
            await AuditLog(settings, keys.store.producer).record(
                audit_event(
                    "dsar.export", actor_kind="USER", actor_id=actor, workspace_id=workspace_id,
                    region=region, target=subject.target,
                    details={"request_id": request_id, "subject_hash": subject.number_hash,
                             **counts, "archive_sha256": sha256, "bytes": size},
                )
            )  # fmt: skip
        _publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        store.close()
    return {
        "request_id": request_id, "workspace_id": workspace_id, "subject": subject.masked,
        **counts, "erased": manifest["erased"], "missing": manifest["missing"],
        "archive": str(out), "archive_sha256": sha256, "bytes": size,
        "exported_at": about["exported_at"],
    }  # fmt: skip


async def _fill(
    writer: _ArchiveWriter, keys: Keys, store: ObjectStore, subject: Subject,
    tables: dict[str, list[dict[str, Any]]], about: dict[str, Any], progress: OnProgress | None,
) -> dict[str, Any]:  # fmt: skip
    """Put the rows, then each call's artifacts, then the manifest listing them all."""
    await asyncio.to_thread(writer.add_bytes, CALLS, _json_bytes(tables))
    calls, listed = tables["calls"], []
    for done, row in enumerate(calls, start=1):
        status, members = await _plan_call(keys, store, subject, row)
        files = [await asyncio.to_thread(writer.add_artifact, store, m) for m in members]
        listed.append(_call_entry(row, subject, status, files))
        if progress is not None:
            progress(done, len(calls))
    manifest = {
        **about,
        "calls": listed,
        "erased": [c["call_id"] for c in listed if c["status"] == "erased"],
        "missing": [c["call_id"] for c in listed if c["status"] == "missing"],
        "files": list(writer.files),  # manifest.json cannot list itself
    }
    await asyncio.to_thread(writer.add_bytes, MANIFEST, _json_bytes(manifest))
    return manifest


def _subject_rows(settings: Settings, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """Blocking: the subject's rows of every analytics table, through the worker, in a session
    the engine confines to the workspace (whatever this SQL says). The hash is hex, so it is safe
    inline; call ids are selected by a subquery, never interpolated."""
    db, h = settings.clickhouse.database, subject.number_hash
    match = f"caller_number_hash = '{h}' OR callee_number_hash = '{h}'"
    of_subject = f"call_id IN (SELECT call_id FROM {db}.calls FINAL WHERE {match})"  # noqa: S608
    sql = {
        "calls": _select(db, "calls", match, "call_started_at, call_id"),
        "call_events": _select(db, "call_events", of_subject, "call_id, occurred_at, event_id"),
        "tool_invocations": _select(db, "tool_invocations", of_subject, "call_id, idx"),
        # the text is sealed ciphertext here; the transcript document carries it in clear
        "transcript_segments": _select(
            db, "transcripts", of_subject, "call_id, started_at, segment_id",
            columns="* EXCEPT (ciphertext_b64)",
        ),
    }  # fmt: skip
    tables = {}
    for name, statement in sql.items():
        result = query(settings, statement, workspace=subject.workspace_id)
        tables[name] = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return tables


def _select(db: str, table: str, where: str, order: str, columns: str = "*") -> str:
    return f"SELECT {columns} FROM {db}.{table} FINAL WHERE {where} ORDER BY {order}"  # noqa: S608


@dataclass(frozen=True)
class _Member:
    """One artifact to put in the archive, its key already looked up."""

    path: str
    call_id: str
    artifact: layout.Artifact
    entry: dict[str, Any]
    key: bytes
    aad: Aad


async def _plan_call(
    keys: Keys, store: ObjectStore, subject: Subject, row: dict[str, Any]
) -> tuple[str, list[_Member]]:
    """(status, artifacts to export): every key is looked up before any byte is written, so a
    call shredded in part is never half exported."""
    ws, call_id = subject.workspace_id, row["call_id"]
    try:
        started = datetime.fromisoformat(row["call_started_at"])
        manifest = await locate_manifest(store, ws, call_id, started)
    except SinkRejected:  # an id no object key can hold: nothing of it was ever archived
        manifest = None
    except SinkError as exc:
        raise DsarError(f"object store: {exc}", retriable=exc.retriable) from None
    if manifest is None:
        records = await keys.store.by_call(ws, call_id)
        return ("erased" if any(r["destroyed"] for r in records) else "missing"), []
    members = []
    for artifact, name in _ARTIFACT_FILES.items():
        entry = manifest["artifacts"].get(artifact)
        if entry is None:
            continue
        try:
            key = await keys.ring.key_for(entry["key_id"], workspace_id=ws, call_id=call_id)
        except (KeyDestroyed, KeyNotFound):
            return "erased", []
        aad = artifact_aad(ws, call_id, artifact, manifest)
        members.append(_Member(f"calls/{call_id}/{name}", call_id, artifact, entry, key, aad))
    return "exported", members


def _call_entry(
    row: dict[str, Any], subject: Subject, status: str, files: list[str]
) -> dict[str, Any]:
    as_caller = row["caller_number_hash"] == subject.number_hash
    as_callee = row["callee_number_hash"] == subject.number_hash
    return {
        "call_id": row["call_id"],
        "call_started_at": row["call_started_at"],
        "role": "caller and callee" if as_caller and as_callee else
                "caller" if as_caller else "callee",
        "status": status,
        "files": files,
    }  # fmt: skip


class _ArchiveWriter:
    """Blocking: a tar streamed through the encryptor into a private file; only ciphertext
    reaches the disk. Tracks what ``manifest.json`` must list."""

    def __init__(self, fh: IO[bytes], encryptor: Encryptor) -> None:
        self._fh = fh
        self._encryptor = encryptor
        self._digest = hashlib.sha256()
        self._size = 0
        self.files: list[dict[str, Any]] = []
        self._tar = tarfile.open(  # noqa: SIM115 (closed in close)
            fileobj=cast(IO[bytes], _Sink(self)), mode="w|", format=tarfile.PAX_FORMAT
        )
        self._mtime = int(datetime.now(UTC).timestamp())

    @classmethod
    def create(cls, path: Path, passphrase: str, aad: Aad) -> _ArchiveWriter:
        salt = os.urandom(SALT_SIZE)
        encryptor = Encryptor(derive_key(passphrase, salt), KEY_ID, aad)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)  # whatever the umask
        writer = cls(os.fdopen(fd, "wb"), encryptor)
        writer._emit(_file_header(salt, aad))
        return writer

    def _emit(self, ciphertext: bytes) -> None:
        if ciphertext:
            self._fh.write(ciphertext)
            self._digest.update(ciphertext)
            self._size += len(ciphertext)

    def encrypt(self, plaintext: bytes) -> None:
        self._emit(self._encryptor.update(plaintext))

    def add_bytes(self, path: str, data: bytes) -> None:
        self._add(path, len(data), io.BytesIO(data))
        self.files.append(_file_entry(path, hashlib.sha256(data).hexdigest(), len(data)))

    def add_artifact(self, store: ObjectStore, member: _Member) -> str:
        """Stream one stored artifact into the tar; its hash must match the call's manifest."""
        entry = member.entry
        try:
            expected = plaintext_size(entry["size"], entry["key_id"])
            reader = _PlaintextReader(decrypt_artifact(store, entry, member.key, member.aad))
            self._add(member.path, expected, io.BufferedReader(reader, _READ_SIZE))
            reader.drain()
        except (DecryptionFailed, SinkError, OSError) as exc:
            raise DsarError(
                f"{member.artifact} of call {member.call_id} could not be read: {exc}"
            ) from None
        if reader.size != expected or reader.sha256 != entry["plaintext_sha256"]:
            raise DsarError(
                f"{member.artifact} of call {member.call_id} does not match its manifest hash"
            )
        self.files.append(
            _file_entry(member.path, reader.sha256, reader.size, call_id=member.call_id,
                        artifact=member.artifact)
        )  # fmt: skip
        return member.path

    def _add(self, path: str, size: int, fileobj: IO[bytes]) -> None:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = size, 0o600, self._mtime
        self._tar.addfile(info, fileobj)

    def close(self) -> tuple[str, int]:
        """Finish tar and ciphertext, make them durable; (sha256 hex, bytes) of the file."""
        self._tar.close()
        self._emit(self._encryptor.finalize())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self._digest.hexdigest(), self._size

    def abort(self) -> None:
        self._fh.close()


class _Sink:
    """What tarfile writes to in stream mode (``write`` only): every block is encrypted."""

    def __init__(self, writer: _ArchiveWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._writer.encrypt(data)
        return len(data)


class _PlaintextReader(io.RawIOBase):
    """A readable file over plaintext segments, hashing what passes through."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._digest = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._digest.update(chunk)
            self.size += len(chunk)
            self._pending = memoryview(chunk)
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Read to the end: the final segment is authenticated only then (truncation)."""
        for chunk in self._chunks:
            self._digest.update(chunk)
            self.size += len(chunk)


def _publish(tmp: Path, out: Path) -> None:
    try:
        os.link(tmp, out)  # refuses to replace a file that appeared meanwhile
    except FileExistsError:
        raise DsarError(f"{out} already exists; an archive is never overwritten") from None
    fsync_dir(out.parent)


def _file_header(salt: bytes, aad: Aad) -> bytes:
    out = bytearray(MAGIC + bytes((VERSION,)) + salt)
    for field in (aad.workspace_id, aad.call_id, aad.region):
        raw = field.encode("utf-8")
        out += struct.pack(">H", len(raw)) + raw
    return bytes(out)


def _file_entry(path: str, sha256: str, size: int, **extra: str) -> dict[str, Any]:
    return {"path": path, "sha256": sha256, "bytes": size, **extra}


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str).encode()


# --------------------------------------------------------------------------------------------
# opening (the recipient's side: no settings, no broker, only the file and the passphrase)


def open_archive(archive: Path, out_dir: Path, passphrase: str) -> dict[str, Any]:
    """Decrypt ``archive`` into ``out_dir`` (must not exist, or be empty) and check every file
    against the manifest. Files are written to a private staging directory and moved into place
    only once the whole archive authenticated and matched: a wrong passphrase, a truncated or
    altered archive leaves nothing behind."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DsarError(f"{out_dir} exists and is not an empty directory")
    staging = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.partial")
    try:
        with archive.open("rb") as fh:
            salt, aad = _read_header(fh)
            key = derive_key(passphrase, salt)
            reader = _PlaintextReader(decrypt_stream(key, _chunks(fh), aad))
            staging.mkdir(mode=0o700, parents=False)
            try:
                extracted = _extract(io.BufferedReader(reader, _READ_SIZE), staging)
                reader.drain()
            except DecryptionFailed:
                raise DsarError(
                    "wrong passphrase, or the archive is damaged or was altered"
                ) from None
            except tarfile.TarError as exc:
                raise DsarError(f"the archive's content is not a valid tar: {exc}") from None
        manifest = _verify(extracted, staging)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "out": str(out_dir), "request_id": manifest["request_id"],
        "workspace_id": manifest["workspace_id"],
        "subject": manifest["subject"]["number_masked"], "calls": len(manifest["calls"]),
        "erased": manifest["erased"], "missing": manifest["missing"],
        "files": len(manifest["files"]), "exported_at": manifest["exported_at"],
    }  # fmt: skip


def _read_header(fh: IO[bytes]) -> tuple[bytes, Aad]:
    head = fh.read(len(MAGIC) + 1 + SALT_SIZE)
    if len(head) < len(MAGIC) + 1 + SALT_SIZE or head[: len(MAGIC)] != MAGIC:
        raise DsarError("not a Callvault subject access archive (bad magic)")
    if head[len(MAGIC)] != VERSION:
        raise DsarError(f"unsupported archive version {head[len(MAGIC)]}")
    fields = []
    for _ in range(3):
        raw_len = fh.read(2)
        if len(raw_len) != 2:
            raise DsarError("truncated archive header")
        (length,) = struct.unpack(">H", raw_len)
        raw = fh.read(length)
        if len(raw) != length:
            raise DsarError("truncated archive header")
        fields.append(raw.decode("utf-8", errors="replace"))
    try:
        aad = Aad(fields[0], fields[1], AAD_KIND, fields[2])
    except ValueError as exc:
        raise DsarError(f"damaged archive header: {exc}") from None
    return head[len(MAGIC) + 1 :], aad


def _chunks(fh: IO[bytes]) -> Iterable[bytes]:
    while chunk := fh.read(_READ_SIZE):
        yield chunk


def _extract(source: IO[bytes], staging: Path) -> dict[str, tuple[str, int]]:
    """Regular files with plain relative names only (no links, devices or ``..``), each 0600."""
    extracted: dict[str, tuple[str, int]] = {}
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for info in tar:
            parts = PurePosixPath(info.name).parts
            if not info.isfile() or not parts or info.name.startswith("/") or any(
                p in ("", ".", "..") for p in parts
            ) or info.name in extracted:  # fmt: skip
                raise DsarError(f"the archive holds an unexpected entry {info.name!r}")
            target = staging.joinpath(*parts)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            src = tar.extractfile(info)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
            with os.fdopen(fd, "wb") as dst:
                while block := src.read(_READ_SIZE):
                    digest.update(block)
                    size += len(block)
                    dst.write(block)
            extracted[info.name] = (digest.hexdigest(), size)
    return extracted


def _verify(extracted: dict[str, tuple[str, int]], staging: Path) -> dict[str, Any]:
    if MANIFEST not in extracted:
        raise DsarError("the archive has no manifest.json")
    try:
        manifest: dict[str, Any] = json.loads((staging / MANIFEST).read_bytes())
        listed = {f["path"]: (f["sha256"], f["bytes"]) for f in manifest["files"]}
        for field in ("request_id", "workspace_id", "subject", "calls", "erased", "missing"):
            if field not in manifest:
                raise KeyError(field)
    except (ValueError, KeyError, TypeError) as exc:
        raise DsarError(f"the archive's manifest.json is not a manifest: {exc!r}") from None
    unlisted = sorted(set(extracted) - set(listed) - {MANIFEST})
    wrong = sorted(p for p, want in listed.items() if extracted.get(p) != want)
    if unlisted or wrong:
        raise DsarError(
            f"the archive does not match its manifest (missing or altered: {wrong}, "
            f"unlisted: {unlisted})"
        )
    return manifest
