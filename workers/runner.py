"""Drives one stream: waits for audio, decodes windows off the event loop, sends results.

One asyncio task per stream, so "at most one decode in flight per stream" holds by
construction: audio keeps arriving (the worker feeds the state directly) while the task
awaits its decode, and the task looks at the buffer again when the decode is back.
Inference runs in the worker's thread pool — never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Protocol

from whisperfarm.errors import EngineError, WhisperfarmError
from whisperfarm.protocol import SegmentData
from whisperfarm.wire import Message
from whisperfarm.wire_bodies import FailedBody, FinalBody, SegmentBody
from workers import metrics
from workers.engines import DecodeRequest, DecodeResult, Engine
from workers.speakers.embedder import SpeakerEmbedder
from workers.speakers.labels import label_segments
from workers.stream import StreamState, Window

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
Outcome = str  # done, failed, cancelled, replaced, dropped


def timed_transcribe(
    engine: Engine, batch: list[DecodeRequest]
) -> tuple[list[DecodeResult], float, float]:
    """Run one engine call (in a pool thread) and record its metrics.

    Timing inside the thread measures inference, not time spent queued for a thread.
    """
    started = time.time()
    results = engine.transcribe(batch)
    ended = time.time()
    if len(results) != len(batch):
        raise EngineError(f"engine returned {len(results)} results for {len(batch)} requests")
    audio_seconds = sum(r.seconds for r in batch)
    metrics.INFERENCE_SECONDS.observe(ended - started)
    metrics.AUDIO_DECODED_SECONDS.inc(audio_seconds)
    if audio_seconds > 0:
        metrics.REAL_TIME_FACTOR.observe((ended - started) / audio_seconds)
    return results, started, ended


class Decodable(Protocol):
    """A window or a live step: what becomes one engine request."""

    def to_request(self) -> DecodeRequest: ...


def decode_window(engine: Engine, window: Decodable) -> tuple[DecodeResult, float, float]:
    """`timed_transcribe` of one window, its float32 audio made here, in the pool thread:
    a window still queued for a thread holds only its int16 samples (`Window`)."""
    results, started, ended = timed_transcribe(engine, [window.to_request()])
    return results[0], started, ended


def decode_speech(
    engine: Engine, window: Window
) -> tuple[DecodeResult, float | None, float | None]:
    """`decode_window` of the window's speech only (`Window.speech`, `workers.speech_clip`),
    its times mapped back to the window's. Its voice activity is scored here, in the pool
    thread: the event loop only buffers packets. A window without speech is not decoded
    (no segments, no inference times)."""
    if window.speech is None:
        return decode_window(engine, window)
    clip = window.speech.clip(window.pcm, window.start)
    if clip is None:
        return DecodeResult([], window.language), None, None
    result, started, ended = decode_window(engine, replace(window, pcm=clip.pcm))
    return clip.restore(result), started, ended


def _as_stream_error(exc: Exception) -> WhisperfarmError:
    """Errors from the audio path become the stream's FAILED reason, never a crash."""
    if isinstance(exc, WhisperfarmError):
        return exc
    log.warning("audio processing failed: %r", exc)
    return EngineError(f"could not process the audio: {exc}")


