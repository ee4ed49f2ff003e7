"""Per-job files under the data dir: the audio spool and the finished transcripts.

`<data_dir>/jobs/<job_id>/spool.pcm` holds the raw packets as received;
`transcript.json` is written atomically (temp file + rename) so a crash never leaves a
half-written transcript that a restarted broker would serve; the other formats are
rendered from it on request.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

from broker.disk import Disk
from whisperfarm.files import write_atomic
from whisperfarm.transcripts import Transcript, render

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

    def write_transcript(self, json_text: str) -> None:
        """Store a transcript durably as `render(transcript, "json")` gave it: the one
        stored form, txt, srt and vtt are rendered from it when asked for (four files
        per job were four creates and renames; at a hundred jobs finishing a second
        that was most of the disk thread).

        Runs on a commit thread, so it gets the JSON ready-made: rendering is Python
        work, and a thread doing it holds the GIL that the event loop waits for.
        Written only once a job is complete, so its presence after a restart means
        the job is done, whatever the job table says."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.transcript_path, json_text)

    def read_transcript(self) -> Transcript | None:
        path = self.transcript_path
        if not path.exists():
            return None
        return Transcript.model_validate_json(path.read_bytes())

    def render_transcript(self, fmt: str) -> str | None:
        """The stored transcript in `fmt` (one of `FORMATS`), or None if there is none."""
        transcript = self.read_transcript()
        return render(transcript, fmt) if transcript is not None else None

    def spool_size(self) -> int:
        try:
            return self.spool_path.stat().st_size
        except FileNotFoundError:
            return 0


class SpoolWriter:
    """Gathers a job's packets and appends them to its spool a flush at a time.

    A real-time stream sends a 2000-byte packet every 62.5 ms; a thousand of them are
    16 000 packets a second, and a write plus a ZeroMQ send for each was most of the
    broker's core. So packets wait in memory until `flush()` (the farm flushes at every
    ack, at `end`, when a flush's worth has gathered, and on a short timer), which hands
    them to the disk thread in one write and back to the farm for one forward.

    `size` counts every byte received, `written` what has been handed to the disk
    thread: anything queued there later (a replay's read, a sync, the close) sees it.
    A write that fails is kept in `error` and raised by the next flush or sync.
    """

    def __init__(self, files: JobFiles, disk: Disk, keep_bytes: int = 0) -> None:
        files.dir.mkdir(parents=True, exist_ok=True)
        self.path = files.spool_path
        self._disk = disk
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the stream
        if keep_bytes < self._file.tell():
            self._file.truncate(keep_bytes)
            self._file.seek(keep_bytes)
        self.written = self._file.tell()
        self.error: OSError | None = None
        self._pending = bytearray()
        self.pending_packets = 0
        self.pending_since = 0.0
        """`time.monotonic()` when the oldest pending packet came."""
        self.closed = False

    @property
    def size(self) -> int:
        return self.written + len(self._pending)

    @property
    def pending(self) -> int:
        """Bytes received but not handed to the disk thread yet."""
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
        if self.error is not None:
            raise self.error
        if not self._pending:
            return b""
        data = bytes(self._pending)
        self._pending.clear()
        self.pending_packets = 0
        self._disk.append(self._write, data)
        self.written += len(data)
        return data

    def close(self, sync: bool = True) -> Future[None] | None:
        """Queue what is pending and the close; `sync=False` when a `GroupSync` round
        already made everything durable. Returns the close's future (None if closed)."""
        if self.closed:
            return None
        self.closed = True
        if self._pending and self.error is None:
            self.flush()
        return self._disk.submit(self._close, sync)

    def _write(self, data: bytes) -> None:  # on the disk thread
        if self.error is not None:
            return  # never leave a hole: after a failed write, nothing more is appended
        try:
            self._file.write(data)
        except OSError as exc:
            self.error = exc

    def _close(self, sync: bool) -> None:  # on the disk thread
        try:
            if sync and self.error is None:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()


def read_spool(path: Path, offset: int, length: int) -> bytes:
    """Read part of a spool (on the disk thread: spools can be gigabytes, and a read
    queued after a spool's writes sees them)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
