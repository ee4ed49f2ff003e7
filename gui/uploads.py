"""Uploads: keep each file, probe it, and stream it to the farm with `StreamClient`.

A file is saved under the data dir first (so a rejected one can be retried, even after a
GUI restart), probed at once (an unreadable file is refused with its reason before any
connection), then streamed in a background task owned by the GUI, not by the page: a
reload or a closed tab does not cut an upload. The outcome lands in `GuiState`: a job
row from the broker, or a rejected row kept by `RejectedStore`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gui.rejected import Kind, Rejected, RejectedStore
from gui.state import GuiState, Upload
from whisperfarm.protocol import Partial, Segment
from whisperfarm.streaming.client import ClientOptions, StreamClient
from whisperfarm.streaming.decode import AudioInfo, open_audio
from whisperfarm.streaming.errors import (
    FarmOverloaded,
    FarmUnreachable,
    SourceError,
    UnreadableInput,
)
from whisperfarm.streaming.sources import FileAudio

log = logging.getLogger(__name__)

Task = Literal["transcribe", "translate"]
Spawn = Callable[[Coroutine[Any, Any, None], str], object]
MAX_NAME_CHARS = 200
_UNSAFE = re.compile(r"[\x00-\x1f/\\]")


@dataclass(frozen=True)
class Refused:
    """A file refused at once: shown to the person who dropped it, in their language
    (`upload.refused.<kind>` around the decoder's or the OS's own `detail`)."""

    name: str
    kind: Literal["unreadable", "unstored"]
    detail: str


class _Progress:
    """`StreamEvents` for one upload: moves its row through the phases."""

    def __init__(self, upload: Upload, state: GuiState) -> None:
        self._upload, self._state = upload, state

    def accepted(self, job_id: str, resume_from_frame: int) -> None:
        self._upload.job_id = job_id
        self._upload.phase = "uploading"
        self._upload.frames_sent = resume_from_frame
        self._upload.note, self._upload.attempt = "", None
        self._state.changed()

    def sent(self, frames: int) -> None:
        self._upload.frames_sent = frames
        self._state.changed()

    def uploaded(self) -> None:
        self._upload.phase = "transcribing"
        self._state.changed()

    def segment(self, segment: Segment) -> None:
        pass  # the transcript page reads finished transcripts; the job event brings its preview

    def partial(self, partial: Partial) -> None:
        pass  # uploads are never live: the client refuses a partial before it gets here

    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None:
        self._upload.phase = "reconnecting"
        self._upload.note, self._upload.attempt = reason, (attempt, retries)
        self._state.changed()


class Uploader:
    """Starts, retries and dismisses uploads; `spawn` runs a coroutine in the background."""

    def __init__(
        self,
        state: GuiState,
        store: RejectedStore,
        options: ClientOptions,
        spawn: Spawn,
    ) -> None:
        self._state, self._store, self._options, self._spawn = state, store, options, spawn

    async def submit(
        self, name: str, save: Callable[[Path], Coroutine[Any, Any, None]],
        language: str | None, task: Task, person: str | None = None, diarize: bool = False,
    ) -> Refused | None:  # fmt: skip
        """Keep one uploaded file (`save` writes it), probe it, and start streaming it."""
        key = uuid.uuid4().hex
        display = safe_name(name)
        path = self._store.upload_dir(key) / display
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            await save(path)
        except OSError as exc:
            self._store.discard_files(key)
            log.error("could not keep the upload %s", display, exc_info=True)
            return Refused(display, "unstored", str(exc.strerror or exc))
        return await self._start(Upload(key, display, path, language, task, person, diarize))

    async def _start(self, upload: Upload) -> Refused | None:
        """Probe (the row says "Checking"), then stream in the background."""
        self._state.add_upload(upload)
        try:
            info = await asyncio.to_thread(open_audio, upload.path)
        except UnreadableInput as exc:
            self._state.drop_upload(upload.key)
            self._store.discard_files(upload.key)
            self._reject(upload, "unreadable", exc.reason, keep_file=False)
            return Refused(upload.name, "unreadable", exc.reason)
        self._spawn(self._stream(upload, info), f"upload {upload.name}")
        return None

    def retry(self, key: str) -> bool:
        """Stream a rejected row's kept file again (False: nothing to retry)."""
        row = self._store.rows.get(key)
        if row is None or not row.retryable or row.file is None:
            return False
        self._store.take(key)
        path = self._store.data_dir / row.file
        upload = Upload(key, row.name, path, row.language, row.task, row.person, row.diarize)
        self._state.add_upload(upload)
        self._spawn(self._retry(upload), f"retry {upload.name}")
        return True

    async def _retry(self, upload: Upload) -> None:
        await self._start(upload)

    def dismiss(self, key: str) -> bool:
        if self._store.dismiss(key):
            self._state.changed()
            return True
        return False

    async def _stream(self, upload: Upload, info: AudioInfo) -> None:
        upload.phase, upload.expected_frames = "connecting", info.expected_frames
        self._state.changed()
        audio = FileAudio(upload.path, info)
        client = StreamClient(audio, self._with(upload), _Progress(upload, self._state))
        try:
            await client.transcribe()
        except FarmOverloaded as exc:
            self._reject(upload, "overloaded", exc.message, retry_after=exc.retry_after)
        except FarmUnreachable as exc:
            self._reject(upload, "unreachable", _tail(exc.message))
        except SourceError as exc:
            self._failed(upload, exc.message)
        except asyncio.CancelledError:
            log.info("upload of %s cancelled (the GUI is stopping)", upload.name)
            raise
        except Exception:
            log.error("upload of %s failed unexpectedly", upload.name, exc_info=True)
            self._failed(upload, "Unexpected error in the GUI (see its log)")
        else:
            self._store.discard_files(upload.key)
        finally:
            self._state.drop_upload(upload.key)

    def _failed(self, upload: Upload, message: str) -> None:
        """Before `accepted` the farm has no record: a rejected row. After, the job row tells."""
        if upload.job_id is None:
            self._reject(upload, "failed", message[:1].upper() + message[1:])
        else:
            log.info("upload of %s (job %s) ended: %s", upload.name, upload.job_id, message)
            self._store.discard_files(upload.key)

    def _with(self, upload: Upload) -> ClientOptions:
        return dataclasses.replace(
            self._options,
            language=upload.language,
            task=upload.task,
            person=upload.person,
            diarize=upload.diarize,
        )

    def _reject(
        self, upload: Upload, kind: Kind, reason: str, *, keep_file: bool = True,
        retry_after: float | None = None,
    ) -> None:  # fmt: skip
        log.info("%s rejected: %s", upload.name, reason)
        kept = self._store.relative(upload.path) if keep_file and upload.path.is_file() else None
        row = Rejected(
            key=upload.key, name=upload.name, kind=kind, reason=reason, file=kept,
            language=upload.language, task=upload.task, retry_after=retry_after,
            person=upload.person, diarize=upload.diarize,
        )  # fmt: skip
        self._store.add(row)
        self._state.changed()


def safe_name(name: str) -> str:
    """The browser's file name, usable as one path component and as the job's name."""
    cleaned = _UNSAFE.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        return "upload"
    if len(cleaned) > MAX_NAME_CHARS:
        _, dot, suffix = cleaned.rpartition(".")
        keep = suffix if dot and len(suffix) <= 10 else ""
        cleaned = cleaned[: MAX_NAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return cleaned


def _tail(message: str) -> str:
    """`cannot reach the farm at URL: reason` → `reason` (the banner names the URL)."""
    return message.rsplit(": ", 1)[-1]
