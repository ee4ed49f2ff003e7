"""Atomic file writes, shared by every component that stores results.

A reader (or a crash) never sees half a file: data goes to a temp file in the same
directory, is fsynced, and is renamed over the target; the directory is fsynced too, so
the rename itself survives a power cut. A caller that makes many files
durable at once (the broker, with a file-system sync shared by every job finishing in
the same instant) may skip the fsync and sync before it relies on them.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


def write_atomic(target: Path, data: bytes | str, sync: bool = True) -> None:
    """Write `data` (text as UTF-8) to `target` through a temp file and a rename; with
    `sync=False` the caller syncs the file system before it counts on the file."""
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        sync_directory(target.parent)


def sync_directory(path: Path) -> None:
    """fsync a directory: its entries (a create, a rename) are durable after this.
    (Windows cannot open a directory; NTFS journals the rename itself.)"""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _umask() -> int:
    """The process umask; reading it means setting it, so do that once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
