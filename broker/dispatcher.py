"""ZeroMQ ROUTER dispatcher: worker registry, credit-based assignment, heartbeats.

Each worker announces `slots` in READY and never holds more streams than that (its
credit). Streams wait in a FIFO queue until a worker has a free slot; a new attempt
replays the job's spool from the start, then forwards packets as they arrive. When a
worker dies (missed heartbeats, DISCONNECT, or a fresh READY) its streams go back to
the head of the queue with the next attempt number, and results of an older attempt
are dropped — so no stream is lost and none is answered twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import zmq
import zmq.asyncio

from broker import metrics
from broker.disk import Disk, DiskAgentGone
from broker.run import StreamRun
from whisperfarm import wire
from whisperfarm.curve import CurveServer
from whisperfarm.errors import ProtocolError
from whisperfarm.farm_view import WorkerView
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import (
    AssignBody,
    CancelBody,
    DisconnectBody,
    EndBody,
    FailedBody,
    FinalBody,
    HeartbeatBody,
    PartialBody,
    ReadyBody,
    SegmentBody,
    Tell,
)

log = logging.getLogger(__name__)
REPLAY_CHUNK_FRAMES = 16_000
REPLAY_AGENT_RETRIES = 3
"""Disk agents that may die under one replay before it gives up (each is restarted)."""
RECEIVE_BATCH = 256
"""Worker messages handled per event-loop turn before the loop gets to everyone else."""


class DispatchListener(Protocol):
    """What the dispatcher tells the job side (`broker.results.WorkerResults`)."""

    def run_for(self, job_id: str) -> StreamRun | None: ...
    def on_assigned(self, run: StreamRun, worker: WorkerInfo, attempt: int) -> None: ...
    def on_requeued(self, run: StreamRun) -> None: ...
    def on_segment(self, run: StreamRun, body: SegmentBody) -> None: ...
    def on_partial(self, run: StreamRun, body: PartialBody) -> None: ...
    def on_final(self, run: StreamRun, body: FinalBody) -> None: ...
    def on_failed(self, run: StreamRun, error: str) -> None: ...
    def on_farm_changed(self) -> None: ...


@dataclass(eq=False, slots=True)
class Assignment:
    """Which worker holds a run's current attempt, and whether the spool's replay to it
    has caught up, so that new audio goes straight to it. The dispatcher's alone."""

    worker: bytes
    attempt: int
    caught_up: bool = False


@dataclass(eq=False)
class WorkerInfo:
    identity: bytes
    name: str
    engine: str
    model: str
    device: str
    slots: int
    metrics_port: int | None
    expiry: float
    streams: set[str] = field(default_factory=set)
    connected_at: float = field(default_factory=time.time)
    draining: bool = False
    """The worker finishes what it holds and takes nothing new (it is shutting down)."""
    live: set[str] = field(default_factory=set)
    """The live streams among `streams` (a new live stream goes where they are fewest)."""
    live_step_seconds: float = 0.0
    """Its recent live step time, by its last heartbeat."""
    speakers_unavailable: str | None = None
    """Why it cannot label speakers (None: it can), by its READY."""
    refusing: bool = False
    """It refused an ASSIGN (its count of free slots was not ours): nothing new for it
    until its next heartbeat, so a stream cannot bounce between it and the queue."""

    @property
    def free(self) -> int:
        return 0 if self.draining or self.refusing else self.slots - len(self.streams)

    def describe(self) -> WorkerView:
        return WorkerView(
            id=self.identity.hex(),
            name=self.name,
            engine=self.engine,
            model=self.model,
            device=self.device,
            slots=self.slots,
            busy=len(self.streams),
            metrics_port=self.metrics_port,
            connected_at=self.connected_at,
            draining=self.draining,
        )


