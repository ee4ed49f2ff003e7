"""Atomic file writes, shared by every component that stores results.

A reader (or a crash) never sees half a file: data goes to a temp file in the same
directory, is fsynced, and is renamed over the target; the directory is fsynced too, so
the rename itself survives a power cut. A caller that makes many files
durable at once (the broker, with a file-system sync shared by every job finishing in
the same instant) may skip the fsync and sync before it relies on them.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path


def write_atomic(target: Path, data: bytes | str, sync: bool = True) -> None:
    """Write `data` (text as UTF-8) to `target` through a temp file and a rename; with
    `sync=False` the caller syncs the file system before it counts on the file.

    Plain `os` calls, as few as the job needs: the broker makes these from a thread
    while its event loop holds the GIL, and every system call is a wait to get the GIL
    back (`tempfile.mkstemp` plus a chmod was twice the calls, for a random name that a
    per-process counter gives for free).
    """
    payload = data.encode() if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{next(_temp_names)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        sync_directory(target.parent)


_temp_names = itertools.count()
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


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
