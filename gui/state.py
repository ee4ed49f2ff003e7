"""What the GUI knows, in objects that background tasks update and pages watch.

`GuiState` holds the broker's jobs (as the broker last said them), the farm view, the
connection to the broker and the uploads this GUI is streaming.
Pages never ask the broker to draw themselves: they render this state and re-render
when it says it changed, so a dead broker never breaks a page.

Change notifications are coalesced: an upload reports progress for every packet, but
listeners hear about it at most every `NOTIFY_DELAY` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from whisperfarm.farm_view import FarmView
from whisperfarm.jobs import Job

log = logging.getLogger(__name__)

NOTIFY_DELAY = 0.25
MAX_JOBS = 500
"""Jobs kept in memory; the broker lists 200 by default, events add the rest."""

Listener = Callable[[], None]
Phase = Literal["checking", "connecting", "uploading", "transcribing", "reconnecting"]


@dataclass
class Connection:
    """Whether the broker answers; `checked` is False until the first attempt ended."""

    broker: str
    up: bool = False
    checked: bool = False
    reason: str = ""
    since: float = field(default_factory=time.time)

    @property
    def down(self) -> bool:
        return self.checked and not self.up


@dataclass
class Upload:
    """One file this GUI is streaming to the farm right now."""

    key: str
    name: str
    path: Path
    language: str | None
    task: Literal["transcribe", "translate"]
    person: str | None = None
    """Whose upload it is (`gui.identity.person`; None: the GUI's own)."""
    diarize: bool = False
    """Speaker labels asked for (`start.diarize`)."""
    created_at: float = field(default_factory=time.time)
    phase: Phase = "checking"
    job_id: str | None = None
    frames_sent: int = 0
    expected_frames: int | None = None
    note: str = ""
    """Why the stream is reconnecting, in the client's words (shown with `attempt`)."""
    attempt: tuple[int, int] | None = None
    """Reconnect attempt and the most there will be, while reconnecting."""

    @property
    def progress(self) -> float | None:
        """Share of the file sent (0–1), None while it is unknown."""
        if self.phase == "transcribing":
            return 1.0
        if self.phase not in ("uploading", "reconnecting") or not self.expected_frames:
            return None
        return min(1.0, self.frames_sent / self.expected_frames)


class GuiState:
    """Everything pages render; updated only by the GUI's background tasks and handlers."""

    def __init__(self, broker: str) -> None:
        self.connection = Connection(broker)
        self.farm = FarmView()
        self.jobs: dict[str, Job] = {}
        self.uploads: dict[str, Upload] = {}
        self.version = 0
        self._listeners: set[Listener] = set()
        self._pending: asyncio.TimerHandle | None = None

    # ---- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after changes (coalesced); returns the unsubscribe function."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def changed(self) -> None:
        self.version += 1
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain unit test): nothing is listening anyway
            return
        self._pending = loop.call_later(NOTIFY_DELAY, self._notify)

    def _notify(self) -> None:
        self._pending = None
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # one broken page must not stop the others' updates
                log.error("a state listener failed", exc_info=True)

    # ---- broker side -------------------------------------------------------------------

    def set_up(self) -> None:
        if not self.connection.up or not self.connection.checked:
            log.info("broker %s reachable", self.connection.broker)
            self.connection.up, self.connection.checked = True, True
            self.connection.reason, self.connection.since = "", time.time()
            self.changed()

    def set_down(self, reason: str) -> None:
        if self.connection.up or not self.connection.checked or self.connection.reason != reason:
            log.info("broker %s unreachable: %s", self.connection.broker, reason)
            self.connection.up, self.connection.checked = False, True
            self.connection.reason, self.connection.since = reason, time.time()
            self.changed()

    def set_farm(self, farm: FarmView) -> None:
        self.farm = farm
        self.changed()

    def replace_jobs(self, jobs: list[Job]) -> None:
        """A fresh listing: it is the truth, except for events newer than it."""
        fresh = {j.id: j for j in jobs}
        for job_id, job in self.jobs.items():
            newer = fresh.get(job_id)
            if newer is not None and job.updated_at > newer.updated_at:
                fresh[job_id] = job
        self.jobs = fresh
        self._trim()
        self.changed()

    def upsert_job(self, job: Job) -> bool:
        """Apply one job event; False if it was older than what is known."""
        known = self.jobs.get(job.id)
        if known is not None and known.updated_at > job.updated_at:
            return False
        self.jobs[job.id] = job
        if len(self.jobs) > MAX_JOBS:
            self._trim()
        self.changed()
        return True

    def _trim(self) -> None:
        if len(self.jobs) <= MAX_JOBS:
            return
        newest = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)[:MAX_JOBS]
        self.jobs = {j.id: j for j in newest}

    # ---- uploads -----------------------------------------------------------------------

    def add_upload(self, upload: Upload) -> None:
        self.uploads[upload.key] = upload
        self.changed()

    def drop_upload(self, key: str) -> None:
        if self.uploads.pop(key, None) is not None:
            self.changed()

    def upload_for_job(self, job_id: str) -> Upload | None:
        return next((u for u in self.uploads.values() if u.job_id == job_id), None)
