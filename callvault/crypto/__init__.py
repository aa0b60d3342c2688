"""Envelope encryption of call data: AES-256-GCM, keys master -> workspace -> call.

:mod:`~callvault.crypto.envelope` is the ciphertext format, :mod:`~callvault.crypto.providers`
the master keys (local file, AWS KMS), :mod:`~callvault.crypto.keyring` the key hierarchy,
shredding and rotation.
"""

from __future__ import annotations

from callvault.crypto.envelope import Aad, peek_key_id, seal, unseal
from callvault.crypto.errors import (
    CryptoError,
    DecryptionFailed,
    KeyDestroyed,
    KeyNotFound,
    KeyProviderError,
    KeyScopeMismatch,
    MalformedCiphertext,
)
from callvault.crypto.keyring import (
    InMemoryKeyStore,
    KeyRecord,
    KeyRing,
    KeyStore,
    open_artifact,
    seal_artifact,
)
from callvault.crypto.providers import AwsKmsProvider, LocalKeyFileProvider, MasterKeyProvider

__all__ = [
    "Aad",
    "AwsKmsProvider",
    "CryptoError",
    "DecryptionFailed",
    "InMemoryKeyStore",
    "KeyDestroyed",
    "KeyNotFound",
    "KeyProviderError",
    "KeyRecord",
    "KeyRing",
    "KeyScopeMismatch",
    "KeyStore",
    "LocalKeyFileProvider",
    "MalformedCiphertext",
    "MasterKeyProvider",
    "open_artifact",
    "peek_key_id",
    "seal",
    "seal_artifact",
    "unseal",
]
