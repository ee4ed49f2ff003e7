"""Upload intake: a stream's packets in, checked, spooled, forwarded, acked, ended.

Every packet of every edge goes through `take`; what `take` gathers leaves through `pass_on`,
the one place that writes a run's audio to its spool and hands the same bytes to its
worker. A spool that fails raises from `pass_on` every time it is called, with or without
packets pending, as one of two errors (the one flush-error policy):
- `Interrupted` when the disk agent went away: what it took is in the file, and the
  client resumes from there;
- `SpoolUnavailable` when the disk refuses the write (full, read-only): the job fails.
Intake changes no job status: its callers (`JobLifecycle`) decide what an error means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from broker import metrics
from broker.disk import Disk, DiskAgentGone
from broker.dispatcher import Dispatcher
from broker.durability import GroupSync
from broker.run import StreamRun
from broker.settings import BrokerSettings
from broker.spool import JobFiles, SpoolWriter
from whisperfarm.errors import BadPacket, Interrupted, TooLarge, WhisperfarmError
from whisperfarm.jobs import Job
from whisperfarm.protocol import Ack
from whisperfarm.wire_bodies import Tell

log = logging.getLogger(__name__)


class SpoolUnavailable(WhisperfarmError):
    """The data dir refuses writes (disk full, read-only): nothing is admitted."""

    @classmethod
    def from_os_error(cls, exc: OSError) -> SpoolUnavailable:
        return cls(f"the farm cannot store audio right now ({exc.strerror})")


class Intake:
    def __init__(
        self,
        settings: BrokerSettings,
        disk: Disk,
        dispatcher: Dispatcher,
        progressed: Callable[[Job], None],
    ) -> None:
        """`progressed` is told of a job whose acked frames moved (for its watchers)."""
        self._settings = settings
        self._disk = disk
        self._dispatcher = dispatcher
        self._progressed = progressed
        self._syncer = GroupSync(disk)

    async def open_spool(self, files: JobFiles, keep_bytes: int) -> SpoolWriter:
        """Open (create) a job's spool, keeping its first `keep_bytes` (a resume)."""
        try:
            return await SpoolWriter.open(files, self._disk, keep_bytes)
        except OSError as exc:
            log.error("cannot spool to %s: %s", files.dir, exc)
            raise SpoolUnavailable.from_os_error(exc) from None

    def take(self, run: StreamRun, packet: bytes) -> None:
        """Check and gather one packet; spool it with others now and then, and ack
        what is durable every `ack_every_packets`."""
        if run.spool is None:
            raise BadPacket("the upload of this job has already ended")
        run.validator.accept(packet)
        s = self._settings
        if run.validator.frames > s.max_stream_seconds * run.audio.sample_rate:
            raise TooLarge(f"stream longer than {s.max_stream_seconds:.0f} s")
        if run.received_bytes() + len(packet) > s.max_stream_bytes:
            raise TooLarge(f"stream larger than {s.max_stream_bytes} bytes")
        now = time.monotonic()
        spool = run.spool
        spool.append(packet, now)
        run.job.frames = run.validator.frames
        if run.arrivals is not None:
            run.arrivals.arrived(run.validator.frames / run.audio.sample_rate)
        run.packets_since_ack += 1
        if run.packets_since_ack >= s.ack_every_packets and run.syncing is None:
            run.packets_since_ack = 0
            self.pass_on(run)
            run.syncing = asyncio.create_task(self._ack(run))
        elif run.job.live or spool.flush_due(now):
            # A live packet goes to its worker now: the flush timer would add up to its
            # interval to every word's lag. Files wait, each stream on its own clock, so
            # writes spread over time.
            self.pass_on(run)

    def pass_on(self, run: StreamRun) -> None:
        """Write the run's pending packets to its spool in one append and forward the
        same bytes to its worker in one message; raises the spool's error (module doc)."""
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
        self._dispatcher.forward(run, data)

    def tell(self, run: StreamRun, make: Tell) -> None:
        """A live client's `commit`, `clear` or new options: the audio before it goes on
        first."""
        self.pass_on(run)
        self._dispatcher.tell(run, make)

    def due(self, runs: list[StreamRun], now: float) -> list[StreamRun]:
        """The runs whose oldest pending packet has waited the flush interval."""
        return [run for run in runs if run.spool is not None and run.spool.flush_due(now)]

    async def _ack(self, run: StreamRun) -> None:
        spool = run.spool
        try:
            if spool is not None:
                durable = await self._syncer.durable(spool)
                run.emit(Ack(frames=run.audio.frames_in(durable)))
                self._progressed(run.job)
        except (OSError, ValueError) as exc:  # closed underneath us: the run is over
            log.debug("ack skipped: %s", exc)
        finally:
            run.syncing = None

    def seal(self, run: StreamRun) -> None:
        """No more packets: the last ones are spooled and forwarded, the worker is told.
        Raises the spool's error (and then nothing has changed)."""
        self.pass_on(run)
        run.ended = True
        run.ended_at = time.monotonic()
        run.job.upload_ended_at = time.time()
        run.job.duration = run.audio.seconds(run.job.frames)
        self._dispatcher.end_audio(run)

    async def close_spool(self, run: StreamRun) -> None:
        """Spool what is pending, make the file durable and close it (no more packets
        come). An ack's round still in flight need not be waited for: this round starts
        after it and covers everything it covers."""
        spool = run.spool
        if spool is None:
            return
        with contextlib.suppress(SpoolUnavailable, Interrupted):  # kept as the spool's
            self.pass_on(run)  # error, which `durable` raises
        run.take_spool()
        try:
            await self._syncer.durable(spool)
        except OSError as exc:
            raise SpoolUnavailable.from_os_error(exc) from None
        finally:
            spool.close(sync=False)

    def drop_spool(self, run: StreamRun) -> None:
        """Close the run's spool as it is (the job failed: nothing more is needed of it)."""
        spool = run.take_spool()
        if spool is not None:
            spool.close()
