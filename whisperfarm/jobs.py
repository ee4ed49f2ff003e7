"""The job record and its states: what the broker stores, serves over REST and SSE, and
what the GUI reads back — one model on both sides of the HTTP edge."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from whisperfarm.packets import AudioFormat, SampleFormat

PREVIEW_CHARS = 120
"""Enough text to recognise a transcript in a table row without downloading it."""


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


DECODE_OPTIONS = {
    "prompt",
    "temperature",
    "word_timestamps",
    "live",
    "vad",
    "vad_pause_ms",
    "vad_threshold",
    "diarize",
    "speakers",
}
"""The `start` fields that travel to the worker as they are."""

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
    format: SampleFormat
    language: str | None = None
    """Asked for in `start` until the job is done, then the detected one."""
    task: Literal["transcribe", "translate"] = "transcribe"
    model: str | None = None
    """The model its worker must serve (None: any)."""
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    live: bool = False
    """Decoded as it arrives, with partials (`start.live`)."""
    vad: bool = True
    vad_pause_ms: int | None = None
    vad_threshold: float | None = None
    diarize: bool = False
    """Speaker labels on the transcript's segments (`start.diarize`)."""
    speakers: int | None = None
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
    """Whose job it is: the API token's hash, or `person:<name>` for a person a service
    token acted for (None: nobody in particular; see `broker.auth.Identity`)."""
    person: str | None = None
    """The person a service token (the GUI) created the job for, if any."""
    preview: str | None = None
    """The transcript's first words (`preview_of`), once the job is done."""

    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, self.format)

    def decode_options(self) -> dict[str, Any]:
        """The `start` options for the engine that differ from their defaults (ASSIGN
        sends only those, so a job that asked for none costs the wire nothing)."""
        return self.model_dump(include=DECODE_OPTIONS, exclude_defaults=True)

    @property
    def upload_ended(self) -> bool:
        return self.upload_ended_at is not None

    def touch(self) -> None:
        self.updated_at = time.time()


def preview_of(text: str) -> str:
    """The first `PREVIEW_CHARS` of a transcript on one line, cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1].rstrip() + "…"
