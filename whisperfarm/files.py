"""Atomic file writes, shared by every component that stores a file others read.

A reader (or a crash) never sees half a file: data goes to a temp file in the same
directory, is fsynced, and is renamed over the target; the directory is fsynced too, so
the rename itself survives a power cut.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomic(target: Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `target` durably, through a temp file and a rename.

    Plain `os` calls, as few as the job needs: the broker makes these from a thread
    while its event loop holds the GIL, and every system call is a wait to get the GIL
    back (`tempfile.mkstemp` plus a chmod was twice the calls, for a random name that a
    per-process counter gives for free).
    """
    payload = data.encode() if isinstance(data, str) else data
    with _replacing(target) as fd:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]


@contextmanager
def open_atomic(target: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `target`, whole and durable, when the block ends without
    an error; for writers that stream into a file object (`torch.save`, `json.dump`)."""
    with _replacing(target) as fd, open(fd, "wb", closefd=False) as file:
        yield file


@contextmanager
def _replacing(target: Path) -> Iterator[int]:
    """A new temp file beside `target`, open for writing: fsynced and renamed over `target`
    after the block, or removed if the block fails."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{next(_temp_names)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
