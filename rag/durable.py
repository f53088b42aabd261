"""fsync and write helpers: what makes a write survive a crash or a power loss, or fail cleanly."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import DiskFullError, StorageError

# Errors that mean "no room": a full file system, a quota, or a file size limit (`ulimit -f`).
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so that the names created or renamed in it are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """`os.write` until every byte is written: a write may take only part of the buffer (a signal,
    a file size limit, a disk filling up); the rest then either goes through or raises OSError."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # not expected from a regular file, but never loop forever on it
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


def storage_error(exc: OSError, what: str) -> StorageError:
    """The typed error for an OSError while writing `what`: DiskFullError when there is no room."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return DiskFullError(f"no space to write {what} ({reason}); the write was not applied")
    return StorageError(f"could not write {what} ({reason}); the write was not applied")
