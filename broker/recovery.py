"""After a restart, and every second after: the jobs nobody is working on.

`recover` (once, at start) finishes what was fully received and marks cut uploads
resumable; `sweep` (periodically) fails interrupted jobs nobody resumed and streams no
worker took. Both act only through `JobLifecycle`, like every other status change.
"""

from __future__ import annotations

import asyncio
import logging
import time

from broker import metrics
from broker.dispatcher import Dispatcher
from broker.jobstore import JobStore
from broker.lifecycle import JobLifecycle
from broker.settings import BrokerSettings
from broker.spool import JobFiles
from whisperfarm.errors import NoWorker
from whisperfarm.jobs import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus, preview_of

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        settings: BrokerSettings,
        store: JobStore,
        lifecycle: JobLifecycle,
        dispatcher: Dispatcher,
    ) -> None:
        self._settings = settings
        self._store = store
        self._lifecycle = lifecycle
        self._dispatcher = dispatcher

    def recover(self) -> None:
        """After a restart: finish what was fully received, mark the rest resumable."""
        finished = self._store.list(limit=1_000_000, statuses=FINISHED_STATUSES)
        active = self._store.list(limit=1_000_000, statuses=ACTIVE_STATUSES)  # before any
        for job in finished:  # is re-queued below: each job is taken up once
            files = JobFiles(self._settings.data_dir, job.id)
            if job.status is JobStatus.DONE and not files.transcript_path.exists():
                self._transcript_lost(job, files)
            elif files.spool_path.exists():
                self._lifecycle.expire_spool(job)
        for job in active:
            if self._finish_stored(job):
                continue
            if job.upload_ended:
                self._lifecycle.requeue(job)
            else:
                job.error = "the broker restarted during the upload"
                self._lifecycle.set_status(job, JobStatus.INTERRUPTED)
        log.info("recovered: %d jobs re-queued", len(self._lifecycle.runs))

    def _transcript_lost(self, job: Job, files: JobFiles) -> None:
        """A done job whose transcript never reached the disk (the machine went down
        right after its final): transcribed again from its spool, which is deleted only
        once the transcript is durable; failed if the spool did not make it either."""
        if job.upload_ended and files.spool_path.exists():
            log.warning("job %s: its transcript did not reach the disk; transcribing again",
                        job.id)  # fmt: skip
            self._lifecycle.requeue(job)
            return
        job.error = "the transcript was lost before it reached the disk"
        self._lifecycle.set_status(job, JobStatus.FAILED)

    def _finish_stored(self, job: Job) -> bool:
        """A job whose transcript is on disk is done, even if the table did not say so
        yet (the table commits without an fsync; the transcript has one)."""
        try:
            transcript = JobFiles(self._settings.data_dir, job.id).read_transcript()
        except (OSError, ValueError) as exc:
            log.warning("job %s: unreadable transcript, transcribing again: %s", job.id, exc)
            return False
        if transcript is None:
            return False
        job.language = transcript.language
        job.duration = transcript.duration
        job.preview = preview_of(transcript.text)
        job.error = None
        self._lifecycle.set_status(job, JobStatus.DONE)
        return True

    async def sweep_loop(self) -> None:
        period = min(1.0, self._settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep()
            except Exception:
                log.error("sweep failed", exc_info=True)

    def sweep(self) -> None:
        """Fail interrupted jobs past the idle timeout and streams with no worker for too long."""
        s = self._settings
        now = time.time()
        for job in self._store.list(limit=10_000, statuses=[JobStatus.INTERRUPTED]):
            if now - job.updated_at >= s.idle_timeout:
                reason = job.error or "the client disconnected before end"
                job.error = f"{reason}; not resumed within {s.idle_timeout:g} s"
                self._lifecycle.set_status(job, JobStatus.FAILED)
                metrics.JOBS_FINISHED.labels(status="failed").inc()
        waited = time.monotonic() - s.no_worker_timeout
        for run in [r for r in self._dispatcher.queue if r.queued_at < waited]:
            self._lifecycle.fail(
                run, NoWorker(f"no worker took the stream within {s.no_worker_timeout:g} s")
            )
