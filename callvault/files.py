"""Writing secret files safely: created 0600 whatever the umask, fsynced, published atomically.

Shared by every key file Callvault writes (master key, journal key, the local CA's keys), so the
one careful implementation is the only one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private_tmp(target: Path, content: bytes) -> Path:
    """Write ``content`` to a fresh 0600 file beside ``target`` (O_EXCL) and fsync it; the
    caller publishes it (``os.link`` to refuse overwriting, ``os.replace`` to replace)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # whatever the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_private(target: Path, content: bytes) -> None:
    """Atomically replace (or create) ``target`` with a 0600 file holding ``content``."""
    tmp = write_private_tmp(target, content)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
