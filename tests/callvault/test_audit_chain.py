"""The audit chain's canonical form, signing and verification (pure: no Kafka)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callvault.audit import audit_event, encode_audit
from callvault.audit_chain import (
    DOMAIN,
    AuditChainError,
    canonical_bytes,
    chain_event,
    chain_hash,
    public_key,
    signing_key,
    verify_chain,
)
from callvault.settings import Settings
from schemas.codec import get_codec

KEY = Ed25519PrivateKey.generate()


def _chain(n: int, key: Ed25519PrivateKey = KEY) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev: bytes | None = None
    for i in range(n):
        event = audit_event(
            "workspace.update", actor_kind="USER", actor_id=f"u{i}", workspace_id="acme",
            region="eu", target="acme", details={"retention_days": 30 + i},
        )  # fmt: skip
        entry = chain_event(event, prev_hash=prev, seq=i, source_offset=10 + i, key=key)
        # what a reader of the chain topic sees: through the Avro codec
        entry = get_codec().decode("AuditEvent", encode_audit(entry)[1])
        prev = entry["hash"]
        out.append(entry)
    return out


def test_valid_chain_passes() -> None:
    chain = _chain(5)
    report = verify_chain(chain, KEY.public_key())
    assert report.ok, report.failure
    assert (report.count, report.first_seq, report.head_seq) == (5, 0, 4)
    assert report.head_hash == chain[-1]["hash"]
    assert chain[0]["prev_hash"] is None and chain[3]["prev_hash"] == chain[2]["hash"]
    assert chain[2]["details"]["chain.seq"] == "2"
    assert chain[2]["details"]["chain.source_offset"] == "12"


def test_empty_chain_is_ok() -> None:
    report = verify_chain([], KEY.public_key())
    assert report.ok and report.count == 0 and report.head_hash is None


def test_canonical_form_is_fixed() -> None:
    entry = _chain(1)[0]
    body = canonical_bytes(entry)
    assert body.startswith(DOMAIN)
    assert b" " not in body[len(DOMAIN) :].replace(b"workspace.update", b"")
    assert b'"occurred_at":"' in body and b'Z"' in body and b'"prev_hash":null' in body
    # hash and signature are not part of what is hashed
    assert canonical_bytes({**entry, "hash": b"x", "signature": b"y"}) == body
    assert chain_hash(entry) == entry["hash"]


def test_edited_entry_is_reported() -> None:
    chain = _chain(5)
    chain[2]["details"]["retention_days"] = "365"
    report = verify_chain(chain, KEY.public_key())
    assert report.failure is not None
    assert (report.failure.reason, report.failure.seq) == ("edited", 2)
    assert report.failure.event_id == chain[2]["event_id"]
    assert report.head_seq == 1  # the last entry that verified


def test_removed_entry_is_a_gap() -> None:
    chain = _chain(5)
    del chain[2]
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None
    assert (failure.reason, failure.seq, failure.position) == ("gap/removed", 3, 2)
    assert "seq 2 missing" in failure.message


def test_removed_first_entry_is_a_gap() -> None:
    failure = verify_chain(_chain(3)[1:], KEY.public_key()).failure
    assert failure is not None and failure.reason == "gap/removed"
    # unless the chain's start expired by retention
    assert verify_chain(_chain(3)[1:], KEY.public_key(), first_seq=None).ok


def test_swapped_entries_are_reordered() -> None:
    chain = _chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None
    assert (failure.reason, failure.seq, failure.position) == ("reordered", 2, 1)


def test_duplicated_entry_is_reordered() -> None:
    chain = _chain(3)
    failure = verify_chain([*chain, chain[1]], KEY.public_key()).failure
    assert failure is not None and (failure.reason, failure.position) == ("reordered", 3)


def test_rehashed_edit_without_the_private_key_fails_the_signature() -> None:
    chain = _chain(5)
    chain[2]["action"] = "workspace.delete"
    chain[2]["hash"] = chain_hash(chain[2])  # anyone can hash; only the key holder can sign
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None and (failure.reason, failure.seq) == ("signature", 2)


def test_resigned_chain_with_another_key_fails_the_signature() -> None:
    chain = _chain(3, key=Ed25519PrivateKey.generate())
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None and (failure.reason, failure.seq) == ("signature", 0)


def test_wrong_public_key_fails_the_signature() -> None:
    failure = verify_chain(_chain(3), Ed25519PrivateKey.generate().public_key()).failure
    assert failure is not None and (failure.reason, failure.seq) == ("signature", 0)


def test_missing_signature_or_hash() -> None:
    chain = _chain(2)
    chain[1]["signature"] = None
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None and failure.reason == "signature"
    chain = _chain(2)
    chain[0]["hash"] = None
    failure = verify_chain(chain, KEY.public_key()).failure
    assert failure is not None and failure.reason == "edited"


def test_truncation_behind_a_recorded_head() -> None:
    chain = _chain(5)
    head = chain[-1]["hash"]
    assert verify_chain(chain, KEY.public_key(), expect_head=head).ok
    assert verify_chain([*chain, *_extend(chain, 2)], KEY.public_key(), expect_head=head).ok
    failure = verify_chain(chain[:3], KEY.public_key(), expect_head=head).failure
    assert failure is not None and failure.reason == "truncated"


def _extend(chain: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out, prev, seq = [], chain[-1]["hash"], len(chain)
    for i in range(n):
        event = audit_event("x.y", actor_kind="SYSTEM", actor_id="t")
        entry = chain_event(event, prev_hash=prev, seq=seq + i, source_offset=100 + i, key=KEY)
        out.append(entry)
        prev = entry["hash"]
    return out


def test_signing_key_is_created_private_outside_production(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    key = signing_key(settings)
    path = settings.audit_signing_key_file
    assert path == tmp_path / "home" / "keys" / "audit-signing.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.audit_public_key_file == path.with_name("audit-signing.pem.pub")
    assert settings.audit_public_key_file.is_file()
    # stable: the same key next time, and the public key file matches it
    assert signing_key(settings).public_key() == key.public_key()
    assert public_key(settings) == key.public_key()


def test_production_never_creates_the_signing_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home").model_copy(update={"environment": "production"})
    with pytest.raises(AuditChainError, match="never created"):
        signing_key(settings)
    assert not settings.audit_signing_key_file.exists()
    with pytest.raises(AuditChainError, match="no audit public key"):
        public_key(settings)
