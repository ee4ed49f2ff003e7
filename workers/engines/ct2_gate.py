"""Cross-stream batching for faster-whisper: its CTranslate2 calls, gathered in a gate.

faster-whisper's own per-file loop (`WhisperModel.transcribe`) stays untouched, so each
stream is decoded by exactly the code a user runs; only its `self.model` — the CTranslate2
`Whisper` — is replaced by `GatedCt2Model`, which sends `encode` and `generate` through a
`BatchGate`. Encoder calls meet in the gate like the others (so the threads stay in step for
`generate`) but run `ENCODE_BATCH` windows at a time: the encoder is compute-bound and gains
nothing from a batch, while its self-attention holds heads × 1500 × 1500 floats per window,
so a batch of them costs memory and saves no time (`bench/RESULTS.md`, design measurements).
CTranslate2's `generate` needs `<|startoftranscript|>` at the same position in every row (it
cannot pad prompts), so generate calls batch with others whose prompt has the same length
and options; cutting prompts to fit would change the words. Encoder outputs travel as numpy
arrays between the two calls (faster-whisper only hands them back to the model). With
`parallel` batches at once, each call goes to one of the model's CTranslate2 replicas
(`num_workers`), which share one copy of the weights: a replica costs next to no memory.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt

from workers.batching import BatchGate

ENCODE_BATCH = 1
"""Windows per encoder pass (see the module docstring)."""

Features = npt.NDArray[np.floating[Any]]
GenerateItem = tuple[Features, list[int], dict[str, Any]]
Item = Features | GenerateItem


def _frozen(value: Any) -> Hashable:
    """Options as a hashable key part (lists of token ids become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


class GatedCt2Model:
    """Stands in for `WhisperModel.model`; every other attribute is the real model's."""

    def __init__(
        self,
        model: ctranslate2.models.Whisper,
        max_batch: int,
        wait_s: float,
        encode_batch: int = ENCODE_BATCH,
        parallel: int = 1,
    ) -> None:
        self._model = model
        self.encode_batch = encode_batch
        self.gate: BatchGate[Item, Any] = BatchGate(self._run, max_batch, wait_s, parallel)
        self._local = threading.local()

    @contextmanager
    def encoding_frames(self, frames: int | None) -> Iterator[None]:
        """The calling thread's windows are encoded over their first `frames` mel frames
        only (`DecodeRequest.fit_window`); None: whole windows."""
        self._local.frames = frames
        try:
            yield
        finally:
            self._local.frames = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    # ---- what faster-whisper calls ---------------------------------------------------------

    def encode(self, features: ctranslate2.StorageView, to_cpu: bool = False) -> Features:
        """Batched with every other thread's window; returns a (1, ctx, state) array.

        `features` wraps faster-whisper's own padded window: parked as a view of it, not
        a copy (0.96 MB per waiting window with 80 mels)."""
        window = np.asarray(features)
        frames: int | None = getattr(self._local, "frames", None)
        if frames is not None and frames < window.shape[-1]:
            window = np.ascontiguousarray(window[..., :frames])
        result: Features = self.gate.call(("encode",), window)
        return result

    def generate(
        self, encoder_output: Features, prompts: list[list[int]], **options: Any
    ) -> list[Any]:
        """One window (faster-whisper always passes one), batched with equal-shaped ones."""
        (prompt,) = prompts
        key = ("generate", encoder_output.shape[1], len(prompt), _frozen(options))
        return [self.gate.call(key, (encoder_output, prompt, options))]

    def detect_language(self, encoder_output: Features) -> Any:
        """Rare (once per stream on multilingual models): not worth a batch."""
        return self._model.detect_language(_storage(encoder_output))

    def align(self, encoder_output: Features, *args: Any, **kwargs: Any) -> Any:
        """Word timestamps' alignment (with `word_timestamps` only): not batched."""
        return self._model.align(_storage(encoder_output), *args, **kwargs)

    # ---- the batch side -----------------------------------------------------------------------

    def _run(self, key: Hashable, items: Sequence[Item]) -> list[Any]:
        if key == ("encode",):
            return self._encode([item for item in items if isinstance(item, np.ndarray)])
        batch = [item for item in items if isinstance(item, tuple)]
        features = np.concatenate([f for f, _, _ in batch])
        results = self._model.generate(_storage(features), [p for _, p, _ in batch], **batch[0][2])
        return list(results)

    def _encode(self, features: list[Features]) -> list[Features]:
        """`encode_batch` windows per pass: peak memory of a few windows, not of all."""
        outputs: list[Features] = []
        for start in range(0, len(features), self.encode_batch):
            chunk = features[start : start + self.encode_batch]
            stacked = chunk[0] if len(chunk) == 1 else np.concatenate(chunk)
            output = np.array(self._model.encode(_storage(stacked), to_cpu=True))
            outputs += [output[i : i + 1] for i in range(len(output))]
        return outputs


def _storage(array: Features) -> ctranslate2.StorageView:
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))
