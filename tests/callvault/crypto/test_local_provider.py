"""The local master key file: private by construction, refused when it is not, rotatable."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading

import pytest

from callvault.crypto.errors import DecryptionFailed, KeyNotFound, KeyProviderError
from callvault.crypto.providers import LocalKeyFileProvider, MasterKeyProvider

CTX = {"callvault:workspace": "ws-1", "callvault:key_id": "wk-1"}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_with_owner_only_mode(tmp_path):
    path = tmp_path / "nested" / "master.json"
    provider = LocalKeyFileProvider.create_if_missing(path)
    assert _mode(path) == 0o600
    assert isinstance(provider, MasterKeyProvider)
    doc = json.loads(path.read_text())
    assert doc["current"] == provider.key_id
    assert len(base64.b64decode(doc["keys"][provider.key_id])) == 32
    assert [p.name for p in path.parent.iterdir()] == ["master.json"]  # no temporary files left


def test_created_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        LocalKeyFileProvider.create_if_missing(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.json") == 0o600


def test_create_if_missing_keeps_an_existing_file(tmp_path):
    path = tmp_path / "k.json"
    first = LocalKeyFileProvider.create_if_missing(path)
    again = LocalKeyFileProvider.create_if_missing(path)
    assert again.key_id == first.key_id


def test_concurrent_creation_agrees_on_one_key(tmp_path):
    path = tmp_path / "k.json"
    ids: list[str] = []

    def create() -> None:
        ids.append(LocalKeyFileProvider.create_if_missing(path).key_id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_file_others_can_read(tmp_path, mode):
    path = tmp_path / "k.json"
    LocalKeyFileProvider.create_if_missing(path)
    path.chmod(mode)
    with pytest.raises(KeyProviderError, match=re.escape(f"chmod 600 {path}")) as err:
        LocalKeyFileProvider(path)
    assert f"{mode:04o}" in str(err.value)
    assert not err.value.retriable


def test_missing_and_invalid_files_are_clear_errors(tmp_path):
    with pytest.raises(KeyProviderError, match="does not exist"):
        LocalKeyFileProvider(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    for content in ["{", '{"current": "a", "keys": {}}', '{"current": "a", "keys": {"a": "AAAA"}}']:
        bad.write_text(content)
        bad.chmod(0o600)
        with pytest.raises(KeyProviderError, match="is not valid"):
            LocalKeyFileProvider(bad)


def test_wrap_unwrap_binds_the_context(tmp_path):
    provider = LocalKeyFileProvider.create_if_missing(tmp_path / "k.json")
    plaintext, wrapped, master_id = provider.generate_data_key(CTX)
    assert master_id == provider.key_id
    assert plaintext not in wrapped
    assert provider.unwrap(wrapped, master_id, CTX) == plaintext
    for ctx in [{}, {**CTX, "callvault:key_id": "wk-2"}, {**CTX, "extra": "x"}]:
        with pytest.raises(DecryptionFailed):
            provider.unwrap(wrapped, master_id, ctx)
    with pytest.raises(DecryptionFailed):
        provider.unwrap(wrapped[:-1], master_id, CTX)
    with pytest.raises(DecryptionFailed):
        provider.unwrap(b"", master_id, CTX)
    with pytest.raises(KeyNotFound):
        provider.unwrap(wrapped, "mk-unknown", CTX)


def test_context_encoding_is_order_independent_and_unambiguous(tmp_path):
    provider = LocalKeyFileProvider.create_if_missing(tmp_path / "k.json")
    key = os.urandom(32)
    wrapped, master_id = provider.wrap(key, {"a": "1", "b": "2"})
    assert provider.unwrap(wrapped, master_id, {"b": "2", "a": "1"}) == key
    wrapped, master_id = provider.wrap(key, {"a": "bc"})
    with pytest.raises(DecryptionFailed):
        provider.unwrap(wrapped, master_id, {"ab": "c"})


def test_rotate_keeps_old_versions_until_retired(tmp_path):
    path = tmp_path / "k.json"
    provider = LocalKeyFileProvider.create_if_missing(path)
    old = provider.key_id
    key, wrapped, _ = provider.generate_data_key(CTX)
    new = provider.rotate()
    assert provider.key_id == new != old
    assert provider.master_key_ids == (old, new)
    assert _mode(path) == 0o600
    assert provider.unwrap(wrapped, old, CTX) == key
    assert not provider.is_current(old)
    rewrapped, master_id = provider.rewrap(wrapped, old, CTX)
    assert master_id == new
    with pytest.raises(KeyProviderError, match="is current"):
        provider.retire(new)
    provider.retire(old)
    assert provider.master_key_ids == (new,)
    assert provider.unwrap(rewrapped, new, CTX) == key
    with pytest.raises(KeyNotFound):
        provider.unwrap(wrapped, old, CTX)
    with pytest.raises(KeyNotFound):
        provider.retire(old)
    assert LocalKeyFileProvider(path).master_key_ids == (new,)


def test_another_process_rotation_is_picked_up(tmp_path):
    path = tmp_path / "k.json"
    reader = LocalKeyFileProvider.create_if_missing(path)
    writer = LocalKeyFileProvider(path)
    writer.rotate()
    key, wrapped, master_id = writer.generate_data_key(CTX)
    assert reader.unwrap(wrapped, master_id, CTX) == key  # reloads on an unknown master id


def test_concurrent_rotations_lose_no_version(tmp_path):
    path = tmp_path / "k.json"
    first = LocalKeyFileProvider.create_if_missing(path)
    second = LocalKeyFileProvider(path)
    a, b = first.rotate(), second.rotate()
    assert set(LocalKeyFileProvider(path).master_key_ids) >= {a, b}


def test_repr_and_errors_hold_no_key_material(tmp_path):
    path = tmp_path / "k.json"
    provider = LocalKeyFileProvider.create_if_missing(path)
    doc = json.loads(path.read_text())
    secret_b64 = doc["keys"][provider.key_id]
    data_key = provider.generate_data_key(CTX)
    for text in [repr(provider), str(provider.__dict__.get("_path")), repr(data_key)]:
        assert secret_b64 not in text
    assert "redacted" in repr(data_key)
    assert repr(data_key.plaintext) not in repr(data_key)
    assert base64.b64decode(secret_b64).hex() not in repr(provider)
