"""Errors of the encryption layer, all under :class:`callvault.errors.CallvaultError`.

The tree is shaped by what a caller does next, not by where the failure happened:

* :class:`DecryptionFailed` — give up on this blob. Tampering, a wrong key and a wrong context
  are one message on purpose: telling them apart would hand an attacker an oracle.
  :class:`MalformedCiphertext` and :class:`KeyScopeMismatch` are special cases of it, so one
  ``except DecryptionFailed`` covers every "this blob cannot be opened here".
* :class:`KeyDestroyed` — the data was crypto-shredded; it is gone by design, not by accident.
* :class:`KeyNotFound` — the key record is not (yet) visible; a lagging view may catch up.
* :class:`KeyProviderError` — the master key service failed; ``retriable`` says whether backing
  off can help (throttling, KMS internal errors) or an operator must act (access denied).

No message ever contains key material or plaintext.
"""

from __future__ import annotations

from callvault.errors import CallvaultError


class CryptoError(CallvaultError):
    """Root of every error of :mod:`callvault.crypto`."""


class DecryptionFailed(CryptoError):
    """The ciphertext cannot be authenticated with this key and this context."""


class MalformedCiphertext(DecryptionFailed):
    """The blob is not a Callvault envelope (bad magic, unknown version, truncated)."""


class KeyScopeMismatch(DecryptionFailed):
    """The blob names a key that belongs to another workspace or call than the reader's record."""


class KeyNotFound(CryptoError):
    """No record for the key id (or for the key that wraps it)."""


class KeyDestroyed(CryptoError):
    """The key, or a key above it in the hierarchy, was shredded: the data is unrecoverable."""


class KeyProviderError(CryptoError):
    """The master key provider failed; ``retriable`` is True for transient service errors."""
