"""The audit chain: canonical form, hashing, Ed25519 signing and verification of audit events.

Each region's worker (:mod:`streams.audit_chain`) appends its audit events to
``audit.chain.<region>``, each one carrying the hash of the one before it and an Ed25519
signature over its own hash. Editing, removing or reordering an entry then breaks the chain in a
way :func:`verify_chain` names; truncating the end is caught by comparing with a head hash an
auditor recorded earlier (``expect_head``). This module is pure: no Kafka, no I/O besides the key
files.

Canonical form (version 1): the SHA-256 of ``b"callvault-audit-chain-v1\\n"`` followed by the
compact JSON (sorted keys, no spaces, ASCII) of the fixed fields :data:`CHAINED_FIELDS`, with
``occurred_at`` as ISO-8601 UTC with microseconds and bytes as lowercase hex. The chainer puts
``chain.seq`` (0, 1, 2, ...) and ``chain.source_offset`` (the event's offset on ``audit.events``)
into ``details`` before hashing, so a missing entry shows as a gap in ``seq`` and a replayed
source event is recognised and not chained twice. The signature is Ed25519 over the 32-byte hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callvault.errors import CallvaultError
from callvault.files import fsync_dir, write_private_tmp
from callvault.settings import Settings

DOMAIN = b"callvault-audit-chain-v1\n"
CHAINED_FIELDS = (
    "event_id", "occurred_at", "actor", "action", "workspace_id", "region", "target", "outcome",
    "details", "prev_hash",
)  # fmt: skip
SEQ = "chain.seq"
SOURCE_OFFSET = "chain.source_offset"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Reason = Literal["edited", "signature", "gap/removed", "reordered", "truncated"]


class AuditChainError(CallvaultError):
    """The audit chain cannot be written or checked (missing key, unreadable chain)."""


# --- canonical form -----------------------------------------------------------------------------


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        dt = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    else:  # integer microseconds since the epoch (the raw Avro value)
        dt = _EPOCH + timedelta(microseconds=int(value))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """What :func:`chain_hash` hashes: the domain prefix and the canonical JSON of the fixed
    fields (``hash`` and ``signature`` are not part of it; ``prev_hash`` is)."""
    body = {name: _jsonable(event.get(name)) for name in CHAINED_FIELDS}
    body["occurred_at"] = _iso(event["occurred_at"])
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def chain_hash(event: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical_bytes(event)).digest()


def chain_event(
    event: Mapping[str, Any],
    *,
    prev_hash: bytes | None,
    seq: int,
    source_offset: int,
    key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """A copy of ``event`` as chain entry ``seq``: position in details, linked, hashed, signed."""
    out = dict(event)
    out["details"] = {**dict(event.get("details") or {}), SEQ: str(seq),
                      SOURCE_OFFSET: str(source_offset)}  # fmt: skip
    out["prev_hash"] = prev_hash
    digest = chain_hash(out)
    out["hash"] = digest
    out["signature"] = key.sign(digest)
    return out


def entry_seq(event: Mapping[str, Any]) -> int | None:
    try:
        return int((event.get("details") or {})[SEQ])
    except (KeyError, TypeError, ValueError):
        return None


def entry_source_offset(event: Mapping[str, Any]) -> int | None:
    try:
        return int((event.get("details") or {})[SOURCE_OFFSET])
    except (KeyError, TypeError, ValueError):
        return None


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainFailure:
    """The first place the chain is broken."""

    position: int  # 0-based index among the records read
    seq: int | None
    event_id: str | None
    reason: Reason
    message: str


@dataclass(frozen=True)
class ChainReport:
    count: int
    first_seq: int | None
    head_seq: int | None
    head_hash: bytes | None
    failure: ChainFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "count": self.count,
            "first_seq": self.first_seq,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.hex() if self.head_hash is not None else None,
            "failure": None,
        }
        if self.failure is not None:
            f = self.failure
            out["failure"] = {"position": f.position, "seq": f.seq, "event_id": f.event_id,
                              "reason": f.reason, "message": f.message}  # fmt: skip
        return out


@dataclass
class ChainVerifier:
    """Verify a chain entry by entry (a year of audit events need not fit in memory).

    ``first_seq``: the seq the chain must start at (0 for a complete chain); ``None`` accepts any
    start (older entries expired by retention) without checking the first entry's link.
    ``expect_head``: a head hash recorded earlier; the chain must contain it (else "truncated").
    After the first failure the verifier only looks further to tell a reordering (the missing
    seq shows up later) from a removal.
    """

    public_key: Ed25519PublicKey
    first_seq: int | None = 0
    expect_head: bytes | None = None
    count: int = 0
    _start: int | None = None
    _prev_hash: bytes | None = None
    _prev_seq: int | None = None
    _failure: ChainFailure | None = None
    _missing: set[int] = field(default_factory=set)
    _seen_head: bool = False

    @property
    def failure(self) -> ChainFailure | None:
        """The first failure so far (the "truncated" check only happens in :meth:`report`)."""
        return self._failure

    def add(self, event: Mapping[str, Any]) -> None:
        position = self.count
        self.count += 1
        seq = entry_seq(event)
        if self._failure is not None:
            if self._failure.reason == "gap/removed" and seq in self._missing:
                f = self._failure
                self._failure = ChainFailure(
                    f.position, f.seq, f.event_id, "reordered",
                    f"{f.message}; seq {seq} comes later, at position {position}",
                )  # fmt: skip
                self._missing.clear()
            return
        digest = _bytes(event.get("hash"))
        if self.expect_head is not None and digest == self.expect_head:
            self._seen_head = True
        problem = self._check(event, seq, digest)
        if problem is not None:
            reason, message = problem
            event_id = event.get("event_id")
            self._failure = ChainFailure(position, seq, event_id, reason, message)
            return
        if self._start is None:
            self._start = seq
        self._prev_hash, self._prev_seq = digest, seq

    def _check(
        self, event: Mapping[str, Any], seq: int | None, digest: bytes | None
    ) -> tuple[Reason, str] | None:
        if digest is None or chain_hash(event) != digest:
            return "edited", "content does not match its hash"
        signature = _bytes(event.get("signature"))
        try:
            if signature is None:
                raise InvalidSignature
            self.public_key.verify(signature, digest)
        except InvalidSignature:
            return "signature", "signature does not verify with the audit public key"
        if seq is None:
            return "edited", f"no valid {SEQ} in details"
        prev_hash = _bytes(event.get("prev_hash"))
        if self._prev_seq is None:  # the first entry read
            if self.first_seq is None:
                return None
            if seq > self.first_seq:
                self._missing = set(range(self.first_seq, seq))
                return "gap/removed", f"chain starts at seq {seq}, expected {self.first_seq}"
            if seq < self.first_seq:
                return "reordered", f"chain starts at seq {seq}, expected {self.first_seq}"
            if seq == 0 and prev_hash is not None:
                return "gap/removed", "first entry links to a predecessor"
            return None
        expected = self._prev_seq + 1
        if seq > expected:
            self._missing = set(range(expected, seq))
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return "gap/removed", f"seq {seq} follows seq {self._prev_seq}: seq {missing} missing"
        if seq < expected:
            return "reordered", f"seq {seq} follows seq {self._prev_seq}"
        if prev_hash != self._prev_hash:
            return "gap/removed", f"prev_hash does not link to entry seq {self._prev_seq}"
        return None

    def report(self) -> ChainReport:
        failure = self._failure
        if failure is None and self.expect_head is not None and not self._seen_head:
            failure = ChainFailure(
                self.count, None, None, "truncated",
                f"expected head {self.expect_head.hex()} is not in the chain",
            )  # fmt: skip
        return ChainReport(
            count=self.count,
            first_seq=self._start,
            head_seq=self._prev_seq,
            head_hash=self._prev_hash,
            failure=failure,
        )


def verify_chain(
    records: Iterable[Mapping[str, Any]],
    public_key: Ed25519PublicKey,
    *,
    first_seq: int | None = 0,
    expect_head: bytes | None = None,
) -> ChainReport:
    """Check hashes, signatures, consecutive ``chain.seq`` and ``prev_hash`` links, in order;
    the report names the first failure ("edited", "signature", "gap/removed", "reordered",
    "truncated"). Head hash and seq are those of the last entry that verified."""
    verifier = ChainVerifier(public_key, first_seq=first_seq, expect_head=expect_head)
    for record in records:
        verifier.add(record)
    return verifier.report()


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


# --- keys ---------------------------------------------------------------------------------------


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_id(key: Ed25519PublicKey) -> str:
    """Short fingerprint (SHA-256 of the raw key, 16 hex digits) for messages and reports."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_public(path: Path, key: Ed25519PublicKey) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(_public_pem(key))
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create_signing_key_if_missing(path: Path) -> bool:
    """Write a new Ed25519 signing key (PEM, 0600) unless one exists; True if this created it.
    Race-safe: of two processes creating it at once, both end up using the one that won."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = write_private_tmp(path, pem)
    try:
        os.link(tmp, path)  # refuses to overwrite
        fsync_dir(path.parent)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The audit signing key, created (0600, with its ``.pub``) on first use outside production.

    In production a missing key is an error (``callvault keys init`` provisions it): a fresh key
    made implicitly would sign a chain the auditors' pinned public key does not accept.
    """
    path = settings.audit_signing_key_file
    if not path.exists():
        if settings.environment == "production":
            raise AuditChainError(
                f"audit signing key {path} does not exist; in production it is never created "
                "implicitly: provision it with `callvault keys init` (or an Ed25519 private key, "
                "PEM, mode 0600) and give auditors its public key"
            )
        create_signing_key_if_missing(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditChainError(f"cannot read audit signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditChainError(f"audit signing key {path} is not an Ed25519 private key")
    pub = settings.audit_public_key_file
    if not pub.exists():
        pub.parent.mkdir(parents=True, exist_ok=True)
        _write_public(pub, key.public_key())
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM): the audit chain's, or one an auditor pinned."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditChainError(f"cannot read public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditChainError(f"{path} is not an Ed25519 public key")
    return key


def public_key(settings: Settings) -> Ed25519PublicKey:
    """The key ``callvault audit verify`` checks signatures with: ``audit.public_key_file``,
    else derived from the signing key file when only that exists."""
    pub = settings.audit_public_key_file
    if pub.exists():
        return load_public_key(pub)
    if settings.audit_signing_key_file.exists():
        return signing_key(settings).public_key()
    raise AuditChainError(
        f"no audit public key at {pub} (set audit.public_key_file / "
        "CALLVAULT_AUDIT__PUBLIC_KEY_FILE to the chain's public key)"
    )
