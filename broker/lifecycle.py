"""The job life cycle: every status change of a job, and what goes with it.

`queued → streaming → transcribing → done | failed`, and `interrupted` (resumable). Each
change is saved to the job store first and then published to `/v1/events`. The runs in
progress live here (`runs`); admission slots are taken by the farm's edge API and given
back here, when a run finishes (`_finish`), whichever way it finishes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from broker import metrics
from broker.admission import Admission
from broker.disk import Disk
from broker.dispatcher import Dispatcher
from broker.events import EventHub
from broker.intake import Intake
from broker.jobstore import JobStore
from broker.run import StreamRun
from broker.settings import BrokerSettings
from broker.spool import FLUSH_INTERVAL_S, JobFiles
from broker.transcript_store import TranscriptStore
from whisperfarm.errors import Interrupted, Timeout, WhisperfarmError
from whisperfarm.farm_view import FarmView, StreamsView
from whisperfarm.jobs import Job, JobStatus
from whisperfarm.packets import PacketValidator
from whisperfarm.protocol import Ack, Error, SegmentData

log = logging.getLogger(__name__)


class JobLifecycle:
    def __init__(
        self,
        settings: BrokerSettings,
        store: JobStore,
        events: EventHub,
        admission: Admission,
        disk: Disk,
        transcripts: TranscriptStore,
        dispatcher: Dispatcher,
    ) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        self._admission = admission
        self._disk = disk
        self._transcripts = transcripts
        self._dispatcher = dispatcher
        self.intake = Intake(settings, disk, dispatcher, self.publish_job)
        self.runs: dict[str, StreamRun] = {}
        self._kept_commits: dict[str, list[SegmentData]] = {}
        """Interrupted live jobs' committed segments: their resume goes on after them.
        In memory only: after a broker restart, a live job's spool is transcribed again
        from its start like a file's."""

    # ---- into the farm ----------------------------------------------------------------

    def admit(self, run: StreamRun) -> None:
        """An admitted stream (new or resumed) waits for a worker; its client is attached.
        A resumed live stream goes on after the segments it had committed."""
        kept = self._kept_commits.pop(run.job_id, None)
        if kept:
            run.segments = kept
            run.segments_sent = kept[-1].id + 1
        self._hold(run)
        run.outbox = asyncio.Queue()
        self.set_status(run.job, JobStatus.QUEUED)
        self._dispatcher.submit(run)
        self.farm_changed()

    def requeue(self, job: Job) -> None:
        """A job whose upload had ended, re-queued with no client (after a restart)."""
        audio = job.audio_format()
        files = JobFiles(self._settings.data_dir, job.id)
        run = StreamRun(job, files, audio, PacketValidator(audio, job.frames), ended=True)
        run.closed_spool_bytes = files.spool_size()  # complete: its upload had ended
        run.ended_at = time.monotonic()
        job.worker = None
        self._hold(run)
        self.set_status(job, JobStatus.QUEUED)
        self._dispatcher.submit(run)

    # ---- the upload's end ---------------------------------------------------------------

    def end_upload(self, run: StreamRun) -> None:
        """The client sent `end` (called once per upload, by its edge): the worker is
        told at once, and the spool becomes durable in the background (`run.spool_closed`).
        The job counts as ended (status, ack of every frame) only once it is; the final
        need not wait for that: it goes out with the worker's result, and from then on
        the client holds the transcript and has nothing to resend. Raises the spool's
        error, and then the upload has not ended."""
        self.intake.seal(run)
        run.spool_closed = asyncio.ensure_future(self._upload_ended(run))

    async def _upload_ended(self, run: StreamRun) -> None:
        await self.intake.close_spool(run)
        if run.finished.is_set():
            return  # the final came first and acked every frame
        run.emit(Ack(frames=run.job.frames))
        holds = self._dispatcher.holds(run)
        self.set_status(run.job, JobStatus.TRANSCRIBING if holds else JobStatus.QUEUED)

    # ---- out of the farm ----------------------------------------------------------------

    def abort(self, run: StreamRun, exc: WhisperfarmError) -> asyncio.Future[None] | None:
        """The one way an upload that cannot go on ends: its client gets `exc`; a job
        that can be resumed (a timeout, the storage restarting) is interrupted — returns
        what is left of closing its spool —, any other error fails it."""
        if isinstance(exc, Timeout | Interrupted):
            metrics.STREAM_ERRORS.labels(code=exc.code.value).inc()
            run.emit(Error.from_exception(exc), exc.close_code)
            return self.interrupt(run, exc.detail)
        self.fail(run, exc)
        return None

    def interrupt(self, run: StreamRun, reason: str) -> asyncio.Future[None] | None:
        """The upload stopped before `end`: the spool is kept for a `resume`, and the
        job is resumable at once (a client that reconnects at once finds it so); the
        returned future is the spool's last fsync, which may lag."""
        if run.ended or run.finished.is_set():
            run.detach()
            return None
        self._dispatcher.cancel(run)
        try:  # now: a resume (after its disk barrier) must find every packet in the file
            self.intake.pass_on(run)
        except WhisperfarmError as exc:  # a resume starts from what the file holds
            log.warning("job %s: %s", run.job_id, exc.detail)
        closing = asyncio.ensure_future(self._close_kept_spool(run))
        if run.job.live and run.segments:
            self._kept_commits[run.job_id] = list(run.segments)
        run.job.error = reason
        self.set_status(run.job, JobStatus.INTERRUPTED)
        self._finish(run)
        log.info("job %s interrupted: %s", run.job_id, reason)
        return closing

    async def _close_kept_spool(self, run: StreamRun) -> None:
        try:
            await self.intake.close_spool(run)
        except WhisperfarmError as exc:  # a resume starts from what the file holds
            log.warning("job %s: %s", run.job_id, exc.detail)

    def fail(self, run: StreamRun, exc: WhisperfarmError) -> None:
        """End a run with an error sent to the client (if attached) and a failed job."""
        if run.finished.is_set():
            return
        self._dispatcher.cancel(run)
        self.intake.drop_spool(run)
        metrics.STREAM_ERRORS.labels(code=exc.code.value).inc()
        run.emit(Error.from_exception(exc), exc.close_code)
        run.job.error = exc.detail
        self.set_status(run.job, JobStatus.FAILED)
        metrics.JOBS_FINISHED.labels(status="failed").inc()
        self._finish(run)

    def done(self, run: StreamRun) -> None:
        """The worker's final is in and its transcript on its way to the disk."""
        run.job.error = None
        self.set_status(run.job, JobStatus.DONE)
        self._observe_done(run)
        self._finish(run)

    def _hold(self, run: StreamRun) -> None:
        """The run is in the farm until `_finish`."""
        self.runs[run.job_id] = run
        if run.job.live:
            metrics.LIVE_STREAMS.inc()

    def _finish(self, run: StreamRun) -> None:
        if self.runs.pop(run.job_id, None) is run and run.job.live:
            metrics.LIVE_STREAMS.dec()
        if run.admitted:
            run.admitted = False
            self._admission.release(run.job.owner)
            self.farm_changed()
        run.finished.set()

    def _observe_done(self, run: StreamRun) -> None:
        metrics.JOBS_FINISHED.labels(status="done").inc()
        metrics.AUDIO_SECONDS_TRANSCRIBED.inc(run.job.duration)
        now = time.monotonic()
        metrics.JOB_LATENCY.observe(now - (run.ended_at or run.queued_at))
        if run.job.duration > 0:
            metrics.JOB_RTF.observe((now - run.accepted_at) / run.job.duration)

    # ---- the spools that went quiet -----------------------------------------------------

    async def pass_on_quiet(self) -> None:
        """Spool and forward the packets of streams that went quiet (the others go on as
        their packets come), so that none waits much longer than the interval."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S / 2)
            for run in self.intake.due(list(self.runs.values()), time.monotonic()):
                try:
                    self.intake.pass_on(run)
                except WhisperfarmError as exc:
                    self.abort(run, exc)

    # ---- status -------------------------------------------------------------------------

    def set_status(self, job: Job, status: JobStatus) -> None:
        job.status = status
        job.touch()
        if status in (JobStatus.DONE, JobStatus.FAILED):
            job.finished_at = job.updated_at
            self._kept_commits.pop(job.id, None)
            if not self._transcripts.pending(job.id):  # else once it is durable
                self.expire_spool(job)
        self._store.save(job)
        self.publish_job(job)

    def expire_spool(self, job: Job) -> None:
        """Drop a finished job's audio after `--spool-retention` (its transcript is durable)."""
        retention = self._settings.spool_retention
        if retention < 0:
            return
        path = JobFiles(self._settings.data_dir, job.id).spool_path
        delay = max(0.0, (job.finished_at or 0) + retention - time.time())
        asyncio.get_running_loop().call_later(delay, self._disk.discard, path)

    def publish_job(self, job: Job) -> None:
        if self._events.watched:
            self._events.publish("job", job.model_dump(mode="json", exclude={"owner"}), job.owner)

    def farm_changed(self) -> None:
        if self._events.watched:
            self._events.publish("farm", self.farm_info().model_dump(mode="json"))

    def farm_info(self) -> FarmView:
        return FarmView(
            workers=self._dispatcher.snapshot(),
            streams=StreamsView(active=self._admission.active, limit=self._admission.limit),
            queue=len(self._dispatcher.queue),
        )
