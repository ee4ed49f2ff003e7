"""The pipe between the broker and its disk agent: length-prefixed binary frames.

Every frame is a header (`HEADER`: body length, `Op`, tag) and a body. The broker
writes requests to the agent's stdin; the agent writes replies and notices to its
stdout. A request that is answered carries a tag of the broker's choosing and gets
`OK` or `FAILED` with the same tag; appends and discards are not answered (an append
that fails is reported once, by `SPOOL_FAILED`, and the bytes that have landed by
`LANDED`).

Fixed-size fields are packed with `struct`, paths are UTF-8 (`os.fsencode`): no JSON,
no pickle, so a frame costs the broker's event loop a few microseconds.
"""

from __future__ import annotations

import errno as errnos
import os
import struct
from enum import IntEnum

HEADER = struct.Struct("!IBQ")
"""Body length, op, tag."""
U64 = struct.Struct("!Q")
TWO_U64 = struct.Struct("!QQ")
ERROR = struct.Struct("!I")
"""An errno, followed by the error's text."""


class Op(IntEnum):
    # broker → agent
    OPEN = 1
    """tag: request; body: handle, bytes to keep (two u64), path. OK: bytes in the file."""
    APPEND = 2
    """tag: handle; body: the data. Not answered."""
    CLOSE = 3
    """tag: request; body: handle, 1 to fsync first else 0 (two u64). OK: empty."""
    READ = 4
    """tag: request; body: offset, length (two u64), path. OK: the bytes."""
    BARRIER = 5
    """tag: request. OK once everything queued before it is done."""
    SYNC = 6
    """tag: request. OK once everything queued before it is durable (`syncfs`)."""
    COMMIT = 7
    """tag: request; body: path length (u64), path, data. OK once written durably."""
    DISCARD = 8
    """tag: 0; body: path. Not answered."""
    SIZE = 9
    """tag: request; body: path. OK once everything queued before it is done: the
    file's size (u64). FAILED (ENOENT) if there is no such file."""
    READ_FILE = 10
    """tag: request; body: path. OK: the whole file, read outside the ordered queue.
    FAILED (ENOENT) if there is no such file."""
    # agent → broker
    OK = 64
    FAILED = 65
    """body: `ERROR`. The request's OSError."""
    SPOOL_FAILED = 66
    """tag: handle; body: `ERROR`. An append failed; nothing more is appended to it."""
    LANDED = 67
    """tag: the bytes of all appends done so far (written or failed)."""


def frame(op: Op, tag: int, body: bytes = b"") -> bytes:
    return HEADER.pack(len(body), op, tag) + body


def error_body(exc: OSError) -> bytes:
    code = exc.errno if exc.errno is not None else errnos.EIO
    return ERROR.pack(code) + (exc.strerror or str(exc)).encode(errors="replace")


def parse_error(body: bytes, what: str) -> OSError:
    (code,) = ERROR.unpack_from(body)
    return OSError(code, body[ERROR.size :].decode(errors="replace"), what)


def path_body(path: os.PathLike[str] | str) -> bytes:
    return os.fsencode(path)


class FrameReader:
    """Splits a byte stream into frames, however the reads cut it."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Op, int, bytes]]:
        """The frames completed by `data`, in order: (op, tag, body). A body is copied
        once, out of a view of the read (a whole file read back is one large body, and
        each fresh buffer of that size costs page faults)."""
        buffer = self._buffer
        if buffer:
            buffer += data
        source = buffer or data
        frames = []
        start = 0
        with memoryview(source) as view:
            while len(source) - start >= HEADER.size:
                length, op, tag = HEADER.unpack_from(source, start)
                end = start + HEADER.size + length
                if len(source) < end:
                    break
                frames.append((Op(op), tag, view[start + HEADER.size : end].tobytes()))
                start = end
            if source is data:
                buffer += view[start:]
        if source is buffer:
            del buffer[:start]
        return frames
