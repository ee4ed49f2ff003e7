"""The broker's job side: admission, job states, spools, transcripts, recovery.

`Farm` owns every `StreamRun` and moves jobs through their states; the WebSocket edge
calls it for client events and the `Dispatcher` calls it (as its listener) for worker
events. Every state change is persisted first and then published to `/v1/events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from typing import Any

from broker import metrics
from broker.admission import Admission
from broker.auth import Authenticator, load_tokens
from broker.disk import Disk, DiskAgentGone
from broker.dispatcher import Dispatcher, WorkerInfo
from broker.durability import GroupSync
from broker.events import EventHub
from broker.jobs import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from broker.jobstore import JobStore, SqliteJobStore
from broker.loop_lag import watch_event_loop
from broker.run import StreamRun
from broker.settings import BrokerSettings
from broker.spool import FLUSH_INTERVAL_S, JobFiles, SpoolWriter
from broker.transcript_store import TranscriptStore
from whisperfarm.curve import CurveServer
from whisperfarm.errors import (
    BadPacket,
    CloseCode,
    Interrupted,
    NotFound,
    NoWorker,
    TooLarge,
    WhisperfarmError,
)
from whisperfarm.packets import PacketValidator
from whisperfarm.protocol import Ack, Error, Final, Segment, SegmentData, Start
from whisperfarm.transcripts import Transcript, join_segments, render

log = logging.getLogger(__name__)


class Farm:
    def __init__(self, settings: BrokerSettings, store: JobStore | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store: JobStore = store or SqliteJobStore(settings.data_dir / "jobs.sqlite3")
        self.events = EventHub()
        self.admission = Admission(
            settings.max_active, settings.retry_after, settings.max_streams_per_token
        )
        self.auth = Authenticator(load_tokens(settings.api_tokens, settings.api_tokens_file))
        self.runs: dict[str, StreamRun] = {}
        self._resuming: set[str] = set()
        """Jobs whose resume is opening their spool (not in `runs` yet)."""
        self.disk = Disk(settings.data_dir, int(settings.max_disk_backlog_mb * 1024 * 1024))
        metrics.DISK_BACKLOG.set_function(lambda: self.disk.backlog)
        self.syncer = GroupSync(self.disk)
        self.transcripts = TranscriptStore(self.disk, settings.data_dir)
        curve = (
            CurveServer.load(settings.curve_secret_key, settings.curve_clients_dir)
            if settings.curve_secret_key is not None
            else None
        )
        self.dispatcher = Dispatcher(
            settings.zmq,
            self,
            self.disk,
            settings.heartbeat_interval,
            settings.heartbeat_liveness,
            curve,
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.disk.start()
        self.recover()
        self._spawn(self.dispatcher.serve())
        self._spawn(self._sweep_loop())
        self._spawn(self._flush_loop())
        self._spawn(watch_event_loop())

    async def stop(self) -> None:
        """Stop in order: no new work, close clients' streams, then sockets and store."""
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for run in list(self.runs.values()):
            if run.spool is not None:
                run.spool.close()
            self.store.save(run.job)
        self.events.close()
        self.dispatcher.close()
        await self.disk.close()  # the spools' last writes and closes
        self.store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- client side -----------------------------------------------------------------

    async def open_stream(self, start: Start, owner: str | None = None) -> StreamRun:
        """Admit a new stream (or raise `Overloaded`) and queue it for a worker."""
        audio = start.audio_format()
        self.admission.acquire("start", owner)
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            name=start.name,
            created_at=now,
            updated_at=now,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            format=audio.format,
            language=start.language,
            task=start.task,
            duration_hint=start.duration,
            owner=owner,
        )
        files = JobFiles(self.settings.data_dir, job.id)
        spool = await self._open_spool(files, 0, owner)
        run = StreamRun(job, files, audio, PacketValidator(audio), spool, admitted=True)
        self._admit(run)
        return run

    async def _open_spool(self, files: JobFiles, keep_bytes: int, owner: str | None) -> SpoolWriter:
        """Open the spool of a just-admitted stream (the disk agent creates it); on a
        disk error, give the slot back."""
        try:
            return await SpoolWriter.open(files, self.disk, keep_bytes)
        except OSError as exc:
            self.admission.release(owner)
            log.error("cannot spool to %s: %s", files.dir, exc)
            raise SpoolUnavailable.from_os_error(exc) from None

    async def resume_stream(self, job_id: str, owner: str | None = None) -> StreamRun:
        """Re-attach a client to its job after a dropped connection.

        An interrupted upload is re-admitted from its last whole packet in the spool; an
        upload that had ended (the job goes on, or is done) is re-attached so the client
        gets its final after sending `end` again.
        """
        # The cut upload's last packets may still be queued for the disk: let them land
        # so the spool's size is final.
        await self.disk.barrier()
        job = self.job_for(job_id, owner)
        run = self.runs.get(job_id) if job is not None else None
        if run is not None and run.ended and run.outbox is None:
            run.outbox = asyncio.Queue()
            return run
        if job is not None and job.status is JobStatus.DONE:
            return self._finished_run(job)
        if (
            job is None
            or job.status is not JobStatus.INTERRUPTED
            or run is not None
            or job_id in self._resuming  # another connection is opening its spool
        ):
            state = "unknown" if job is None else job.status.value
            raise NotFound(f"job {job_id} cannot be resumed (it is {state})")
        audio = job.audio_format()
        files = JobFiles(self.settings.data_dir, job.id)
        whole = files.spool_size() // audio.packet_bytes * audio.packet_bytes
        self.admission.acquire("resume", owner)
        validator = PacketValidator(audio, audio.frames_in(whole))
        self._resuming.add(job_id)
        try:
            spool = await self._open_spool(files, whole, owner)
        finally:
            self._resuming.discard(job_id)
        run = StreamRun(job, files, audio, validator, spool, admitted=True)
        job.frames = validator.frames
        job.error = None
        self._admit(run)
        return run

    def _finished_run(self, job: Job) -> StreamRun:
        """A detached view of a done job: it answers a repeated `end` with the final."""
        audio = job.audio_format()
        validator = PacketValidator(audio, job.frames)
        run = StreamRun(job, JobFiles(self.settings.data_dir, job.id), audio, validator, ended=True)
        run.outbox = asyncio.Queue()
        return run

    def end_again(self, run: StreamRun) -> None:
        """`end` from a client that resumed an ended upload: the final when there is one."""
        if run.job.status is not JobStatus.DONE:
            return  # the worker is still at it; its final reaches the re-attached client
        transcript = self.transcripts.get(run.job_id)
        if transcript is None:
            self.fail(run, _EngineFailure("the transcript of this job is missing"))
            return
        final = Final(
            job_id=run.job_id, text=transcript.text, segments=transcript.segments,
            language=transcript.language, duration=transcript.duration,
        )  # fmt: skip
        run.emit(final, CloseCode.NORMAL)

    def _admit(self, run: StreamRun) -> None:
        self.runs[run.job_id] = run
        run.outbox = asyncio.Queue()
        self._set_status(run.job, JobStatus.QUEUED)
        self.dispatcher.submit(run)
        self.on_farm_changed()

    def receive_packet(self, run: StreamRun, packet: bytes) -> None:
        """Validate and gather one packet; flush and ack durable frames now and then."""
        if run.spool is None:
            raise BadPacket("the upload of this job has already ended")
        run.validator.accept(packet)
        s = self.settings
        if run.validator.frames > s.max_stream_seconds * run.audio.sample_rate:
            raise TooLarge(f"stream longer than {s.max_stream_seconds:.0f} s")
        if run.received_bytes() + len(packet) > s.max_stream_bytes:
            raise TooLarge(f"stream larger than {s.max_stream_bytes} bytes")
        now = time.monotonic()
        spool = run.spool
        spool.append(packet, now)
        run.job.frames = run.validator.frames
        run.packets_since_ack += 1
        if run.packets_since_ack >= s.ack_every_packets and run.syncing is None:
            run.packets_since_ack = 0
            self.flush(run)
            run.syncing = asyncio.create_task(self._ack(run))
        elif spool.flush_due(now):
            self.flush(run)  # each stream on its own clock: flushes spread over time

    def flush(self, run: StreamRun) -> None:
        """Spool the run's pending packets in one write and forward them in one message.

        A spool that failed raises here every time, pending packets or not: a failed
        flush drops its packets, and a second `end` (the packet sink's, then the
        endpoint's) would otherwise find nothing pending and end the upload without them."""
        spool = run.spool
        if spool is None or not (spool.pending or spool.error):
            return
        packets = spool.pending_packets
        try:
            data = spool.flush()
        except DiskAgentGone as exc:  # what it held is in the file: the client resumes
            log.warning("job %s: %s; the upload is interrupted", run.job_id, exc.strerror)
            raise Interrupted("the broker's storage restarted; resume the upload") from None
        except OSError as exc:
            log.error("cannot write the spool of job %s: %s", run.job_id, exc)
            raise SpoolUnavailable.from_os_error(exc) from None
        metrics.PACKETS_RECEIVED.inc(packets)
        metrics.BYTES_RECEIVED.inc(len(data))
        metrics.AUDIO_SECONDS_RECEIVED.inc(run.audio.seconds(run.audio.frames_in(len(data))))
        self.dispatcher.forward(run, data)

    async def _flush_loop(self) -> None:
        """Flush the streams that went quiet with packets pending (the others flush as
        their packets come), so none waits much longer than the interval."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S / 2)
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.spool is not None and run.spool.flush_due(now):
                    try:
                        self.flush(run)
                    except SpoolUnavailable as exc:
                        self.fail(run, exc)
                    except Interrupted as exc:  # as the stream endpoint does with it
                        run.emit(Error.from_exception(exc), exc.close_code)
                        self._spawn(self.interrupt(run, exc.detail))

    async def _ack(self, run: StreamRun) -> None:
        spool = run.spool
        try:
            if spool is not None:
                durable = await self.syncer.durable(spool)
                run.emit(Ack(frames=run.audio.frames_in(durable)))
                self._publish_job(run.job)  # upload progress for every watcher
        except (OSError, ValueError) as exc:  # closed underneath us: the run is over
            log.debug("ack skipped: %s", exc)
        finally:
            run.syncing = None

    def mark_ended(self, run: StreamRun) -> None:
        """The client sent `end`: the worker is told at once and the spool is closed in
        the background (`end_stream` waits for that). Called from the WebSocket's packet
        sink as `end` arrives, or by the endpoint when it reads it; the second call does
        nothing. A spool error raises here, every time (it is kept by the spool)."""
        if run.ended:
            return
        self.flush(run)
        run.ended = True
        run.ended_at = time.monotonic()
        run.job.upload_ended_at = time.time()
        run.job.duration = run.audio.seconds(run.job.frames)
        self.dispatcher.end(run)
        run.spool_closed = asyncio.ensure_future(self._end_upload(run))

    async def end_stream(self, run: StreamRun) -> None:
        """The client sent `end`: the worker finishes while the spool becomes durable.

        The job counts as ended (status, ack of every frame) only once the spool is on
        disk. The final need not wait for that: it goes out with the worker's result,
        and from then on the client holds the transcript and has nothing to resend, so
        every frame is acked with it (the spool itself is kept until the broker's copy
        of the transcript is durable: `TranscriptStore`).
        """
        self.mark_ended(run)
        assert run.spool_closed is not None
        await run.spool_closed

    async def _end_upload(self, run: StreamRun) -> None:
        """Once the spool is durable: ack every frame, and the job is ended (unless the
        final came first: `on_final` acked every frame then)."""
        await self._close_spool(run)
        if run.finished.is_set():
            return
        run.emit(Ack(frames=run.job.frames))
        status = JobStatus.TRANSCRIBING if run.worker is not None else JobStatus.QUEUED
        self._set_status(run.job, status)

    async def _close_spool(self, run: StreamRun) -> None:
        """Flush, make durable and close the run's spool (no more packets come).

        An ack's round still in flight need not be waited for: this round starts after
        it and covers everything it covers.
        """
        spool = run.spool
        if spool is None:
            return
        with contextlib.suppress(SpoolUnavailable, Interrupted):  # kept as the spool's error,
            self.flush(run)  # which `durable` raises
        run.take_spool()
        try:
            await self.syncer.durable(spool)
        except OSError as exc:
            raise SpoolUnavailable.from_os_error(exc) from None
        finally:
            spool.close(sync=False)

    async def interrupt(self, run: StreamRun, reason: str) -> None:
        """The client went away before `end`: keep the spool, wait for a `resume`."""
        if run.ended or run.finished.is_set():
            run.detach()
            return
        self.dispatcher.cancel(run)
        try:  # now: a resume (after its disk barrier) must find every packet in the file
            self.flush(run)
        except (SpoolUnavailable, Interrupted) as exc:  # a resume starts from what it holds
            log.warning("job %s: %s", run.job_id, exc.detail)
        closing = self._close_spool(run)  # only the fsync is left, and it may lag
        run.job.error = reason
        # Resumable from this instant: a client that reconnects at once must find it so.
        self._set_status(run.job, JobStatus.INTERRUPTED)
        self._finish(run)
        log.info("job %s interrupted: %s", run.job_id, reason)
        try:
            await closing
        except SpoolUnavailable as exc:  # a resume starts from what the file holds
            log.warning("job %s: %s", run.job_id, exc.detail)

    def fail(self, run: StreamRun, exc: WhisperfarmError) -> None:
        """End a run with an error sent to the client (if attached) and a failed job."""
        if run.finished.is_set():
            return
        self.dispatcher.cancel(run)
        spool = run.take_spool()
        if spool is not None:
            spool.close()
        metrics.STREAM_ERRORS.labels(code=exc.code.value).inc()
        run.emit(Error.from_exception(exc), exc.close_code)
        run.job.error = exc.detail
        self._set_status(run.job, JobStatus.FAILED)
        metrics.JOBS_FINISHED.labels(status="failed").inc()
        self._finish(run)

    def _finish(self, run: StreamRun) -> None:
        self.runs.pop(run.job_id, None)
        if run.admitted:
            run.admitted = False
            self.admission.release(run.job.owner)
            self.on_farm_changed()
        run.finished.set()

    # ---- worker side (DispatchListener) ------------------------------------------------

    def run_for(self, job_id: str) -> StreamRun | None:
        return self.runs.get(job_id)

    def on_assigned(self, run: StreamRun, worker: WorkerInfo) -> None:
        job = run.job
        job.worker = worker.name
        job.started_at = job.started_at or time.time()
        run.segments.clear()
        self._set_status(job, JobStatus.TRANSCRIBING if run.ended else JobStatus.STREAMING)

    def on_requeued(self, run: StreamRun) -> None:
        run.job.worker = None
        self._set_status(run.job, JobStatus.QUEUED)

    def on_segment(self, run: StreamRun, body: dict[str, Any]) -> None:
        segment = SegmentData.model_validate(body)
        run.segments.append(segment)
        if segment.id >= run.segments_sent:  # a re-dispatched attempt repeats what was sent
            run.segments_sent = segment.id + 1
            run.emit(
                Segment(id=segment.id, start=segment.start, end=segment.end, text=segment.text)
            )

    def on_final(self, run: StreamRun, body: dict[str, Any]) -> None:
        """The worker's result: the transcript goes to the disk agent, and the final to
        the client at once, without waiting for the file (`TranscriptStore` says why
        that loses nothing); the job's spool goes once the file is durable."""
        job = run.job
        try:
            segments = [SegmentData.model_validate(s) for s in body.get("segments", [])]
            transcript = Transcript(
                job_id=job.id,
                name=job.name,
                text=str(body.get("text") or join_segments(segments)).strip(),
                segments=segments,
                language=body.get("language") or job.language,
                duration=job.duration,
            )
            stored = render(transcript, "json")
        except ValueError as exc:  # a worker's malformed result
            log.error("job %s: the worker's result is not a transcript: %s", run.job_id, exc)
            self.fail(run, _EngineFailure(f"the worker's result is not a transcript: {exc}"))
            return
        # The JSON is the one stored form (txt, srt and vtt are rendered from it when
        # asked for); written only once the job is complete, so its presence after a
        # restart means the job is done, whatever the job table says.
        self.transcripts.store(
            transcript, stored.encode(), functools.partial(self._transcript_stored, job)
        )
        job.language = transcript.language
        job.decode_started = body.get("decode_started")
        job.decode_ended = body.get("decode_ended")
        job.error = None
        self._set_status(job, JobStatus.DONE)
        self._observe_done(run)
        if run.spool_closed is None or not run.spool_closed.done():
            # The upload's own ack is still waiting for its sync round; with the final
            # the client holds the result: nothing is to be resent.
            run.emit(Ack(frames=job.frames))
        final = Final(
            job_id=job.id,
            text=transcript.text,
            segments=transcript.segments,
            language=transcript.language,
            duration=transcript.duration,
        )
        run.emit(final, CloseCode.NORMAL)
        self._finish(run)

    def _transcript_stored(self, job: Job, error: OSError | None) -> None:
        """The job's transcript is durable: its audio may go. Or it could not be
        written: the client has its final, but the farm has no copy, so the job is
        failed with the reason (and counted)."""
        if error is None:
            self._expire_spool(job)
            return
        log.error("could not store the transcript of job %s: %s", job.id, error)
        metrics.TRANSCRIPTS_NOT_STORED.inc()
        job.error = f"could not store the transcript: {error}"
        self._set_status(job, JobStatus.FAILED)

    def on_failed(self, run: StreamRun, error: str) -> None:
        self.fail(run, _EngineFailure(error))

    def on_farm_changed(self) -> None:
        if self.events.watched:
            self.events.publish("farm", self.farm_info())

    def _observe_done(self, run: StreamRun) -> None:
        metrics.JOBS_FINISHED.labels(status="done").inc()
        metrics.AUDIO_SECONDS_TRANSCRIBED.inc(run.job.duration)
        now = time.monotonic()
        metrics.JOB_LATENCY.observe(now - (run.ended_at or run.queued_at))
        if run.job.duration > 0:
            metrics.JOB_RTF.observe((now - run.accepted_at) / run.job.duration)

    # ---- recovery and timeouts ---------------------------------------------------------

    def _expire_spool(self, job: Job) -> None:
        """Drop a finished job's audio after `--spool-retention` (its transcript is durable)."""
        retention = self.settings.spool_retention
        if retention < 0:
            return
        path = JobFiles(self.settings.data_dir, job.id).spool_path
        delay = max(0.0, (job.finished_at or 0) + retention - time.time())
        asyncio.get_running_loop().call_later(delay, self.disk.discard, path)

    def recover(self) -> None:
        """After a restart: finish what was fully received, mark the rest resumable."""
        finished = self.store.list(limit=1_000_000, statuses=FINISHED_STATUSES)
        active = self.store.list(limit=1_000_000, statuses=ACTIVE_STATUSES)  # before any
        for job in finished:  # is re-queued below: each job is taken up once
            files = JobFiles(self.settings.data_dir, job.id)
            if job.status is JobStatus.DONE and not files.transcript_path.exists():
                self._transcript_lost(job, files)
            elif files.spool_path.exists():
                self._expire_spool(job)
        for job in active:
            if self._finish_stored(job):
                continue
            if job.upload_ended:
                self._requeue_headless(job)
            else:
                job.error = "the broker restarted during the upload"
                self._set_status(job, JobStatus.INTERRUPTED)
        log.info("recovered: %d jobs re-queued", len(self.runs))

    def _transcript_lost(self, job: Job, files: JobFiles) -> None:
        """A done job whose transcript never reached the disk (the machine went down
        right after its final): transcribed again from its spool, which is deleted only
        once the transcript is durable; failed if the spool did not make it either."""
        if job.upload_ended and files.spool_path.exists():
            log.warning("job %s: its transcript did not reach the disk; transcribing again",
                        job.id)  # fmt: skip
            self._requeue_headless(job)
            return
        job.error = "the transcript was lost before it reached the disk"
        self._set_status(job, JobStatus.FAILED)

    def _finish_stored(self, job: Job) -> bool:
        """A job whose transcript is on disk is done, even if the table did not say so
        yet (the table commits without an fsync; the transcript has one)."""
        try:
            transcript = JobFiles(self.settings.data_dir, job.id).read_transcript()
        except (OSError, ValueError) as exc:
            log.warning("job %s: unreadable transcript, transcribing again: %s", job.id, exc)
            return False
        if transcript is None:
            return False
        job.language = transcript.language
        job.duration = transcript.duration
        job.error = None
        self._set_status(job, JobStatus.DONE)
        return True

    def _requeue_headless(self, job: Job) -> None:
        audio = job.audio_format()
        files = JobFiles(self.settings.data_dir, job.id)
        validator = PacketValidator(audio, job.frames)
        run = StreamRun(job, files, audio, validator, ended=True)
        run.ended_at = time.monotonic()
        job.worker = None
        self.runs[job.id] = run
        self._set_status(job, JobStatus.QUEUED)
        self.dispatcher.submit(run)

    async def _sweep_loop(self) -> None:
        period = min(1.0, self.settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep()
            except Exception:
                log.error("sweep failed", exc_info=True)

    def sweep(self) -> None:
        """Fail interrupted jobs past the idle timeout and streams with no worker for too long."""
        now = time.time()
        for job in self.store.list(limit=10_000, statuses=[JobStatus.INTERRUPTED]):
            if now - job.updated_at >= self.settings.idle_timeout:
                reason = job.error or "the client disconnected before end"
                job.error = f"{reason}; not resumed within {self.settings.idle_timeout:g} s"
                self._set_status(job, JobStatus.FAILED)
                metrics.JOBS_FINISHED.labels(status="failed").inc()
        waited = time.monotonic() - self.settings.no_worker_timeout
        for run in [r for r in self.dispatcher.queue if r.queued_at < waited]:
            self.fail(
                run,
                NoWorker(f"no worker took the stream within {self.settings.no_worker_timeout:g} s"),
            )

    # ---- views -----------------------------------------------------------------------

    def job_for(self, job_id: str, owner: str | None) -> Job | None:
        """The job if it exists and `owner` may see it (a job of another token: None)."""
        job = self.store.get(job_id)
        if job is None or (self.auth.enabled and job.owner != owner):
            return None
        return job

    def farm_info(self) -> dict[str, Any]:
        return {
            "workers": self.dispatcher.snapshot(),
            "streams": {"active": self.admission.active, "limit": self.admission.limit},
            "queue": len(self.dispatcher.queue),
        }

    def _set_status(self, job: Job, status: JobStatus) -> None:
        job.status = status
        job.touch()
        if status in (JobStatus.DONE, JobStatus.FAILED):
            job.finished_at = job.updated_at
            if not self.transcripts.pending(job.id):  # else once it is durable
                self._expire_spool(job)
        self.store.save(job)
        self._publish_job(job)

    def _publish_job(self, job: Job) -> None:
        if self.events.watched:
            self.events.publish("job", job.model_dump(mode="json", exclude={"owner"}), job.owner)


class SpoolUnavailable(WhisperfarmError):
    """The data dir refuses writes (disk full, read-only): nothing is admitted."""

    @classmethod
    def from_os_error(cls, exc: OSError) -> SpoolUnavailable:
        return cls(f"the farm cannot store audio right now ({exc.strerror})")


class _EngineFailure(WhisperfarmError):
    """A worker reported that it could not transcribe the stream."""
