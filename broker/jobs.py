"""The job record and its states, as stored and as served over REST."""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import BaseModel

from whisperfarm.packets import AudioFormat


class JobStatus(StrEnum):
    QUEUED = "queued"
    """Admitted, audio spooling, no worker slot yet."""
    STREAMING = "streaming"
    """A worker holds it and decodes while the upload goes on."""
    TRANSCRIBING = "transcribing"
    """Upload ended; the worker is finishing."""
    INTERRUPTED = "interrupted"
    """The client dropped before `end`; resumable until the idle timeout."""
    DONE = "done"
    FAILED = "failed"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.STREAMING, JobStatus.TRANSCRIBING})
FINISHED_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED})


class Job(BaseModel):
    """One stream's job: everything the REST API and the GUI show about it."""

    id: str
    name: str
    status: JobStatus = JobStatus.QUEUED
    created_at: float
    updated_at: float
    started_at: float | None = None
    """When a worker first took it."""
    upload_ended_at: float | None = None
    finished_at: float | None = None
    sample_rate: int
    channels: int
    format: str
    language: str | None = None
    """Asked for in `start` until the job is done, then the detected one."""
    task: str = "transcribe"
    model: str | None = None
    """The model its worker must serve (None: any)."""
    duration_hint: float | None = None
    frames: int = 0
    """Frames received (durable in the spool)."""
    duration: float = 0.0
    """Audio seconds received."""
    worker: str | None = None
    attempt: int = 0
    decode_started: float | None = None
    decode_ended: float | None = None
    error: str | None = None
    owner: str | None = None
    """Hash of the API token that created the job (None when auth is off)."""

    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, self.format)  # type: ignore[arg-type]

    @property
    def upload_ended(self) -> bool:
        return self.upload_ended_at is not None

    def touch(self) -> None:
        self.updated_at = time.time()
