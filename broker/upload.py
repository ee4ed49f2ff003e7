"""`Upload`: what an edge holds for one stream — audio in, `end`, replies out.

An edge (the WebSocket `/v1/stream`, and every edge after it) gets an `Upload` from
`Farm.open` or `Farm.resume` and does four things with it: `feed` it packets (and, live,
`commit` or `clear` between them), `end` it once, read its `replies` (accepted, acks,
segments, partials, then one final or error), and tell it when the client went away or
broke the protocol (`abort`, `disconnected`). Everything behind it — limits, spool,
worker, job status — is the farm's.

Backpressure has one mechanism: after a packet, while the disk agent is behind, the
upload holds its `Reader` (the edge's way to stop reading the client) until the disk
has drained; the client's sends then wait in its TCP buffer, not in the broker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Protocol

from broker import metrics
from broker.disk import Disk
from broker.lifecycle import JobLifecycle
from broker.run import Outgoing, StreamRun
from broker.transcript_store import TranscriptStore
from whisperfarm.errors import CloseCode, EngineError, ProtocolError, TooLarge, WhisperfarmError
from whisperfarm.jobs import JobStatus
from whisperfarm.protocol import Final
from whisperfarm.wire_bodies import ClearBody, CommitBody, RetuneBody, Tell

log = logging.getLogger(__name__)

MAX_PACKET_BYTES = 1024 * 1024
"""The largest valid packet is 1000 frames × 8 channels × 4 bytes = 32 000 bytes."""


class Reader(Protocol):
    """How an edge stops and restarts reading its client."""

    def hold(self) -> None: ...
    def release(self) -> None: ...


class ReadGate:
    """A `Reader` for an edge that pulls its audio: it takes its next packet only while
    the gate is open (`await gate.open.wait()`)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()


class Upload:
    def __init__(
        self,
        run: StreamRun,
        lifecycle: JobLifecycle,
        transcripts: TranscriptStore,
        disk: Disk,
    ) -> None:
        self._run = run
        self._lifecycle = lifecycle
        self._transcripts = transcripts
        self._disk = disk
        self._after_end = run.ended
        """Re-attached to an upload that had ended: `end` asks for the final again."""
        self._end_called = False
        self._answering: asyncio.Future[None] | None = None
        """A repeated `end`'s final being read back (`_final_again`)."""
        self._reader: Reader | None = None
        self._held = False
        assert run.outbox is not None
        self.replies: asyncio.Queue[Outgoing] = run.outbox
        """What the client is to get, in order; the last one carries its close code."""

    @property
    def job_id(self) -> str:
        return self._run.job_id

    @property
    def frames(self) -> int:
        """Frames received so far (a resumed upload goes on from here)."""
        return self._run.validator.frames

    @property
    def attached(self) -> bool:
        """Whether the replies are still this edge's (not a newer connection's)."""
        return self._run.outbox is self.replies

    def read_with(self, reader: Reader) -> None:
        """The edge's reader, held while the disk is behind (see the module's doc)."""
        self._reader = reader

    def feed(self, packet: bytes) -> None:
        """One packet of audio; raises what makes the upload unable to go on."""
        if len(packet) > MAX_PACKET_BYTES:
            raise TooLarge(f"packet of {len(packet)} bytes is far above 1000 frames")
        self._lifecycle.intake.take(self._run, packet)
        if self._reader is not None and not self._held and self._disk.congested():
            self._held = True
            metrics.UPLOAD_PAUSES.inc()
            log.debug("disk backlog %d bytes: an upload waits for the disk", self._disk.backlog)
            self._reader.hold()
            self._disk.call_when_drained(self.release_reader)

    def release_reader(self) -> None:
        """Read the client again (the disk drained, or the edge is done with it)."""
        if self._held and self._reader is not None:
            self._held = False
            self._reader.release()

    def commit(self) -> None:
        """Live: the client's `commit` (its utterance is over: commit its text now)."""
        self._tell(CommitBody, "commit")

    def clear(self) -> None:
        """Live: the client's `clear` (drop the audio not committed yet)."""
        self._tell(ClearBody, "clear")

    def retune(self, language: str | None, prompt: str | None) -> None:
        """Live: decode in `language` with `prompt` from the next utterance on."""
        self._tell(functools.partial(RetuneBody, language=language, prompt=prompt), "retune")

    def _tell(self, make: Tell, name: str) -> None:
        if not self._run.job.live:
            raise ProtocolError(f'{name} is for live streams (start with "live": true)')
        if self._end_called:
            raise ProtocolError(f"{name} after end")
        self._lifecycle.intake.tell(self._run, make)

    def end(self) -> None:
        """The client's `end`; an edge calls this once. Raises the spool's error."""
        assert not self._end_called, "end is acted on once"
        self._end_called = True
        if self._after_end:
            self._answering = asyncio.ensure_future(self._final_again())
        else:
            self._lifecycle.end_upload(self._run)

    async def settled(self) -> None:
        """Wait until the ended upload's audio is durable (raises the spool's error)."""
        if self._run.spool_closed is not None:
            await self._run.spool_closed
        if self._answering is not None:
            await self._answering

    async def _final_again(self) -> None:
        run = self._run
        if run.job.status is not JobStatus.DONE:
            return  # the worker is still at it; its final reaches this client
        try:
            transcript = await self._transcripts.load(run.job_id)
        except ValueError:
            transcript = None
        if transcript is None:
            self._lifecycle.fail(run, EngineError("the transcript of this job is missing"))
            return
        final = Final(
            job_id=run.job_id, text=transcript.text, segments=transcript.segments,
            language=transcript.language, duration=transcript.duration,
        )  # fmt: skip
        run.emit(final, CloseCode.NORMAL)

    def abort(self, exc: WhisperfarmError) -> asyncio.Future[None] | None:
        """The upload cannot go on: the client gets `exc`, and the job is interrupted
        (resumable) or failed (`JobLifecycle.abort`)."""
        self.release_reader()
        return self._lifecycle.abort(self._run, exc)

    def disconnected(self) -> asyncio.Future[None] | None:
        """The client went away: before `end` the job waits for a `resume`; after it,
        the job goes on and the client may resume to get its final."""
        self.release_reader()
        return self._lifecycle.interrupt(self._run, "the client disconnected before end")

    def detach(self) -> None:
        """The client stopped listening; the job goes on without it."""
        if self.attached:
            self._run.detach()
