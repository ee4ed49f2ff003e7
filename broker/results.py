"""What workers report about the runs they hold, turned into jobs' progress.

The dispatcher decides which worker holds which attempt and drops results of attempts
it has superseded; what reaches `WorkerResults` is current. Segments go to the run's
client as they come; the final becomes the job's transcript (handed to the disk agent)
and goes to the client at once, without waiting for the file (`TranscriptStore` says
why that loses nothing); the job's spool goes once the file is durable.
"""

from __future__ import annotations

import functools
import logging
import time

from broker import metrics
from broker.dispatcher import WorkerInfo
from broker.lifecycle import JobLifecycle
from broker.run import StreamRun
from broker.transcript_store import TranscriptStore
from whisperfarm.errors import CloseCode, EngineError
from whisperfarm.jobs import Job, JobStatus, preview_of
from whisperfarm.protocol import CLIENT_SEGMENT_FIELDS, Ack, Final, Partial, Segment, SegmentData
from whisperfarm.transcripts import Transcript, join_segments, render
from whisperfarm.wire_bodies import FinalBody, PartialBody, SegmentBody

log = logging.getLogger(__name__)


class WorkerResults:
    """The dispatcher's listener (`broker.dispatcher.DispatchListener`)."""

    def __init__(self, lifecycle: JobLifecycle, transcripts: TranscriptStore) -> None:
        self._lifecycle = lifecycle
        self._transcripts = transcripts

    def run_for(self, job_id: str) -> StreamRun | None:
        return self._lifecycle.runs.get(job_id)

    def on_assigned(self, run: StreamRun, worker: WorkerInfo, attempt: int) -> None:
        job = run.job
        job.attempt = attempt
        job.worker = worker.name
        job.started_at = job.started_at or time.time()
        if not job.live:  # a live run's new attempt goes on after its committed segments
            run.segments.clear()
        self._lifecycle.set_status(
            job, JobStatus.TRANSCRIBING if run.ended else JobStatus.STREAMING
        )

    def on_requeued(self, run: StreamRun) -> None:
        run.job.worker = None
        self._lifecycle.set_status(run.job, JobStatus.QUEUED)

    def on_segment(self, run: StreamRun, body: SegmentBody) -> None:
        segment = body.segment()
        if run.job.live and run.segments and segment.id <= run.segments[-1].id:
            return  # committed already: a live segment is never sent twice, nor changed
        run.segments.append(segment)
        if segment.id >= run.segments_sent:  # a re-dispatched attempt repeats what was sent
            run.segments_sent = segment.id + 1
            run.emit(Segment.model_validate(segment.model_dump(include=CLIENT_SEGMENT_FIELDS)))
            if run.arrivals is not None:
                run.arrivals.segment_sent(segment.end)

    def on_partial(self, run: StreamRun, body: PartialBody) -> None:
        """A live run's uncommitted tail, to its client (only live runs have one)."""
        if not run.job.live:
            return
        partial = Partial(
            text=body.text,
            start=body.start,
            end=body.end,
            closed=body.closed,
            speech_from=body.speech_from,
            closing_at=body.closing_at,
        )
        run.emit(partial)
        if run.arrivals is not None and partial.text and not partial.only_marks:
            run.arrivals.partial_sent(partial.end)

    def on_final(self, run: StreamRun, body: FinalBody) -> None:
        job = run.job
        transcript = _transcript(job, body, run.segments if job.live else body.segments)
        stored = render(transcript, "json")
        # The JSON is the one stored form (txt, srt and vtt are rendered from it when
        # asked for); written only once the job is complete, so its presence after a
        # restart means the job is done, whatever the job table says.
        self._transcripts.store(
            transcript, stored.encode(), functools.partial(self._transcript_stored, job)
        )
        job.language = transcript.language
        job.preview = preview_of(transcript.text)
        job.decode_started = body.decode_started
        job.decode_ended = body.decode_ended
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
        self._lifecycle.done(run)
        run.emit(final, CloseCode.NORMAL)

    def _transcript_stored(self, job: Job, error: OSError | None) -> None:
        """The job's transcript is durable: its audio may go. Or it could not be
        written: the client has its final, but the farm has no copy, so the job is
        failed with the reason (and counted)."""
        if error is None:
            self._lifecycle.expire_spool(job)
            return
        log.error("could not store the transcript of job %s: %s", job.id, error)
        metrics.TRANSCRIPTS_NOT_STORED.inc()
        job.error = f"could not store the transcript: {error}"
        self._lifecycle.set_status(job, JobStatus.FAILED)

    def on_failed(self, run: StreamRun, error: str) -> None:
        self._lifecycle.fail(run, EngineError(error))

    def on_farm_changed(self) -> None:
        self._lifecycle.farm_changed()


def _transcript(job: Job, body: FinalBody, segments: list[SegmentData]) -> Transcript:
    """The worker's FINAL body as the job's transcript; a live job's `segments` are the
    ones committed over all its attempts, and its text is theirs."""
    text = join_segments(segments) if job.live else body.text or join_segments(segments)
    return Transcript(
        job_id=job.id,
        name=job.name,
        text=text.strip(),
        segments=segments,
        language=body.language or job.language,
        duration=job.duration,
    )