class StreamRunner:
    """One assigned stream (job id + attempt) from ASSIGN to FINAL, FAILED or cancel."""

    def __init__(
        self,
        job_id: str,
        state: StreamState,
        engine: Engine,
        executor: Executor,
        send: Send,
        speakers: SpeakerEmbedder | None = None,
    ) -> None:
        """`speakers`: the worker's speaker model, for streams that ask for labels."""
        self.job_id = job_id
        self.attempt = state.spec.attempt
        self.state = state
        self._engine = engine
        self._executor = executor
        self._send = send
        self._speakers = speakers
        self._wake = asyncio.Event()
        self._failure: WhisperfarmError | None = None
        self._stop_outcome: Outcome = "cancelled"
        self.outcome: Outcome | None = None
        self.task: asyncio.Task[None] | None = None
        self._on_exit: Callable[[StreamRunner], None] | None = None

    def start(self, on_exit: Callable[[StreamRunner], None]) -> None:
        """Start the stream's task; `on_exit` runs once it is over, however it ended, and
        also right before its FINAL or FAILED is sent (so it must be idempotent)."""
        self._on_exit = on_exit
        task = asyncio.create_task(self._run(), name=f"stream-{self.job_id}")
        task.add_done_callback(lambda _: self._finished(on_exit))
        self.task = task

    def _leave(self) -> None:
        """Give the worker its slot back before the result goes out: the broker frees
        the slot when it reads FINAL or FAILED and may assign the next stream at once,
        and that ASSIGN could be read before this task's done callback ran (a worker
        under load said "full" to a stream the broker had every right to send)."""
        if self._on_exit is not None:
            self._on_exit(self)

    def _finished(self, on_exit: Callable[[StreamRunner], None]) -> None:
        # A done callback rather than `finally`, so a task cancelled before it ever ran
        # is counted too.
        if self.outcome is None:
            self.outcome = self._stop_outcome
        metrics.STREAMS_FINISHED.labels(outcome=self.outcome).inc()
        on_exit(self)

    # ---- called by the worker as messages arrive ---------------------------------------

    def feed(self, pcm: bytes) -> None:
        """Buffer a packet; a bad one fails the stream (reported by the task)."""
        if self._failure is not None:
            return
        try:
            self.state.feed(pcm)
        except Exception as exc:
            self._failure = _as_stream_error(exc)
        self._wake.set()

    async def heard(self) -> None:
        """After a packet (`feed`): what the stream tells at once, without waiting for its
        task, which may be decoding (a live stream's utterance start)."""

    def end(self) -> None:
        try:
            self.state.end()
        except Exception as exc:
            self._failure = _as_stream_error(exc)
        self._wake.set()

    def stop(self, outcome: Outcome) -> None:
        """Drop the stream: its in-flight decode finishes in its thread, unread."""
        self._stop_outcome = outcome
        if self.task is not None:
            self.task.cancel()

    # ---- the task -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._decode_while_streaming()
            await self._decode(final=True)
            await self._label_speakers()
            self._leave()
            await self._send_final()
            self.outcome = "done"
        except WhisperfarmError as exc:
            log.info("stream %s attempt %d failed: %s", self.job_id, self.attempt, exc.detail)
            self._leave()
            await self._send_failed(exc.detail)
        except Exception as exc:
            log.error("stream %s attempt %d crashed", self.job_id, self.attempt, exc_info=True)
            self._leave()
            await self._send_failed(f"internal error in the worker: {exc}")

    async def _decode_while_streaming(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._failure is not None:
                raise self._failure
            if self.state.ended:
                return
            if self._due():
                await self._decode(final=False)
                self._wake.set()  # audio that came during the decode may want another
            else:
                await self._between()

    def _due(self) -> bool:
        """Time for a decode while the upload goes on: a whole window is buffered."""
        return self.state.wants_decode()

    async def _between(self) -> None:
        """Woken with nothing to decode (a live runner sends its partial)."""

    async def _decode(self, final: bool) -> None:
        window = self.state.next_window(final)
        if window is None:
            return
        loop = asyncio.get_running_loop()
        result, started, ended = await loop.run_in_executor(
            self._executor, decode_speech, self._engine, window
        )
        if started is not None and ended is not None:
            self.state.record_inference(started, ended)
        await self._send_segments(window, result)

    async def _label_speakers(self) -> None:
        """Speaker labels on the final segments, when the stream asked for them."""
        audio = self.state.speech_audio
        if audio is None or not self.state.segments:
            return
        if self._speakers is None:
            raise EngineError("this worker has no speaker model")
        loop = asyncio.get_running_loop()
        started = time.time()
        labels = await loop.run_in_executor(
            self._executor, label_segments, self._speakers, audio.clips, self.state.spec.speakers
        )
        metrics.DIARIZE_SECONDS.observe(time.time() - started)
        self.state.label_speakers(labels)

    async def _send_segments(self, window: Window, result: DecodeResult) -> None:
        await self._send_committed(self.state.commit(window, result))

    async def _send_committed(self, segments: list[SegmentData]) -> None:
        for segment in segments:
            body = SegmentBody(attempt=self.attempt, **segment.model_dump())
            await self._send(body.message(self.job_id))

    async def _send_final(self) -> None:
        state = self.state
        now = time.time()
        body = FinalBody(
            attempt=self.attempt,
            text=state.text,
            segments=state.segments,
            language=state.language,
            duration=round(state.duration, 3),
            decode_started=state.decode_started if state.decode_started is not None else now,
            decode_ended=state.decode_ended if state.decode_ended is not None else now,
        )
        await self._send(body.message(self.job_id))
        log.info(
            "stream %s attempt %d done: %.1f s of audio, %d segments",
            self.job_id,
            self.attempt,
            state.duration,
            len(state.segments),
        )

    async def _send_failed(self, error: str) -> None:
        self.outcome = "failed"  # before the send: a cancel during it must not relabel it
        await self._send(FailedBody(attempt=self.attempt, error=error).message(self.job_id))
