"""Per-job files under the data dir: the audio spool and the finished transcripts.

`<data_dir>/jobs/<job_id>/spool.pcm` holds the raw packets as received;
`transcript.{txt,json,srt,vtt}` are written atomically (temp file + rename) so a crash
never leaves a half-written transcript that a restarted broker would serve.
"""

from __future__ import annotations

import os
from pathlib import Path

from whisperfarm.files import write_atomic
from whisperfarm.transcripts import FORMATS, Transcript, render


class JobFiles:
    """Where one job's files live."""

    def __init__(self, data_dir: Path, job_id: str) -> None:
        self.dir = data_dir / "jobs" / job_id
        self.spool_path = self.dir / "spool.pcm"

    def transcript_path(self, fmt: str) -> Path:
        return self.dir / f"transcript.{fmt}"

    def write_transcript(self, transcript: Transcript) -> None:
        """All formats, json last: its presence marks a complete set."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for fmt in (*(f for f in FORMATS if f != "json"), "json"):
            write_atomic(self.transcript_path(fmt), render(transcript, fmt))

    def read_transcript(self) -> Transcript | None:
        path = self.transcript_path("json")
        if not path.exists():
            return None
        return Transcript.model_validate_json(path.read_bytes())

    def spool_size(self) -> int:
        try:
            return self.spool_path.stat().st_size
        except FileNotFoundError:
            return 0


class SpoolWriter:
    """Appends packets to a job's spool; `broker.durability.GroupSync` makes them durable.

    Unbuffered writes keep the file's size equal to what was received, so a replay to a
    new worker can read up to the current size without a flush.
    """

    def __init__(self, files: JobFiles, keep_bytes: int = 0) -> None:
        files.dir.mkdir(parents=True, exist_ok=True)
        self.path = files.spool_path
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the stream
        if keep_bytes < self._file.tell():
            self._file.truncate(keep_bytes)
            self._file.seek(keep_bytes)
        self.size = self._file.tell()

    def append(self, packet: bytes) -> None:
        self._file.write(packet)
        self.size += len(packet)

    def close(self, sync: bool = True) -> None:
        """Close; `sync=False` when a `GroupSync` round already made it durable."""
        if not self._file.closed:
            if sync:
                os.fsync(self._file.fileno())
            self._file.close()


def read_spool(path: Path, offset: int, length: int) -> bytes:
    """Read part of a spool (runs in a thread: spools can be gigabytes)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
