"""Per-job files under the data dir: the audio spool and the finished transcripts.

`<data_dir>/jobs/<job_id>/spool.pcm` holds the raw packets as received;
`transcript.json` is written atomically (temp file + rename) so a crash never leaves a
half-written transcript that a restarted broker would serve; the other formats are
rendered from it on request.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from broker.disk import Disk
from whisperfarm.transcripts import Transcript

FLUSH_INTERVAL_S = 1.0
"""Longest a received packet waits in memory before it is spooled and forwarded (the
worker decodes windows of many seconds: finer forwarding would gain it nothing). As long
as the default ack interval (16 packets: 1 s of real-time audio), so a real-time stream
flushes once a second, at its ack; at 0.5 s it flushed twice, and each flush is a
ZeroMQ send of six frames (each gives up the GIL) and a disk write."""
FLUSH_BYTES = 64_000
"""A stream with this much pending (two seconds of 16 kHz s16le mono) is flushed at once."""


class JobFiles:
    """Where one job's files live."""

    def __init__(self, data_dir: Path, job_id: str) -> None:
        self.dir = data_dir / "jobs" / job_id
        self.spool_path = self.dir / "spool.pcm"

    @property
    def transcript_path(self) -> Path:
        return self.dir / "transcript.json"

    def read_transcript(self) -> Transcript | None:
        path = self.transcript_path
        if not path.exists():
            return None
        return Transcript.model_validate_json(path.read_bytes())

    def spool_size(self) -> int:
        try:
            return self.spool_path.stat().st_size
        except FileNotFoundError:
            return 0


class SpoolWriter:
    """Gathers a job's packets and appends them to its spool a flush at a time.

    A real-time stream sends a 2000-byte packet every 62.5 ms; a thousand of them are
    16 000 packets a second, and a write plus a ZeroMQ send for each would take most of
    the broker's core. So packets wait in memory until `flush()` (`Intake.pass_on`: at
    every ack, at `end`, when a flush's worth has gathered, and on a short timer), which
    hands them to the disk agent in one append and back to the intake for one forward.

    `size` counts every byte received, `written` what has been handed to the disk
    agent: anything queued there later (a replay's read, a sync, the close) sees it.
    An append that fails is kept by the disk (`error`) and raised by the next flush or
    sync; the agent appends nothing after it, so the file never has a hole.
    """

    def __init__(self, disk: Disk, handle: int, path: Path, size: int) -> None:
        """Use `open`: the file is opened by the disk agent."""
        self.path = path
        self._disk = disk
        self._handle = handle
        self.written = size
        self._pending = bytearray()
        self.pending_packets = 0
        self.pending_since = 0.0
        """`time.monotonic()` when the oldest pending packet came."""
        self.closed = False

    @classmethod
    async def open(cls, files: JobFiles, disk: Disk, keep_bytes: int = 0) -> SpoolWriter:
        """Open (create) the job's spool, cut to `keep_bytes` if it is longer (a resumed
        upload keeps its whole packets)."""
        handle, size = await disk.open_spool(files.spool_path, keep_bytes)
        return cls(disk, handle, files.spool_path, size)

    @property
    def error(self) -> OSError | None:
        return self._disk.spool_error(self._handle)

    @property
    def size(self) -> int:
        return self.written + len(self._pending)

    @property
    def pending(self) -> int:
        """Bytes received but not handed to the disk agent yet."""
        return len(self._pending)

    def flush_due(self, now: float) -> bool:
        """A flush's worth is pending, or its oldest packet has waited the interval."""
        return bool(self._pending) and (
            len(self._pending) >= FLUSH_BYTES or now - self.pending_since >= FLUSH_INTERVAL_S
        )

    def append(self, packet: bytes, now: float) -> None:
        if not self._pending:
            self.pending_since = now
        self._pending += packet
        self.pending_packets += 1

    def flush(self) -> bytes:
        """Queue what is pending for writing; returns it (empty when nothing was)."""
        error = self.error
        if error is not None:
            raise error
        if not self._pending:
            return b""
        data = bytes(self._pending)
        self._pending.clear()
        self.pending_packets = 0
        self._disk.append(self._handle, data)
        self.written += len(data)
        return data

    def close(self, sync: bool = True) -> asyncio.Future[bytes] | None:
        """Queue what is pending and the close; `sync=False` when a `GroupSync` round
        already made everything durable. Returns the close's future (None if closed)."""
        if self.closed:
            return None
        self.closed = True
        if self._pending and self.error is None:
            with contextlib.suppress(OSError):  # kept as the spool's error
                self.flush()
        return self._disk.close_spool(self._handle, sync)
