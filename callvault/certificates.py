"""Signed deletion certificates: what an erasure removed, in a form anyone can check offline.

A certificate (Avro ``DeletionCertificate`` on ``control.certificates``; a JSON file for people)
is signed with the deployment's Ed25519 compliance key, the same key that signs the audit chain,
so an auditor pins one public key for both. The signature covers a canonical encoding of every
other field: a domain prefix, then compact JSON with sorted keys, timestamps as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``. The Avro record and the JSON file canonicalise to the same bytes,
so a certificate verifies the same whichever copy the reviewer holds, and an edited item, count,
time or key id (or a removed item) fails verification.

Pure: no Kafka, no I/O besides reading key files.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callvault.audit_chain import public_key_id
from callvault.errors import CallvaultError

DOMAIN = b"callvault-deletion-certificate-v1\n"
FILE_TYPE = "callvault.DeletionCertificate"
_SIGNED = ("certificate_id", "request_id", "workspace_id", "kind", "issued_at", "items",
           "key_ids_shredded", "signing_key_id")  # fmt: skip
_ITEM = ("store", "locator", "version", "count", "deleted_at")


class CertificateError(CallvaultError):
    """A certificate cannot be read, or does not verify."""


def _ts(value: Any) -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, str):
        try:
            return _ts(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise CertificateError(f"not a timestamp: {value!r}") from None
    raise CertificateError(f"not a timestamp: {value!r}")


def to_json(cert: Mapping[str, Any]) -> dict[str, Any]:
    """The certificate as a JSON document (the file people keep); also its signed form."""
    try:
        out: dict[str, Any] = {
            "type": FILE_TYPE,
            "certificate_id": str(cert["certificate_id"]),
            "request_id": str(cert["request_id"]),
            "workspace_id": str(cert["workspace_id"]),
            "kind": str(cert["kind"]),
            "issued_at": _ts(cert["issued_at"]),
            "items": [
                {
                    "store": str(i["store"]),
                    "locator": str(i["locator"]),
                    "version": None if i.get("version") is None else str(i["version"]),
                    "count": int(i["count"]),
                    "deleted_at": _ts(i["deleted_at"]),
                }
                for i in cert["items"]
            ],
            "key_ids_shredded": [str(k) for k in cert["key_ids_shredded"]],
            "signing_key_id": str(cert["signing_key_id"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CertificateError(f"not a deletion certificate: missing or bad field {exc}") from None
    signature = cert.get("signature")
    if signature is not None:
        raw = signature if isinstance(signature, bytes) else _unb64(str(signature))
        out["signature"] = base64.b64encode(raw).decode()
    return out


def to_record(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON certificate as the Avro ``DeletionCertificate`` record (timestamps as datetimes)."""
    j = to_json(doc)
    return {
        **{k: j[k] for k in ("certificate_id", "request_id", "workspace_id", "kind")},
        "issued_at": _parse_ts(j["issued_at"]),
        "items": [{**i, "deleted_at": _parse_ts(i["deleted_at"])} for i in j["items"]],
        "key_ids_shredded": j["key_ids_shredded"],
        "signing_key_id": j["signing_key_id"],
        "signature": _unb64(j.get("signature", "")),
    }


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CertificateError("signature is not base64") from None


def canonical_bytes(cert: Mapping[str, Any]) -> bytes:
    doc = to_json(cert)
    body = {k: doc[k] for k in _SIGNED}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def sign(cert: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``cert`` (Avro record shape) with ``signing_key_id`` and ``signature`` set."""
    out = {**cert, "signing_key_id": public_key_id(key.public_key()), "signature": b""}
    out["signature"] = key.sign(canonical_bytes(out))
    return out


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str
    certificate_id: str
    signing_key_id: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "certificate_id": self.certificate_id,
                "signing_key_id": self.signing_key_id}  # fmt: skip


def verify(cert: Mapping[str, Any], key: Ed25519PublicKey) -> Verification:
    """Check the signature and that it was made by ``key``; never raises for a bad certificate
    (the verdict says why), only for one that cannot be read at all."""
    doc = to_json(cert)
    cid, kid = doc["certificate_id"], doc["signing_key_id"]
    if kid != public_key_id(key):
        return Verification(
            False, f"signed by key {kid}, not by the trusted key {public_key_id(key)}", cid, kid
        )
    if "signature" not in doc:
        return Verification(False, "certificate has no signature", cid, kid)
    try:
        key.verify(base64.b64decode(doc["signature"]), canonical_bytes(doc))
    except InvalidSignature:
        return Verification(False, "signature does not match the content (edited?)", cid, kid)
    return Verification(True, "signature valid", cid, kid)


def load_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != FILE_TYPE:
        raise CertificateError(f"{path} is not a Callvault deletion certificate")
    return doc
