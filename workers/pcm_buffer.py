"""One stream's uncommitted audio: 16 kHz int16 samples in one growing array.

Why int16: the resampler's output is s16 (as `faster_whisper.audio.decode_audio`'s) and
becomes float32 only by `/ 32768`, so the float32 copy the engine needs can be made when
a window is decoded, in the decoding thread: a stream waiting for its turn holds half
the bytes (60 s: 1.9 MB instead of 3.8 MB), and no float32 copy exists before the
engine can use it.

Why one growing array: appending packets to a list and joining them per window kept two
copies at the join and left thousands of freed 4 kB packet arrays in malloc's heap. Here
a packet is copied once into spare capacity; capacity doubles (pages never written cost
no RSS: large arrays are mmap'd, `workers.malloc`).

What `view()` hands out is never written again: appends go past it, and `drop()` moves
the rest into a fresh array. So a window can read its audio in a decoding thread while
packets keep arriving on the event loop.
"""

from __future__ import annotations

import numpy as np

from workers.audio import Pcm

MIN_CAPACITY = 16_000
"""First allocation: one second."""


class PcmBuffer:
    """Append-only int16 samples with a movable start; see the module docstring."""

    def __init__(self) -> None:
        self._data: Pcm = np.zeros(0, dtype=np.int16)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def capacity(self) -> int:
        return len(self._data)

    def append(self, samples: Pcm) -> None:
        """Copy `samples` in after the last ones, growing (×2) when full."""
        end = self._len + len(samples)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data), MIN_CAPACITY), dtype=np.int16)
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : end] = samples
        self._len = end

    def view(self) -> Pcm:
        """Every buffered sample, without a copy (never overwritten later)."""
        return self._data[: self._len]

    def drop(self, samples: int) -> None:
        """Forget the first `samples`; the rest moves into a new array sized for it."""
        if samples <= 0:
            return
        rest = self._data[min(samples, self._len) : self._len]
        self._data = np.zeros(0, dtype=np.int16)
        self._len = 0
        if len(rest):
            self.append(rest)
