"""Voice activity: which 32 ms frames of a stream are speech (Silero VAD, ONNX).

The model is the one faster-whisper ships (`faster_whisper/assets/silero_vad_v6.onnx`) and
runs on the onnxruntime faster-whisper already depends on: no hub, no second copy. One
session per worker process (`faster_whisper.vad.get_vad_model` caches it); it is small
(2 MB) and single-threaded, and a frame costs ~0.1 ms, so a silent stream costs almost
nothing while a decode of its silence would cost a full Whisper window.

`VoiceActivity` scores a stream's audio as it arrives, frame by frame, in stream
positions (16 kHz samples from the stream's start), so it stays valid when the stream's
buffer drops committed audio from its front. Whether a frame is speech uses Silero's own
hysteresis: a frame is speech above `threshold`, silence below `threshold - 0.15`, and in
between it keeps the state of the frame before.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
from faster_whisper.vad import get_vad_model

from workers.audio import Pcm

FRAME = 512
"""Samples per scored frame (32 ms at 16 kHz): the window Silero v5+ takes."""
DEFAULT_THRESHOLD = 0.5
"""Silero's own default speech probability."""
HYSTERESIS = 0.15
"""Below `threshold - HYSTERESIS` a frame is silence; in between it keeps the last state."""
CONTEXT = 64
"""Samples of the previous frame that Silero reads in front of each frame."""
STATE_SHAPE = (1, 1, 128)

_lock = threading.Lock()
"""One ONNX session for the process (onnxruntime runs are thread-safe); its creation
under `lru_cache` is guarded here so two first streams do not both load it."""


def _session() -> Any:
    with _lock:
        return get_vad_model().session


class SileroScorer:
    """Speech probability per frame of one audio stream, fed in pieces.

    `faster_whisper.vad.SileroVADModel.__call__` starts from a fresh state on every call,
    which is right for a whole file and wrong for a stream scored 64 ms at a time (its
    probabilities then jump about, measured in `bench/RESULTS.md`). This runs the same
    session with the recurrent state and the 64-sample context carried from one call to
    the next, so a stream scored in pieces gets exactly the whole file's probabilities."""

    def __init__(self) -> None:
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        """Probabilities of the whole frames of 16 kHz int16 `pcm` (a multiple of `FRAME`)."""
        frames = (pcm.astype(np.float32) / 32768.0).reshape(-1, FRAME)
        if not len(frames):
            return np.zeros(0, dtype=np.float32)
        contexts = np.concatenate([self._context[None], frames[:-1, -CONTEXT:]])
        self._context = frames[-1, -CONTEXT:].copy()
        rows = np.concatenate([contexts, frames], axis=1)
        out, self._h, self._c = _session().run(None, {"input": rows, "h": self._h, "c": self._c})
        return np.asarray(out, dtype=np.float32).reshape(-1)


def speech_flags(
    probabilities: npt.NDArray[np.float32],
    threshold: float,
    previous: bool = False,
) -> npt.NDArray[np.bool_]:
    """Speech (True) or not for each frame, with Silero's hysteresis; `previous` is the
    state before the first frame."""
    low = max(threshold - HYSTERESIS, 0.01)
    flags = np.empty(len(probabilities), dtype=bool)
    state = previous
    for i, p in enumerate(probabilities):
        if p >= threshold:
            state = True
        elif p < low:
            state = False
        flags[i] = state
    return flags


class VoiceActivity:
    """Speech flags of one stream's frames, scored as audio arrives (module docstring)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.restart_at(0)

    def restart_at(self, sample: int) -> None:
        """Score from stream position `sample` on with a fresh state, as at a stream's
        start (the stream starts there, or audio before it was dropped unscored)."""
        self._score = SileroScorer()
        self._pending = np.zeros(0, dtype=np.int16)
        """Samples after the last whole frame, waiting for the rest of their frame."""
        self._flags = np.zeros(0, dtype=bool)
        self._first = 0
        """Frame index (from `_origin`) of `_flags[0]`; frames before it were forgotten."""
        self._origin = sample
        """Stream position of frame 0."""

    def feed(self, pcm: Pcm) -> None:
        """Score the whole frames that `pcm` completes (16 kHz int16, in stream order)."""
        audio = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        whole = len(audio) // FRAME * FRAME
        self._pending = audio[whole:].copy()
        if not whole:
            return
        previous = bool(self._flags[-1]) if len(self._flags) else False
        flags = speech_flags(self._score(audio[:whole]), self.threshold, previous)
        self._flags = np.concatenate([self._flags, flags])

    @property
    def scored(self) -> int:
        """Stream position up to which audio is scored."""
        return self._origin + (self._first + len(self._flags)) * FRAME

    def forget_before(self, sample: int) -> None:
        """Drop the flags of frames that end before stream position `sample`."""
        frame = min((sample - self._origin) // FRAME, self._first + len(self._flags))
        if frame > self._first:
            self._flags = self._flags[frame - self._first :]
            self._first = frame

    def speech_spans(self, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
        """Speech between stream positions `start` and `end` (default: all scored), as
        (start, end) sample pairs, frame-aligned."""
        lo = max((start - self._origin) // FRAME, self._first)
        hi = self._first + len(self._flags)
        if end is not None:
            hi = min(hi, -(-(end - self._origin) // FRAME))
        if hi <= lo:
            return []
        flags = self._flags[lo - self._first : hi - self._first]
        edges = np.flatnonzero(np.diff(np.concatenate([[False], flags, [False]]).astype(np.int8)))
        origin = self._origin
        return [
            (origin + (lo + int(a)) * FRAME, origin + (lo + int(b)) * FRAME)
            for a, b in zip(edges[::2], edges[1::2], strict=True)
        ]

    def has_speech(self, start: int = 0, end: int | None = None) -> bool:
        return bool(self.speech_spans(start, end))

    def trailing_silence(self) -> int:
        """Samples of non-speech at the end of what is scored (all of it if no speech)."""
        speech = np.flatnonzero(self._flags)
        if not len(speech):
            return len(self._flags) * FRAME
        return (len(self._flags) - 1 - int(speech[-1])) * FRAME
