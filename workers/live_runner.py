"""Drives one live stream: a decode step whenever `LiveState` wants one, results at once.

The same task shape as `StreamRunner` (one task per stream, so at most one step in flight
per stream): a step starts when enough new audio arrived, a pause ended an utterance, or
the client asked to commit; audio arriving during a step waits for the next one. A worker
that cannot keep up thus steps each stream less often — every step covers all the audio
that came meanwhile, so the lag grows smoothly, no backlog of steps builds up, and no audio
is skipped. Steps run in their own thread pool (`live_executor`), so a live stream never
queues behind file windows waiting for a decoding thread.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Executor

from whisperfarm.wire_bodies import PartialBody
from workers import metrics
from workers.audio import SAMPLE_RATE
from workers.engines import DecodeResult, Engine
from workers.live import LiveState, LiveStep, Partial
from workers.runner import Send, StreamRunner, decode_window
from workers.settings import LIVE_PASS_STEPS

STEP_TIME_WEIGHT = 0.2
"""Weight of the newest step in the worker's running mean of live step time."""


class LiveLoad:
    """The worker's live streams: how many, how long a step takes (an exponential mean,
    for its heartbeats), and so how often each stream may step.

    Every step decodes a stream's whole uncommitted audio again, so stepping more often
    than the forward passes can serve only re-decodes the same audio more times: each
    stream's steps then come later, not sooner (`bench/RESULTS.md`). The step grows with
    the streams per pass instead."""

    def __init__(self, step_ms: int, passes: int, pass_steps: float = LIVE_PASS_STEPS) -> None:
        self.base_step_ms = step_ms
        self.passes = max(1, passes)
        self.pass_steps = pass_steps
        """Live steps a second one forward pass serves (`--live-pass-steps`); a stream alone
        steps at `--live-step-ms` whatever it is."""
        self.streams = 0
        self.mean: float | None = None

    def step_ms(self) -> int:
        """The new audio that makes a live stream step now: the shortest multiple of
        `--live-step-ms` at which the worker's live streams together step no more than
        `pass_steps` times a second per forward pass."""
        interval_ms = 1000 * self.streams / (self.pass_steps * self.passes)
        return self.base_step_ms * max(1, math.ceil(interval_ms / self.base_step_ms - 1e-9))

    def observe(self, seconds: float) -> None:
        self.mean = (
            seconds if self.mean is None else self.mean + STEP_TIME_WEIGHT * (seconds - self.mean)
        )


class LiveRunner(StreamRunner):
    """One live stream (job id + attempt) from ASSIGN to FINAL, FAILED or cancel."""

    def __init__(
        self,
        job_id: str,
        state: LiveState,
        engine: Engine,
        executor: Executor,
        send: Send,
        load: LiveLoad,
    ) -> None:
        super().__init__(job_id, state, engine, executor, send)
        self.live = state
        self._load = load
        self._sent_partial = Partial()

    # ---- called by the worker as messages arrive ---------------------------------------

    def commit(self) -> None:
        self.live.ask_commit()
        self._wake.set()

    def retune(self, language: str | None, prompt: str | None) -> None:
        self.live.retune(language, prompt)

    def clear(self) -> None:
        self.live.clear()
        self._wake.set()  # the task sends the cleared partial

    async def heard(self) -> None:
        """An utterance that began is told at once, even while a step decodes, with the
        partial the client has (the step's own may not be sent yet). The one place it is
        told: voice activity grows only with a packet."""
        if (onset := self.live.speech_onset()) is not None:
            await self._tell(self._sent_partial, onset=onset)

    # ---- the task -------------------------------------------------------------------------

    def _due(self) -> bool:
        return self.live.wants_step(self._load.step_ms())

    async def _between(self) -> None:
        await self._send_partial()

    async def _decode(self, final: bool) -> None:
        """One step (`final`: the last, which commits everything left)."""
        step = self.live.next_step(final)
        if step.closes:  # before any utterance start heard from now on, which is the next
            await self._tell(self._sent_partial, closing_at=step.heard_to / SAMPLE_RATE)
        result = await self._decoded(step)
        await self._send_committed(self.live.apply(step, result))
        if step.closes and step.generation == self.live.generation:
            await self._send_partial(closed_at=step.heard_to / SAMPLE_RATE)
        else:
            await self._send_partial()

    async def _decoded(self, step: LiveStep) -> DecodeResult | None:
        if step.request is None:
            return None
        loop = asyncio.get_running_loop()
        result, started, ended = await loop.run_in_executor(
            self._executor, decode_window, self._engine, step
        )
        self.state.record_inference(started, ended)
        self._load.observe(ended - started)
        metrics.LIVE_STEP_SECONDS.observe(ended - started)
        return result

    async def _send_partial(self, closed_at: float | None = None) -> None:
        """The partial, when it changed since the last one sent; after a step that closed
        an utterance, always, marked `closed` and ending where that step's audio ended."""
        partial = self.live.partial
        if partial == self._sent_partial and closed_at is None:
            return
        await self._tell(partial, closed_at)

    async def _tell(
        self,
        partial: Partial,
        closed_at: float | None = None,
        onset: float | None = None,
        closing_at: float | None = None,
    ) -> None:
        self._sent_partial = partial
        body = PartialBody(
            attempt=self.attempt,
            text=partial.text,
            start=partial.start if closed_at is None else closed_at,
            end=partial.end if closed_at is None else closed_at,
            step_seconds=self._load.mean,
            closed=closed_at is not None,
            speech_from=onset,
            closing_at=closing_at,
        )
        await self._send(body.message(self.job_id))
