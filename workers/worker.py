"""The worker's protocol side: connect, announce, heartbeat, route commands to streams.

One `Worker` owns the engine, the decode thread pool and the streams. It holds one
`Link` at a time; when the broker goes silent for the liveness window or says
DISCONNECT, it drops every stream (the broker re-dispatches them from its spool) and
connects again with a fresh identity, so workers survive broker restarts on their own.

Leaving is in two steps. `drain()` (the first SIGTERM) tells the broker at once, and in
every heartbeat after, that this worker takes no new streams (`draining: true`,
`slots: 0`), finishes the streams it holds for up to `--drain-timeout`, then says
DISCONNECT; what is still unfinished then is re-dispatched by the broker from its spool.
`stop()` (the second SIGTERM) says DISCONNECT now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import zmq

from whisperfarm import wire
from whisperfarm.curve import CurveClient
from whisperfarm.errors import ProtocolError, WhisperfarmError
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import (
    AssignBody,
    DisconnectBody,
    FailedBody,
    HeartbeatBody,
    ReadyBody,
    RetuneBody,
)
from workers import metrics
from workers.engines import Engine, wants_vad
from workers.link import EXPIRY_S, Link
from workers.live import LiveOptions, LiveState
from workers.live_runner import LiveLoad, LiveRunner
from workers.runner import Outcome, StreamRunner
from workers.settings import WorkerSettings
from workers.speakers.embedder import SpeakerEmbedder
from workers.speakers.labels import missing_packages
from workers.stream import StreamState

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 0.2
"""Pause before reconnecting, so a broker answering DISCONNECT in a loop is not hammered."""
YIELD_EVERY = 8
"""Messages handled back to back before the receive loop lets the streams' tasks run
(a message already waiting is taken without a trip through the event loop)."""
DISCONNECT_LINGER_MS = 500
"""The farewell DISCONNECT gets this long to leave; every other close drops at once."""


def decode_threads(engine: Engine, slots: int) -> int:
    """Windows decoded at once: one per slot, or fewer if the engine gains nothing from
    more (`Engine.concurrency`); the rest wait in the pool's queue, in arrival order."""
    concurrency = getattr(engine, "concurrency", None)
    return slots if concurrency is None else max(1, min(slots, int(concurrency)))


