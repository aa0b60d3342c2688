"""The key that encrypts the ingest journal at rest, and the sealing of one frame payload.

Key file. Exactly 32 random bytes (AES-256), nothing else: no JSON, no newline. It lives outside
the journal directory (default ``<home>/keys/ingest-journal.key``) so that a copy of the journal
(a backup, a disk image, a support bundle) is not a copy of the audio, transcripts and caller
numbers in it. It is created on first use, atomically: the key is written to a fresh ``O_EXCL``
0600 file beside the target, fsynced, then published with ``link()``, which fails if the name
exists, so two processes racing agree on one key (the helpers are the master key file's, see
:mod:`callvault.crypto.providers`). A key file with any group or other permission bit is refused,
naming the path and ``chmod 600``. Symbolic links are followed (secret volumes mount keys as
links); the permission check applies to the file they lead to.

Key id. ``sha256(b"callvault-journal-key-id" + key)[:8]``: written into every encrypted segment's
header so a segment written under another key is recognised as such (and left alone) instead of
failing authentication frame by frame and being taken for corruption. The id is a one-way,
domain-separated digest of a 256-bit random key, so it may appear in logs and errors; the key
itself never does (:class:`JournalKey` keeps only the AEAD object, and its ``repr`` shows the id).

Sealing. AES-256-GCM with a fresh random 96-bit nonce per frame; the stored payload is
``nonce (12) | ciphertext | tag (16)``, 28 bytes more than the plain payload. The caller supplies
the associated data (the journal binds segment header, segment id and frame offset, see
:mod:`~sip_ingest.publish.journal`). Random nonces keep the collision risk below 2^-32 for up to
2^32 frames under one key (about 32 TiB of 8 KB audio chunks); a node that could ever spool more
than that should replace its key while the journal is empty (delete the key file when no ``.seg``
file is left; the next start creates a new one).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Final, NoReturn

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# the same careful key-file writing as the master key (one implementation)
from callvault.files import fsync_dir, write_private_tmp
from sip_ingest.publish.errors import JournalKeyError

log = structlog.get_logger(__name__)

KEY_SIZE: Final = 32
KEY_ID_SIZE: Final = 8
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
#: Bytes a sealed payload has on top of the plain one.
SEAL_OVERHEAD: Final = NONCE_SIZE + TAG_SIZE
_KEY_ID_DOMAIN: Final = b"callvault-journal-key-id"


def key_id_of(key: bytes) -> bytes:
    """The 8-byte fingerprint of ``key`` written into segment headers."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:KEY_ID_SIZE]


class JournalKey:
    """The journal's AES-256-GCM key: seals and opens frame payloads. One per journal.

    Holds the AEAD object, not the key bytes; ``repr`` shows the key id and file, never the key.
    Thread-safe (``AESGCM`` keeps no per-call state): the event loop seals while a worker thread
    opens.
    """

    __slots__ = ("_aead", "key_id", "path")

    def __init__(self, key: bytes, *, path: Path | None = None) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"a journal key is exactly {KEY_SIZE} bytes")
        self._aead = AESGCM(key)
        #: :func:`key_id_of` the key.
        self.key_id = key_id_of(key)
        #: The file it was read from, if any (for messages).
        self.path = path

    @classmethod
    def generate(cls) -> JournalKey:
        return cls(os.urandom(KEY_SIZE))

    def seal(self, payload: bytes, aad: bytes) -> bytes:
        """``nonce | ciphertext | tag`` of ``payload``, bound to ``aad``."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, payload, aad)

    def open(self, stored: bytes, aad: bytes) -> bytes | None:
        """The plain payload, or None if ``stored`` does not authenticate under this key and
        ``aad`` (tampered, damaged in a way the CRC missed, or sealed for another place)."""
        if len(stored) < SEAL_OVERHEAD:
            return None
        try:
            return self._aead.decrypt(stored[:NONCE_SIZE], stored[NONCE_SIZE:], aad)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"JournalKey(key_id={self.key_id.hex()!r}, path={str(self.path)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a JournalKey cannot be pickled")


def load_journal_key(path: Path, *, create: bool) -> JournalKey:
    """Read the key file at ``path``; if it does not exist and ``create``, make one first.

    Raises :class:`JournalKeyError` if the file is missing (and not to be created), unreadable,
    open to group or other, or not exactly 32 bytes.
    """
    path = Path(path)
    if create and not path.exists():
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(KEY_SIZE)
        tmp = write_private_tmp(path, key)
    except OSError as exc:
        raise JournalKeyError(f"cannot create journal key file {path}: {exc.strerror}") from None
    try:
        os.link(tmp, path)
        fsync_dir(path.parent)
    except FileExistsError:
        return  # another process won the race; its key is as good as ours
    except OSError as exc:
        raise JournalKeyError(f"cannot create journal key file {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    log.info("journal_key_created", path=str(path), key_id=key_id_of(key).hex())


def _read(path: Path) -> JournalKey:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise JournalKeyError(f"journal key file {path} does not exist") from None
    except OSError as exc:
        raise JournalKeyError(f"cannot open journal key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise JournalKeyError(f"journal key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise JournalKeyError(
                f"journal key file {path} has mode {mode:04o}: it must be readable by its owner "
                f"only; fix with: chmod 600 {path}"
            )
        raw = fh.read(KEY_SIZE + 1)
    if len(raw) != KEY_SIZE:
        raise JournalKeyError(
            f"journal key file {path} is not a journal key: it must hold exactly {KEY_SIZE} "
            f"bytes, it holds {'more' if len(raw) > KEY_SIZE else len(raw)}"
        )
    return JournalKey(raw, path=path)
