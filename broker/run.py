"""A job while the broker works on it: its spool, its upload's progress, its client.

A `StreamRun` exists from admission (or from re-queueing after a restart) until the job
is done, failed or interrupted. Headless runs (re-queued after a restart, or whose
client went away after `end`) have no outbox: their results only reach the job store.
Which worker holds a run is the dispatcher's to know (`Dispatcher.holds`), not the run's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from broker.live_lag import ArrivalTimes
from broker.spool import JobFiles, SpoolWriter
from whisperfarm.errors import CloseCode
from whisperfarm.jobs import Job
from whisperfarm.packets import AudioFormat, PacketValidator
from whisperfarm.protocol import SegmentData, ServerMessage
from whisperfarm.wire_bodies import ClearBody, CommitBody

Outgoing = tuple[ServerMessage, CloseCode | None]
"""A message for the client and, for the last one, the close code to follow it."""


@dataclass(eq=False)
class StreamRun:
    job: Job
    files: JobFiles
    audio: AudioFormat
    validator: PacketValidator
    spool: SpoolWriter | None = None
    closed_spool_bytes: int = 0
    """What the spool had been handed when it was detached (`take_spool`), or the
    complete spool's size for a run re-queued after a restart."""
    outbox: asyncio.Queue[Outgoing] | None = None
    ended: bool = False
    """The client sent `end`: no more audio comes."""
    admitted: bool = False
    """Holds an admission slot, released when the run finishes."""
    segments: list[SegmentData] = field(default_factory=list)
    """The current attempt's segments; a live run's committed ones, over every attempt."""
    segments_sent: int = 0
    """Segments already streamed to the client, over every attempt."""
    accepted_at: float = field(default_factory=time.monotonic)
    queued_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    packets_since_ack: int = 0
    syncing: asyncio.Task[None] | None = None
    """The ack in flight: its group-sync round."""
    spool_closed: asyncio.Future[None] | None = None
    """After `end`: the spool's last flush, round and close, then the ack of every frame
    and the ended status (shielded from the stream handler's cancellation)."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    untold: list[tuple[int, type[CommitBody | ClearBody]]] = field(default_factory=list)
    """A live client's commits and clears that came before the spool's replay caught up,
    with the spool size then: the replay sends each where it came in the audio."""
    arrivals: ArrivalTimes | None = None
    """A live run's packet arrivals, for the lag of what is sent about them."""

    def __post_init__(self) -> None:
        if self.job.live:
            self.arrivals = ArrivalTimes()

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    def received_bytes(self) -> int:
        """Audio bytes received, including those not flushed to the spool yet."""
        if self.spool is not None:
            return self.spool.size
        return self.written_bytes()

    def written_bytes(self) -> int:
        """Audio bytes handed to the spool file: what a replay (a read queued on the disk
        agent after those writes) can read."""
        if self.spool is not None:
            return self.spool.written
        return self.closed_spool_bytes

    def take_spool(self) -> SpoolWriter | None:
        """Detach the spool (to close it), keeping its size: its last writes may still
        be queued for the disk, and until they land the file on disk is shorter, so a
        replay that went by the file's size would end short of the upload's tail."""
        spool, self.spool = self.spool, None
        if spool is not None:
            self.closed_spool_bytes = spool.written
        return spool

    def resume_point(self) -> dict[str, float | int | str]:
        """ASSIGN's fields that make a live run's new attempt go on after what earlier
        ones committed (`AssignBody.resume_at`): committed text is never decoded again.
        Empty for a file run (a new attempt transcribes it all again) or one with none."""
        if not self.job.live or not self.segments:
            return {}
        return {"resume_at": self.segments[-1].end, "first_segment_id": self.segments[-1].id + 1}

    def emit(self, message: ServerMessage, close: CloseCode | None = None) -> None:
        """Queue a message for the attached client, if any (headless runs drop it)."""
        if self.outbox is not None:
            self.outbox.put_nowait((message, close))

    def detach(self) -> None:
        self.outbox = None