class Dispatcher:
    def __init__(
        self,
        endpoint: str,
        disk: Disk,
        heartbeat_interval: float = wire.HEARTBEAT_INTERVAL_S,
        liveness: int = wire.HEARTBEAT_LIVENESS,
        curve: CurveServer | None = None,
    ) -> None:
        self._listener: DispatchListener | None = None
        self._disk = disk
        self._held: dict[str, Assignment] = {}
        """The runs a worker holds, by job id."""
        self._interval = heartbeat_interval
        self._liveness = liveness
        # The context is asyncio's (the CURVE ZAP handler runs on the loop), the ROUTER a
        # plain socket driven by `add_reader`: pyzmq's asyncio future per send would be
        # a third of the cost of forwarding audio.
        self._ctx = zmq.asyncio.Context()
        self._socket: zmq.Socket[bytes] = zmq.Socket(self._ctx, zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 0)  # never drop audio silently
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._zap = curve.apply(self._ctx, self._socket) if curve is not None else None
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.workers: dict[bytes, WorkerInfo] = {}
        self.queue: collections.deque[StreamRun] = collections.deque()
        self._replays: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False

    def listen(self, listener: DispatchListener) -> None:
        """Who hears of workers' results (set before `serve`)."""
        self._listener = listener

    @property
    def listener(self) -> DispatchListener:
        assert self._listener is not None, "Dispatcher.listen first"
        return self._listener

    @property
    def bound(self) -> bool:
        return not self._socket.closed

    # ---- the job side calls these ----------------------------------------------------

    def holds(self, run: StreamRun) -> bool:
        """Whether a worker holds the run now."""
        return run.job_id in self._held

    def submit(self, run: StreamRun, front: bool = False) -> None:
        """Queue a run for the next free worker slot."""
        self._held.pop(run.job_id, None)
        run.queued_at = time.monotonic()
        (self.queue.appendleft if front else self.queue.append)(run)
        self._assign_pending()

    def forward(self, run: StreamRun, packet: bytes) -> None:
        """New audio to the worker, once its replay has caught up (until then the
        replay reads it from the spool)."""
        held = self._held.get(run.job_id)
        if held is not None and held.caught_up:
            self._send(held.worker, wire.audio(run.job_id, held.attempt, packet))

    def tell(self, run: StreamRun, make: Tell) -> None:
        """A live client's `commit`, `clear` or new options to the worker, after the audio
        before it (forwarded first). Before the spool's replay caught up (the stream still queued,
        or its spool being read), it waits for the replay, at its place in the audio."""
        held = self._held.get(run.job_id)
        if held is not None and held.caught_up:
            self._send(held.worker, make(attempt=held.attempt).message(run.job_id))
        else:
            run.untold.append((run.written_bytes(), make))

    def end_audio(self, run: StreamRun) -> None:
        """No more audio: the worker finishes (or the replay tells it when it catches up)."""
        held = self._held.get(run.job_id)
        if held is not None and held.caught_up:
            self._send(held.worker, EndBody(attempt=held.attempt).message(run.job_id))

    def cancel(self, run: StreamRun) -> None:
        """Forget a run: out of the queue, or tell its worker to drop it."""
        with contextlib.suppress(ValueError):
            self.queue.remove(run)
        held = self._held.pop(run.job_id, None)
        worker = self.workers.get(held.worker) if held is not None else None
        if held is not None and worker is not None:
            self._send(worker.identity, CancelBody(attempt=held.attempt).message(run.job_id))
            worker.streams.discard(run.job_id)
            worker.live.discard(run.job_id)
        self._update_gauges()

    def snapshot(self) -> list[WorkerView]:
        return [w.describe() for w in self.workers.values()]

    # ---- loops -----------------------------------------------------------------------

    async def serve(self) -> None:
        """Receive from workers and keep heartbeats going until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._receive_loop())
            group.create_task(self._heartbeat_loop())

    async def _receive_loop(self) -> None:
        """Handle worker messages whenever the socket says it has some, until cancelled.

        ZeroMQ's FD is edge-triggered and a send can consume the edge, so every send
        also schedules a drain (`_schedule_drain`): no message waits for the next one.
        """
        self._loop = asyncio.get_running_loop()
        fd = self._socket.fileno()
        self._loop.add_reader(fd, self._drain)
        self._schedule_drain()
        try:
            await asyncio.Event().wait()
        finally:
            self._loop.remove_reader(fd)
            self._loop = None

    def _schedule_drain(self) -> None:
        if self._loop is not None and not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:  # closed under us at shutdown
                log.debug("receive stopped: %s", exc)
                return
            self._receive(frames)
        self._schedule_drain()  # more may be waiting: go on next turn

    def _receive(self, frames: list[bytes]) -> None:
        try:
            identity, rest = wire.split_envelope(frames)
            message = wire.decode(rest)
        except ProtocolError as exc:
            metrics.BAD_WORKER_MESSAGES.inc()
            log.info("dropping a malformed worker message: %s", exc.detail)
            return
        try:
            self._handle(identity, message)
        except ProtocolError as exc:
            metrics.BAD_WORKER_MESSAGES.inc()
            log.info("dropping a worker's %s: %s", message.command, exc.detail)
        except Exception:
            log.error("error handling %s from a worker", message.command, exc_info=True)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if worker.expiry < now:
                    log.warning("worker %s missed %d heartbeats: dead", worker.name, self._liveness)
                    self._drop_worker(worker, "heartbeat")
                else:
                    self._send(worker.identity, HeartbeatBody().message())

    def close(self) -> None:
        for worker in self.workers.values():
            self._send(worker.identity, DisconnectBody().message())
        for task in self._replays:
            task.cancel()
        self._socket.close(linger=0)
        if self._zap is not None:
            self._zap.stop()
        self._ctx.term()

    # ---- worker messages -------------------------------------------------------------

    def _handle(self, identity: bytes, message: Message) -> None:
        if message.command is Command.READY:
            self._register(identity, ReadyBody.read(message))
            return
        worker = self.workers.get(identity)
        if worker is None:
            # A worker we do not know (we restarted, or declared it dead): make it re-register.
            self._send(identity, DisconnectBody().message())
            return
        worker.expiry = self._expiry()
        if message.command is Command.HEARTBEAT:
            beat = HeartbeatBody.read(message)
            if beat.draining:
                self._mark_draining(worker)
            worker.live_step_seconds = beat.live_step_seconds or 0.0
            if worker.refusing:
                worker.refusing = False
                self._assign_pending()
        handler = self._result_handlers.get(message.command)
        if handler is not None:
            handler(self, worker, message)
        elif message.command is Command.DISCONNECT:
            log.info("worker %s is leaving", worker.name)
            self._drop_worker(worker, "disconnect")

    def _mark_draining(self, worker: WorkerInfo) -> None:
        if not worker.draining:
            worker.draining = True
            log.info("worker %s is draining: no new streams", worker.name)
            self._update_gauges()
            self.listener.on_farm_changed()

    def _register(self, identity: bytes, body: ReadyBody) -> None:
        old = self.workers.get(identity)
        if old is not None:
            self._drop_worker(old, "re-registered")
        worker = WorkerInfo(
            identity=identity,
            name=body.name or identity.hex()[:8],
            engine=body.engine,
            model=body.model,
            device=body.device,
            slots=max(0, body.slots),
            metrics_port=body.metrics_port or None,
            expiry=self._expiry(),
            speakers_unavailable=body.speakers_unavailable,
        )
        self.workers[identity] = worker
        log.info(
            "worker %s ready: %s %s on %s, %d slots",
            worker.name,
            worker.engine,
            worker.model,
            worker.device,
            worker.slots,
        )
        self._update_gauges()
        self.listener.on_farm_changed()
        self._assign_pending()

    def _current_run(self, worker: WorkerInfo, message: Message) -> StreamRun | None:
        """The run a result belongs to, or None when it is from a superseded attempt."""
        run = self.listener.run_for(message.job_id)
        held = self._held.get(message.job_id)
        if (
            run is None
            or held is None
            or held.worker != worker.identity
            or held.attempt != message.attempt
        ):
            metrics.STALE_RESULTS.inc()
            log.info("dropping a stale %s for job %s", message.command, message.job_id)
            return None
        return run

    def _on_segment(self, worker: WorkerInfo, message: Message) -> None:
        run = self._current_run(worker, message)
        if run is not None:
            self.listener.on_segment(run, SegmentBody.read(message))

    def _on_partial(self, worker: WorkerInfo, message: Message) -> None:
        run = self._current_run(worker, message)
        if run is not None:
            self.listener.on_partial(run, PartialBody.read(message))

    def _on_final(self, worker: WorkerInfo, message: Message) -> None:
        run = self._current_run(worker, message)
        if run is None:
            return
        self._release(worker, run)
        try:
            final = FinalBody.read(message)
        except ProtocolError as exc:  # the stream is over either way: fail it, say why
            reason = f"the worker's result is not a transcript: {exc.detail}"
            log.error("job %s: %s", run.job_id, reason)
            self.listener.on_failed(run, reason)
        else:
            self.listener.on_final(run, final)
        self._assign_pending()

    def _on_failed(self, worker: WorkerInfo, message: Message) -> None:
        run = self._current_run(worker, message)
        if run is None:
            return
        self._release(worker, run)
        try:
            failed = FailedBody.read(message)
        except ProtocolError as exc:  # a failure all the same
            failed = FailedBody(attempt=message.attempt, error=f"worker failed ({exc.detail})")
        error = failed.error or "worker failed"
        if failed.refused:
            self._requeue_refused(worker, run, error)
        else:
            self.listener.on_failed(run, error)
        self._assign_pending()

    def _requeue_refused(self, worker: WorkerInfo, run: StreamRun, error: str) -> None:
        """The worker did not take the stream (it had no free slot by its own count):
        that says nothing about the audio, so the stream goes back to the head of the
        queue, for another worker or for this one after its next heartbeat."""
        log.warning("worker %s refused job %s (%s): re-queued", worker.name, run.job_id, error)
        worker.refusing = True
        self._redispatch(run)

    def _redispatch(self, run: StreamRun) -> None:
        """Back to the head of the queue, marked queued before `submit` (which may assign
        it again at once: marked after, its new assignment was overwritten)."""
        metrics.REDISPATCHES.inc()
        self.listener.on_requeued(run)
        self.submit(run, front=True)

    _result_handlers: ClassVar[dict[Command, Callable[[Dispatcher, WorkerInfo, Message], None]]] = {
        Command.SEGMENT: _on_segment,
        Command.PARTIAL: _on_partial,
        Command.FINAL: _on_final,
        Command.FAILED: _on_failed,
    }

    # ---- assignment ------------------------------------------------------------------

    def _assign_pending(self) -> None:
        """Queued runs in order, each to the least busy worker serving its model; a run
        whose model has no free worker waits without holding up the others."""
        waiting: list[StreamRun] = []
        while self.queue and any(w.free > 0 for w in self.workers.values()):
            run = self.queue.popleft()
            worker = self._pick_worker(run.job.model, run.job.live, run.job.diarize)
            if worker is None:
                waiting.append(run)
            else:
                self._assign(run, worker)
        self.queue.extendleft(reversed(waiting))
        self._update_gauges()

    def _pick_worker(
        self, model: str | None, live: bool = False, diarize: bool = False
    ) -> WorkerInfo | None:
        """The least busy worker serving `model` (and labelling speakers, for a stream
        that asks for labels); for a live stream, the one with the least live load (live
        streams, then step time: live work goes first there)."""
        candidates = [
            w
            for w in self.workers.values()
            if w.free > 0
            and model in (None, w.model)
            and not (diarize and w.speakers_unavailable is not None)
        ]
        if live:
            return min(
                candidates,
                key=lambda w: (len(w.live), w.live_step_seconds, len(w.streams), w.connected_at),
                default=None,
            )
        return min(candidates, key=lambda w: (len(w.streams), w.connected_at), default=None)

    def why_no_speakers(self, model: str | None) -> str | None:
        """Why no connected worker serving `model` labels speakers (a worker's reason);
        None when one does, or when none serves it yet (a stream waits for workers)."""
        serving = [w for w in self.workers.values() if model in (None, w.model)]
        if not serving or any(w.speakers_unavailable is None for w in serving):
            return None
        return serving[0].speakers_unavailable

    def models(self) -> collections.Counter[str]:
        """The models the connected workers serve, with how many workers serve each."""
        return collections.Counter(w.model for w in self.workers.values())

    def _assign(self, run: StreamRun, worker: WorkerInfo) -> None:
        held = Assignment(worker.identity, run.job.attempt + 1)
        self._held[run.job_id] = held
        worker.streams.add(run.job_id)
        if run.job.live:
            worker.live.add(run.job_id)
        audio = run.audio
        body = AssignBody(
            attempt=held.attempt,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            format=audio.format,
            language=run.job.language,
            task=run.job.task,
            **(run.job.decode_options() | run.resume_point()),
        )
        self._send(worker.identity, body.message(run.job_id))
        self.listener.on_assigned(run, worker, held.attempt)
        task = asyncio.create_task(self._replay(run, held))
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    async def _replay(self, run: StreamRun, held: Assignment) -> None:
        """Send what the spool holds, then forward new audio as it comes."""
        sent = 0
        chunk = REPLAY_CHUNK_FRAMES * run.audio.bytes_per_frame
        agents_lost = 0
        while run.untold or sent < run.written_bytes():
            upto = run.written_bytes()
            if run.untold and run.untold[0][0] <= sent:
                _, make = run.untold.pop(0)  # a client's request, where it came in the audio
                self._send(held.worker, make(attempt=held.attempt).message(run.job_id))
                continue
            if run.untold:
                upto = min(upto, run.untold[0][0])
            try:
                data = await self._disk.read(run.files.spool_path, sent, min(chunk, upto - sent))
            except DiskAgentGone:  # the file is still there: the next agent reads it
                agents_lost += 1
                if agents_lost > REPLAY_AGENT_RETRIES:
                    raise
                continue
            if self._held.get(run.job_id) is not held or not data:
                return  # superseded while reading
            self._send(held.worker, wire.audio(run.job_id, held.attempt, data))
            sent += len(data)
        # No await between the size check above and catching up: no packet can slip by
        # (what is still pending in the spool writer is forwarded by its next flush).
        held.caught_up = True
        if run.ended:
            self.end_audio(run)

    def _release(self, worker: WorkerInfo, run: StreamRun) -> None:
        worker.streams.discard(run.job_id)
        worker.live.discard(run.job_id)
        self._held.pop(run.job_id, None)

    def _drop_worker(self, worker: WorkerInfo, reason: str) -> None:
        self.workers.pop(worker.identity, None)
        metrics.WORKERS_LOST.labels(reason=reason).inc()
        for job_id in sorted(worker.streams):
            run = self.listener.run_for(job_id)
            held = self._held.get(job_id)
            if run is not None and held is not None and held.worker == worker.identity:
                log.warning("re-dispatching job %s from lost worker %s", job_id, worker.name)
                self._redispatch(run)
        worker.streams.clear()
        self._update_gauges()
        self.listener.on_farm_changed()
        self._assign_pending()

    # ---- plumbing --------------------------------------------------------------------

    def _expiry(self) -> float:
        return time.monotonic() + self._interval * self._liveness

    def _send(self, identity: bytes, message: Message) -> None:
        if self._socket.closed:
            return
        try:
            self._socket.send_multipart([identity, b"", *wire.encode(message)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.info("could not send %s to a worker: %s", message.command, exc)
        self._schedule_drain()

    def _update_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self.queue))
        metrics.WORKERS_READY.set(len(self.workers))
        metrics.WORKER_SLOTS.set(sum(w.slots for w in self.workers.values()))
        metrics.WORKER_SLOTS_BUSY.set(sum(len(w.streams) for w in self.workers.values()))