class Worker:
    """Serves the broker until `stop()`; see the module docstring."""

    def __init__(self, settings: WorkerSettings, engine: Engine, metrics_port: int) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics_port = metrics_port
        self.name = settings.name or f"{socket.gethostname()}:{os.getpid()}"
        self.streams: dict[str, StreamRunner] = {}
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._curve = (
            CurveClient.load(settings.curve_server_key, settings.curve_secret_key)
            if settings.curve_server_key is not None
            else None
        )
        self._executor = ThreadPoolExecutor(
            decode_threads(engine, settings.slots), thread_name_prefix="decode"
        )
        self._live_executor = ThreadPoolExecutor(
            decode_threads(engine, settings.slots), thread_name_prefix="live"
        )
        """Live steps' own threads: they never queue behind file windows for a thread."""
        self._speakers = SpeakerEmbedder()
        """Loaded by the first stream that asks for speaker labels, then kept."""
        self._speakers_unavailable = missing_packages()
        """Why this worker cannot label speakers (None: it can). READY tells the broker,
        which then sends it no labelled stream; ASSIGN checks it again for one that does."""
        self._live_options = LiveOptions(
            beam_size=settings.live_beam_size,
            pause_ms=settings.vad_pause_ms,
            lead_in_ms=settings.live_lead_in_ms,
        )
        self._live_load = LiveLoad(
            settings.live_step_ms,
            getattr(engine, "parallel_batches", 1),
            settings.live_pass_steps,
        )
        self._link: Link | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._handlers: dict[Command, Callable[[Message], Awaitable[None]]] = {
            Command.ASSIGN: self._on_assign,
            Command.AUDIO: self._on_audio,
            Command.END: self._on_end,
            Command.COMMIT: self._on_commit,
            Command.CLEAR: self._on_clear,
            Command.RETUNE: self._on_retune,
            Command.CANCEL: self._on_cancel,
        }
        metrics.SLOTS.set(settings.slots)
        metrics.MAX_BATCH.set(getattr(engine, "max_batch", 0))
        metrics.PARALLEL_BATCHES.set(getattr(engine, "parallel_batches", 0))

    def stop(self) -> None:
        """Ask `run()` to say goodbye to the broker and return."""
        self._stopping.set()

    def drain(self, timeout: float) -> None:
        """Take no new streams, finish the current ones (at most `timeout` s), then stop."""
        if self.draining:
            return
        self.draining = True
        metrics.DRAINING.set(1)
        log.info(
            "draining: finishing %d streams (at most %g s), taking no new ones",
            len(self.streams),
            timeout,
        )
        self._drain_task = asyncio.create_task(self._drain(timeout), name="drain")

    async def _drain(self, timeout: float) -> None:
        # The broker should know now, not at the next heartbeat.
        await self._send(self._heartbeat_body().message())
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "drain timeout: leaving %d unfinished streams to the broker", len(self.streams)
            )
        self.stop()

    async def run(self) -> None:
        """Connect, serve, reconnect on silence, until `stop()`."""
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                link = Link(self._ctx, self.settings.broker, self.name, self._curve)
                self._link = link
                reason = await self._session(link, stop_wait)
                if reason is None:
                    break
                if link.heard_any:
                    log.warning(
                        "lost the broker (%s); dropping %d streams, reconnecting",
                        reason,
                        len(self.streams),
                    )
                else:  # still waiting for a broker to come up: say so once per expiry, quietly
                    log.info("no broker at %s yet; trying again", self.settings.broker)
                await self._drop_streams("dropped")
                link.close(linger_ms=0)
                await asyncio.wait([stop_wait], timeout=RECONNECT_DELAY_S)
        finally:
            stop_wait.cancel()
            await self._shutdown()

    async def _session(self, link: Link, stop_wait: asyncio.Task[bool]) -> str | None:
        """Serve one link; returns why it ended, or None when the worker is stopping."""
        log.info("connecting to %s as %s", self.settings.broker, link.identity.decode())
        await link.send(self._ready_body().message())
        heartbeat = asyncio.create_task(self._heartbeat(link))
        serve = asyncio.create_task(self._serve(link))
        try:
            await asyncio.wait([serve, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeat.cancel()
            if not serve.done():
                serve.cancel()
        if self._stopping.is_set():
            return None
        try:
            return serve.result()
        except Exception as exc:  # a bug in the receive loop: start over, do not die
            log.error("the receive loop failed", exc_info=True)
            return f"receive loop failed: {exc!r}"

    def _ready_body(self) -> ReadyBody:
        return ReadyBody(
            engine=self.engine.name,
            model=self.engine.model,
            device=self.engine.device,
            slots=0 if self.draining else self.settings.slots,
            metrics_port=self.metrics_port,
            name=self.name,
            pid=os.getpid(),
            speakers_unavailable=self._speakers_unavailable,
        )

    def _heartbeat_body(self) -> HeartbeatBody:
        """`busy`, the live load when there is one; while draining also `draining: true`
        and `slots: 0` (no new streams)."""
        fields: dict[str, int | float | bool] = {"busy": len(self.streams)}
        live = self._live_count()
        if live:
            fields["live"] = live
        if self._live_load.mean is not None:
            fields["live_step_seconds"] = round(self._live_load.mean, 3)
        if self.draining:
            fields |= {"draining": True, "slots": 0}
        return HeartbeatBody.model_validate(fields)  # only these are sent (`Body.message`)

    async def _heartbeat(self, link: Link) -> None:
        while True:
            try:
                await link.send(self._heartbeat_body().message())
            except zmq.ZMQError as exc:
                log.warning("could not send a heartbeat: %s", exc)
            await asyncio.sleep(wire.HEARTBEAT_INTERVAL_S)

    async def _serve(self, link: Link) -> str:
        """Receive until the broker is silent too long or says DISCONNECT."""
        handled = 0
        while True:
            left = link.expires_in()
            if left <= 0:
                return f"nothing heard for {EXPIRY_S:g} s"
            frames = await link.recv(left)
            if frames is None:
                continue
            try:
                message = wire.decode(frames)
            except ProtocolError as exc:
                log.warning("dropped a malformed message from the broker: %s", exc.detail)
                continue
            if message.command is Command.DISCONNECT:
                return "the broker sent DISCONNECT"
            try:
                await self._dispatch(message)
            except Exception:  # a bug must cost one message, not the worker
                log.error(
                    "failed to handle %s for %s", message.command, message.job_id, exc_info=True
                )
            handled += 1
            if handled % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a flood must not starve heartbeats and streams

    async def _dispatch(self, message: Message) -> None:
        handler = self._handlers.get(message.command)
        if handler is not None:
            await handler(message)
        elif message.command is not Command.HEARTBEAT:
            log.warning("dropped %s: not a broker → worker command", message.command)

    # ---- commands --------------------------------------------------------------------------

    async def _on_assign(self, message: Message) -> None:
        if not message.job_id:
            log.warning("dropped an ASSIGN without a job id")
            return
        try:
            spec = AssignBody.read(message)
        except WhisperfarmError as exc:
            await self._fail(message, exc.detail)
            return
        current = self.streams.get(message.job_id)
        if current is not None and current.attempt >= spec.attempt:
            log.info(
                "ignored ASSIGN %s attempt %d: attempt %d is current",
                message.job_id,
                spec.attempt,
                current.attempt,
            )
            return
        if current is not None:
            self._remove(current, "replaced")
        if len(self.streams) >= self.settings.slots:
            reason = f"worker {self.name} is full: all {self.settings.slots} slots are busy"
            await self._fail(message, reason, refused=True)
            return
        if spec.diarize and self._speakers_unavailable is not None:  # before the decode
            await self._fail(message, self._speakers_unavailable)
            return
        self._start(message.job_id, spec)

    def _start(self, job_id: str, spec: AssignBody) -> None:
        runner: StreamRunner
        if spec.live:
            state = LiveState(spec, self._live_options)
            runner = LiveRunner(
                job_id, state, self.engine, self._live_executor, self._send, self._live_load
            )
        else:
            file_state = StreamState(
                spec, self.settings.chunk_seconds, engine_vad=wants_vad(self.engine)
            )
            runner = StreamRunner(
                job_id, file_state, self.engine, self._executor, self._send, self._speakers
            )
        self.streams[job_id] = runner
        self._idle.clear()
        self._count_streams()
        runner.start(self._forget)
        log.info(
            "stream %s attempt %d assigned (%d Hz, %d ch, %s)",
            job_id,
            spec.attempt,
            spec.sample_rate,
            spec.channels,
            spec.format,
        )

    async def _on_audio(self, message: Message) -> None:
        runner = self._current(message)
        if runner is not None:
            runner.feed(message.audio)
            await runner.heard()

    async def _on_end(self, message: Message) -> None:
        runner = self._current(message)
        if runner is None:
            await self._fail(
                message,
                f"worker {self.name} holds no stream {message.job_id} attempt {message.attempt}",
            )
            return
        runner.end()

    async def _on_commit(self, message: Message) -> None:
        runner = self._current(message)
        if isinstance(runner, LiveRunner):
            runner.commit()

    async def _on_clear(self, message: Message) -> None:
        runner = self._current(message)
        if isinstance(runner, LiveRunner):
            runner.clear()

    async def _on_retune(self, message: Message) -> None:
        runner = self._current(message)
        if isinstance(runner, LiveRunner):
            try:
                body = RetuneBody.read(message)
            except ProtocolError as exc:
                log.warning("dropped a malformed message from the broker: %s", exc.detail)
                return
            runner.retune(body.language, body.prompt)

    async def _on_cancel(self, message: Message) -> None:
        runner = self._current(message)
        if runner is not None:
            log.info("stream %s attempt %d cancelled", runner.job_id, runner.attempt)
            self._remove(runner, "cancelled")

    # ---- stream bookkeeping ----------------------------------------------------------------

    def _current(self, message: Message) -> StreamRunner | None:
        """The stream a message is for, if its attempt is the one this worker holds."""
        runner = self.streams.get(message.job_id)
        if runner is None or runner.attempt != message.attempt:
            log.debug(
                "dropped %s for %s attempt %d: not a current stream",
                message.command,
                message.job_id,
                message.attempt,
            )
            return None
        return runner

    def _remove(self, runner: StreamRunner, outcome: Outcome) -> None:
        """Take a stream out now and cancel it; nothing more is sent for it."""
        self._forget(runner)
        runner.stop(outcome)

    def _forget(self, runner: StreamRunner) -> None:
        if self.streams.get(runner.job_id) is runner:
            del self.streams[runner.job_id]
        if not self.streams:
            self._idle.set()
        self._count_streams()

    def _count_streams(self) -> None:
        metrics.STREAMS_ACTIVE.set(len(self.streams))
        self._live_load.streams = self._live_count()
        metrics.LIVE_STREAMS.set(self._live_load.streams)

    def _live_count(self) -> int:
        return sum(isinstance(r, LiveRunner) for r in self.streams.values())

    async def _send(self, message: Message) -> None:
        """Send on the current link; a failure is logged, never raised into a stream."""
        link = self._link
        if link is None:
            return
        try:
            await link.send(message)
        except zmq.ZMQError as exc:
            log.warning("could not send %s for %s: %s", message.command, message.job_id, exc)

    async def _fail(self, message: Message, error: str, refused: bool = False) -> None:
        """FAILED for a stream; `refused`: it was never taken (the broker re-queues it)."""
        log.info("stream %s attempt %d failed: %s", message.job_id, message.attempt, error)
        body = (
            FailedBody(attempt=message.attempt, error=error, refused=True)
            if refused
            else FailedBody(attempt=message.attempt, error=error)  # the key is sent only if set
        )
        await self._send(body.message(message.job_id))

    # ---- endings -----------------------------------------------------------------------------

    async def _drop_streams(self, outcome: Outcome) -> None:
        """Cancel every stream and wait until their tasks have unwound."""
        runners = list(self.streams.values())
        for runner in runners:
            self._remove(runner, outcome)
        tasks = [r.task for r in runners if r.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _shutdown(self) -> None:
        """Stop in order: tell the broker, drop streams, close sockets, release threads."""
        if self._drain_task is not None and self._drain_task is not asyncio.current_task():
            self._drain_task.cancel()
        link = self._link
        if link is not None and not link.closed:
            try:  # bounded: a DEALER with no broker connected would block on send
                await asyncio.wait_for(
                    link.send(DisconnectBody().message()), DISCONNECT_LINGER_MS / 1000
                )
            except (zmq.ZMQError, TimeoutError) as exc:
                log.warning("could not say DISCONNECT to the broker: %r", exc)
            link.close(linger_ms=DISCONNECT_LINGER_MS)
        await self._drop_streams("dropped")
        self._ctx.term()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._live_executor.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped")
