"""Master key providers: the top of the key hierarchy, which never leaves its provider.

A provider wraps (encrypts) workspace keys under a master key and unwraps them again, binding an
*encryption context* (a small ``str -> str`` map naming the workspace and key id) so a wrapped
key copied onto another record fails to unwrap.

Providers are **synchronous**. boto3 has no async API and its clients are thread-safe, so the
honest interface is a blocking one; :class:`callvault.crypto.keyring.KeyRing` calls providers via
``asyncio.to_thread``, which keeps the event loop free during a KMS round trip. Offline tools and
the CLI use them directly without an event loop. Calls are rare: workspace keys are unwrapped once
per process and cached; per-call keys never touch the provider.

Plaintext keys are never logged, put in a ``repr`` or in exception text. Keep botocore's own
loggers at INFO or above: at DEBUG botocore logs request bodies, which include ``Plaintext``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.crypto.envelope import KEY_SIZE, NONCE_SIZE, canonical_fields
from callvault.crypto.errors import DecryptionFailed, KeyNotFound, KeyProviderError
from callvault.files import fsync_dir, write_private_tmp

__all__ = ["AwsKmsProvider", "DataKey", "LocalKeyFileProvider", "MasterKeyProvider", "Wrapped"]

Context = Mapping[str, str]


class Wrapped(NamedTuple):
    wrapped: bytes
    master_key_id: str


class DataKey(NamedTuple):
    """A fresh key in clear and wrapped; unpacks as ``plaintext, wrapped, master_key_id``."""

    plaintext: bytes
    wrapped: bytes
    master_key_id: str

    def __repr__(self) -> str:
        return f"DataKey(plaintext=<redacted>, master_key_id={self.master_key_id!r})"


@runtime_checkable
class MasterKeyProvider(Protocol):
    """What the key ring needs from a master key service. Every method blocks."""

    @property
    def key_id(self) -> str:
        """Id of the current master key: what new wraps use."""
        ...

    def is_current(self, master_key_id: str) -> bool:
        """Whether a key wrapped under ``master_key_id`` is already under the current master."""
        ...

    def wrap(self, plaintext_key: bytes, context: Context) -> Wrapped: ...

    def unwrap(self, wrapped: bytes, master_key_id: str, context: Context) -> bytes: ...

    def generate_data_key(self, context: Context) -> DataKey: ...

    def rewrap(self, wrapped: bytes, master_key_id: str, context: Context) -> Wrapped:
        """Move a wrapped key under the current master (KMS does it without exposing the key)."""
        ...


def _context_aad(master_key_id: str, context: Context) -> bytes:
    """Canonical AAD of a local wrap: master id, then the context sorted by key."""
    items = sorted(context.items())
    flat = [field for item in items for field in item]
    return canonical_fields("callvault-master-wrap-v1", master_key_id, str(len(items)), *flat)


def _check_plain_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"a data key is exactly {KEY_SIZE} bytes")


# --------------------------------------------------------------------------------------------
# Local key file (development and single-machine installs)

_PRIVATE_MODE: Final = 0o600
_Change = Callable[[str, dict[str, bytes]], tuple[str, dict[str, bytes]]]


class LocalKeyFileProvider:
    """Master keys in a JSON file readable by its owner only.

    Format: ``{"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}``. Old versions
    stay after :meth:`rotate` so keys wrapped under them still unwrap until
    :meth:`KeyRing.rewrap_workspace_keys_for_master` has moved them; :meth:`retire` then drops
    one. Every change replaces the file atomically (temporary file, fsync, rename) under an
    ``flock`` on a sidecar ``.lock`` file, re-reading it first, so two processes rotating at once
    cannot lose a version.

    Another process's rotation is picked up at the next wrap (the file's identity is checked
    with one ``stat``), so no process keeps wrapping new keys under a version that was rotated
    away — and possibly retired — after it loaded the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._current = ""
        self._keys: dict[str, bytes] = {}
        self._loaded: tuple[int, int, int] | None = None
        self._load()

    @classmethod
    def create_if_missing(cls, path: str | os.PathLike[str]) -> LocalKeyFileProvider:
        """Open the key file, creating it with one fresh master key if there is none.

        Creation publishes the complete file with ``link()``, which fails if the name exists, so
        two processes racing here agree on one file instead of one overwriting the other's key.
        """
        target = Path(path)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key_id = _new_master_id()
            content = _render(key_id, {key_id: os.urandom(KEY_SIZE)})
            tmp = write_private_tmp(target, content)
            try:
                os.link(tmp, target)
                fsync_dir(target.parent)
            except FileExistsError:
                pass  # another process won the race; its file is as good as ours
            finally:
                tmp.unlink(missing_ok=True)
        return cls(target)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def key_id(self) -> str:
        self._refresh()
        return self._current

    @property
    def master_key_ids(self) -> tuple[str, ...]:
        """Every version in the file, oldest first."""
        self._refresh()
        return tuple(self._keys)

    def is_current(self, master_key_id: str) -> bool:
        self._refresh()
        return master_key_id == self._current

    def wrap(self, plaintext_key: bytes, context: Context) -> Wrapped:
        _check_plain_key(plaintext_key)
        self._refresh()
        master_id = self._current
        nonce = os.urandom(NONCE_SIZE)
        sealed = AESGCM(self._keys[master_id]).encrypt(
            nonce, plaintext_key, _context_aad(master_id, context)
        )
        return Wrapped(nonce + sealed, master_id)

    def unwrap(self, wrapped: bytes, master_key_id: str, context: Context) -> bytes:
        master = self._master(master_key_id)
        nonce, sealed = wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:]
        try:
            if len(nonce) != NONCE_SIZE:
                raise InvalidTag
            key = AESGCM(master).decrypt(nonce, sealed, _context_aad(master_key_id, context))
        except InvalidTag:
            raise DecryptionFailed(
                "wrapped key could not be authenticated (wrong master key or context)"
            ) from None
        if len(key) != KEY_SIZE:
            raise DecryptionFailed("wrapped key has the wrong length")
        return key

    def generate_data_key(self, context: Context) -> DataKey:
        key = os.urandom(KEY_SIZE)
        wrapped, master_id = self.wrap(key, context)
        return DataKey(key, wrapped, master_id)

    def rewrap(self, wrapped: bytes, master_key_id: str, context: Context) -> Wrapped:
        return self.wrap(self.unwrap(wrapped, master_key_id, context), context)

    def rotate(self) -> str:
        """Add a new master version and make it current; returns its id."""
        new_id = _new_master_id()

        def change(current: str, keys: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
            return new_id, {**keys, new_id: os.urandom(KEY_SIZE)}

        self._update(change)
        return new_id

    def retire(self, master_key_id: str) -> None:
        """Delete an old master version. Keys still wrapped under it become unrecoverable."""

        def change(current: str, keys: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
            if master_key_id == current:
                raise KeyProviderError(f"master key {master_key_id} is current; rotate first")
            if master_key_id not in keys:
                raise KeyNotFound(f"no master key {master_key_id} in {self._path}")
            return current, {k: v for k, v in keys.items() if k != master_key_id}

        self._update(change)

    def __repr__(self) -> str:
        return f"LocalKeyFileProvider(path={str(self._path)!r}, current={self._current!r})"

    # -- internals

    def _master(self, master_key_id: str) -> bytes:
        if master_key_id not in self._keys:
            self._load()  # another process may have rotated since we read the file
        try:
            return self._keys[master_key_id]
        except KeyError:
            raise KeyNotFound(f"no master key {master_key_id} in {self._path}") from None

    def _load(self) -> None:
        stamp = _file_stamp(self._path)  # before reading: a change in between reloads again
        self._current, self._keys = _read_key_file(self._path)
        self._loaded = stamp

    def _refresh(self) -> None:
        """Reload if the file was replaced since it was read (another process rotated)."""
        stamp = _file_stamp(self._path)
        if stamp is not None and stamp != self._loaded:
            self._load()

    def _update(self, change: _Change) -> None:
        with _flock(self._path.with_name(self._path.name + ".lock")):
            current, keys = _read_key_file(self._path)
            current, keys = change(current, keys)
            tmp = write_private_tmp(self._path, _render(current, keys))
            try:
                os.replace(tmp, self._path)
                fsync_dir(self._path.parent)
            finally:
                tmp.unlink(missing_ok=True)
            self._current, self._keys = current, keys
            self._loaded = _file_stamp(self._path)


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file's current version (replacements are renames: a new inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _new_master_id() -> str:
    return f"mk-{secrets.token_hex(8)}"


def _render(current: str, keys: Mapping[str, bytes]) -> bytes:
    doc = {"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _read_key_file(path: Path) -> tuple[str, dict[str, bytes]]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeyProviderError(
            f"master key file {path} does not exist (create it with 'callvault dev up')"
        ) from None
    except OSError as exc:
        raise KeyProviderError(f"cannot open master key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            raise KeyProviderError(
                f"master key file {path} has mode {mode:04o}: it must be readable by its owner "
                f"only; fix with: chmod 600 {path}"
            )
        raw = fh.read()
    bad = KeyProviderError(
        f"master key file {path} is not valid: expected "
        '{"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>"}}'
    )
    try:
        doc = json.loads(raw)
        current = doc["current"]
        keys = {str(k): base64.b64decode(v, validate=True) for k, v in dict(doc["keys"]).items()}
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    if not isinstance(current, str) or current not in keys:
        raise bad
    if any(len(v) != KEY_SIZE for v in keys.values()):
        raise bad
    return current, keys


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, _PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# --------------------------------------------------------------------------------------------
# AWS KMS

#: KMS error codes worth retrying: the service, not the request, is at fault.
RETRIABLE_KMS_ERRORS: Final = frozenset(
    {
        "ThrottlingException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
#: Codes that mean "this wrapped key does not open under this key and context".
_UNDECRYPTABLE_KMS_ERRORS: Final = frozenset(
    {"InvalidCiphertextException", "IncorrectKeyException"}
)


class AwsKmsProvider:
    """Master key in AWS KMS: the clear master never leaves KMS; only data keys travel.

    ``key_id`` may be a key id, key ARN or alias; records store the key ARN KMS answers with.
    Decrypt passes that ARN back as ``KeyId`` (AWS's recommended practice: KMS then refuses a
    ciphertext of any other key). KMS's own automatic rotation keeps the ARN, so it needs no
    re-wrap; changing ``key_id`` to another key does (:meth:`rewrap`, via ``ReEncrypt``).
    """

    def __init__(self, key_id: str, client: Any = None, region: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("kms", region_name=region)
        self._key_id = key_id
        self._client = client
        self._arn: str | None = None

    @property
    def key_id(self) -> str:
        return self._key_id

    def is_current(self, master_key_id: str) -> bool:
        if master_key_id == self._key_id:
            return True
        if self._arn is None:
            meta = self._call("DescribeKey", self._client.describe_key, KeyId=self._key_id)
            self._arn = str(meta["KeyMetadata"]["Arn"])
        return master_key_id == self._arn

    def wrap(self, plaintext_key: bytes, context: Context) -> Wrapped:
        _check_plain_key(plaintext_key)
        resp = self._call(
            "Encrypt",
            self._client.encrypt,
            KeyId=self._key_id,
            Plaintext=plaintext_key,
            EncryptionContext=dict(context),
        )
        return Wrapped(bytes(resp["CiphertextBlob"]), str(resp["KeyId"]))

    def unwrap(self, wrapped: bytes, master_key_id: str, context: Context) -> bytes:
        resp = self._call(
            "Decrypt",
            self._client.decrypt,
            CiphertextBlob=wrapped,
            KeyId=master_key_id,
            EncryptionContext=dict(context),
        )
        key = bytes(resp["Plaintext"])
        if len(key) != KEY_SIZE:
            raise DecryptionFailed("KMS returned a key of the wrong length")
        return key

    def generate_data_key(self, context: Context) -> DataKey:
        resp = self._call(
            "GenerateDataKey",
            self._client.generate_data_key,
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext=dict(context),
        )
        return DataKey(bytes(resp["Plaintext"]), bytes(resp["CiphertextBlob"]), str(resp["KeyId"]))

    def rewrap(self, wrapped: bytes, master_key_id: str, context: Context) -> Wrapped:
        resp = self._call(
            "ReEncrypt",
            self._client.re_encrypt,
            CiphertextBlob=wrapped,
            SourceKeyId=master_key_id,
            SourceEncryptionContext=dict(context),
            DestinationKeyId=self._key_id,
            DestinationEncryptionContext=dict(context),
        )
        return Wrapped(bytes(resp["CiphertextBlob"]), str(resp["KeyId"]))

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key_id={self._key_id!r})"

    def _call(self, operation: str, method: Callable[..., Any], **params: Any) -> Any:
        try:
            return method(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code in _UNDECRYPTABLE_KMS_ERRORS:
                raise DecryptionFailed(
                    f"KMS {operation} refused the wrapped key ({code}): wrong key or context, "
                    "or tampered"
                ) from None
            raise KeyProviderError(
                f"KMS {operation} failed: {code}", retriable=code in RETRIABLE_KMS_ERRORS
            ) from exc
        except ParamValidationError:
            # Its message quotes parameter values, which may include the plaintext key.
            raise KeyProviderError(f"KMS {operation}: invalid request parameters") from None
        except BotoCoreError as exc:  # connection failures and timeouts, missing credentials, ...
            raise KeyProviderError(
                f"KMS {operation} failed: {type(exc).__name__}",
                retriable=isinstance(exc, BotoConnectionError | HTTPClientError),
            ) from exc
