"""Cross-stream batching: model calls from many decoding threads become one forward pass.

Every stream's window is decoded by the engine's own per-window loop (seek through the
audio, fall back to higher temperatures, carry the prompt on) in its own thread, exactly
as it would be decoded alone. The loop's expensive steps (encoder + beam search over one
30 s window) go through a `BatchGate`: a thread arriving there parks its input; as soon as
every thread that is decoding has parked (nobody else can join), `max_batch` inputs are
waiting, or the oldest has waited `wait_s`, one parked thread leads the whole batch
through a single call and hands each thread its own result. So stream results are what they would
be unbatched, and the batch fills itself from whichever streams are at the same step (new
streams join at the next step, no static batches).

At most `parallel` batches run at once (`--parallel-batches`): on a GPU one, on a CPU
one per share of the cores, each pass with its own threads (`batch_budget.
parallel_batches`). While batches run, the threads outside them gather the next one
and start it as soon as a share is free: every one of them has parked, or the batch is
full, or `wait_s` has passed (threads inside a running batch cannot arrive, so nobody
waits for them).

The call itself always runs on one of the gate's `parallel` forward threads, not in the
leader's: the leader changes from batch to batch, and every thread that runs a forward pass
keeps its own native per-thread state for good — an OpenMP thread team (libgomp gives each
calling thread its own), oneDNN/MKL scratch buffers — so with 10 streams there would be ten of
each. A fixed thread per share keeps one each (`bench/RESULTS.md`, design measurements).

Inputs carry a key; only inputs with equal keys (same decoding options) share a batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from whisperfarm.errors import EngineError
from workers import metrics

In = TypeVar("In")
Out = TypeVar("Out")

RunBatch = Callable[[Hashable, Sequence[In]], Sequence[Out]]
"""`run(key, inputs) -> outputs`, one output per input, in order."""


@dataclass(eq=False)
class _Parked(Generic[In, Out]):
    key: Hashable
    value: In
    since: float
    done: bool = False
    result: Out | None = None
    error: BaseException | None = None
    taken: bool = field(default=False)


class BatchGate(Generic[In, Out]):
    """Rendezvous of decoding threads; see the module docstring."""

    def __init__(
        self, run: RunBatch[In, Out], max_batch: int, wait_s: float, parallel: int = 1
    ) -> None:
        if max_batch < 1 or parallel < 1:
            raise ValueError("max_batch and parallel must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.parallel = parallel
        self._cond = threading.Condition()
        self._parked: list[_Parked[In, Out]] = []
        self._running = 0
        """Batches running now (at most `parallel`)."""
        self._in_flight = 0
        """Threads whose input is in a running batch: decoding, but unable to arrive."""
        self._free_since = 0.0
        self._forward = ThreadPoolExecutor(parallel, thread_name_prefix="forward")
        self.active = 0
        """Threads inside `decoding()`: the ones that may still arrive at the gate."""

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Mark the calling thread as decoding, so batches wait for it (briefly)."""
        with self._cond:
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify_all()  # a leader may be waiting for this thread

    def call(self, key: Hashable, value: In) -> Out:
        """Run `value` in the next batch of its key; blocks until its result is there."""
        with self._cond:
            me: _Parked[In, Out] = _Parked(key, value, time.monotonic())
            self._parked.append(me)
            self._cond.notify_all()
            while not me.done:
                if self._should_lead(me):
                    self._lead()
                else:
                    self._cond.wait(self._wait_for(me))
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _is_next_leader(self, me: _Parked[In, Out]) -> bool:
        """`me` is the oldest parked input and a pass is free for its batch."""
        return self._running < self.parallel and bool(self._parked) and self._parked[0] is me

    def _should_lead(self, me: _Parked[In, Out]) -> bool:
        """The next leader starts a batch once waiting longer gains nothing."""
        if not self._is_next_leader(me):
            return False
        full = sum(1 for p in self._parked if p.key == me.key) >= self.max_batch
        everyone = len(self._parked) >= max(1, self.active - self._in_flight)
        return full or everyone or self._time_left() <= 0

    def _wait_for(self, me: _Parked[In, Out]) -> float | None:
        """Only the next leader has a deadline; everyone else sleeps until notified (a
        batch ending, an arrival, a thread leaving), so nobody spins while a batch runs."""
        if not self._is_next_leader(me):
            return None
        return max(self._time_left(), 0.001)

    def _time_left(self) -> float:
        """Wait counts from arrival or from the end of the last batch, whichever is later:
        threads of the batch that just ended are about to come back and should join."""
        if not self._parked:
            return self.wait_s
        start = max(self._parked[0].since, self._free_since)
        return start + self.wait_s - time.monotonic()

    def _lead(self) -> None:
        """Take a batch, run it without the lock, hand out the results (lock held)."""
        key = self._parked[0].key
        batch = [p for p in self._parked if p.key == key][: self.max_batch]
        self._parked = [p for p in self._parked if p not in batch]
        self._running += 1
        self._in_flight += len(batch)
        # The input now at the head may lead the next batch beside this one; it went
        # to sleep when it was not the head, with no deadline, and nothing else may
        # wake it before this batch ends (with `wait_s` long, never).
        self._cond.notify_all()
        self._cond.release()
        try:
            outputs = self._forward.submit(self._run_batch, key, batch).result()
        finally:
            self._cond.acquire()
            self._running -= 1
            self._in_flight -= len(batch)
            self._free_since = time.monotonic()
        for parked, (result, error) in zip(batch, outputs, strict=True):
            parked.result, parked.error, parked.done = result, error, True
        self._cond.notify_all()

    def _run_batch(
        self, key: Hashable, batch: list[_Parked[In, Out]]
    ) -> list[tuple[Out | None, BaseException | None]]:
        started = time.perf_counter()
        try:
            results = self._run(key, [p.value for p in batch])
            if len(results) != len(batch):
                raise EngineError(f"a batch of {len(batch)} returned {len(results)} results")
        except BaseException as exc:  # every thread of the batch gets the error
            return [(None, exc)] * len(batch)
        metrics.DECODE_BATCH_SIZE.observe(len(batch))
        metrics.FORWARD_SECONDS.observe(time.perf_counter() - started)
        return [(r, None) for r in results]


def useful_concurrency(max_batch: int, *, next_batch: bool, parallel: int = 1) -> int:
    """Requests worth decoding at once with `parallel` batches of `max_batch` windows: the
    batches that run, plus a whole next round of them gathering behind (`next_batch`) or one
    more window (whose features are computed while the batches run).

    More requests only park more windows — each holding its float32 audio and features —
    in front of a forward pass that cannot take them. faster-whisper takes a whole next
    round: with one more window, the windows that came during a batch ran one by one. An
    openai-whisper window parked at the gate costs more memory and one more is enough
    for its throughput (`bench/RESULTS.md`, design measurements).
    """
    running = parallel * max_batch
    return running + (running if next_batch else 1)


class Limited:
    """A callable that at most `slots` threads run at once; other attributes pass through.

    Each decoding thread computes its whole request's log-mel spectrogram before its first
    window: ten threads doing that together hold ten STFTs' worth of temporaries (a few MB
    per 10 s of audio each) for no gain — they share the same cores. Bounding it to the
    core count bounds that memory whatever the number of streams.
    """

    def __init__(self, wrapped: Any, slots: int) -> None:
        self._wrapped = wrapped
        self._slots = threading.Semaphore(max(1, slots))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._slots:
            return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)
