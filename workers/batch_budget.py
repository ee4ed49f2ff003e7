"""How many windows one forward pass may take: `--max-batch`, capped by a memory budget.

Decoding a batch holds, for every window in it, the cross-attention keys and values of
every decoder layer over the 1500 audio positions, and the encoder output they come
from; none of it can be shared between windows. So one window costs about

    decoder layers × 2 (K and V) × 1500 × model width × bytes per value
    + 1500 × model width × bytes per value (the encoder output)

tiny.en on CPU (4 layers, width 384, float32 activations — int8 quantizes only the
weights): 18.4 + 2.3 = 20.7 MB (19.8 MiB). Measured with `bench/memory.py` (10 streams of
20 s), each window more in a batch adds ~27 MB of peak RSS with faster-whisper and ~31 MB
with openai-whisper: the beams' self-attention caches and per-step temporaries, which
grow with the prompt. So each engine multiplies the estimate by its measured overhead
(1.3 and 1.5). base: 6 layers, width 512: 39.9 MB before the overhead; large-v3: 32
layers, width 1280, float16 on GPU: 249.6 MB.

The effective batch is `min(--max-batch, max(1, budget // per_window))`. The budget
(`--batch-memory-mb`, 0 = auto):
- CPU: `CPU_BUDGET_MB` (96): tiny.en gets 3 windows per pass with either engine, which
  keeps a worker's 10 streams within ~100 MB of its 1 stream (issue #4) and most of
  batching's throughput (`bench/throughput.py`, faster-whisper, farm/raw: 1.01 / 1.16 /
  1.27 / 1.29 at batch 1 / 2 / 3 / 8); base gets 1 (128 gives it 2). With 80,
  openai-whisper got 2: 78 instead of 83–102 MB, but 1.33× the raw engine instead of
  1.6–1.8× — not worth it.
- CUDA, torch (openai-whisper): `GPU_SHARE` of the free GPU memory after the model is
  loaded — the GPU is the worker's own, and batches are what it is for.
- CUDA, CTranslate2 (faster-whisper): `GPU_FALLBACK_MB`; CTranslate2 reports no free
  memory, and importing torch for it would open a second CUDA context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MB = 1 << 20
"""`--batch-memory-mb` counts MiB."""
AUDIO_POSITIONS = 1500
"""Encoder output positions of a 30 s window (every Whisper model)."""
CPU_BUDGET_MB = 96
FASTER_WHISPER_OVERHEAD = 1.3
"""tiny.en, `bench/memory.py`: ~27 MB per extra window in a CTranslate2 batch / 20.7 MB."""
OPENAI_WHISPER_OVERHEAD = 1.5
"""tiny.en, `bench/memory.py`: ~31 MB per extra window in a torch batch / 20.7 MB."""
GPU_SHARE = 0.5
GPU_FALLBACK_MB = 4096


@dataclass(frozen=True)
class DecoderShape:
    """What one window's decoding memory depends on (see the module docstring)."""

    layers: int
    width: int
    bytes_per_value: int
    audio_positions: int = AUDIO_POSITIONS
    overhead: float = 1.0
    """What the engine holds per window beyond the K/V and the encoder output (beams'
    self-attention caches, logits, per-step temporaries), as a factor on them: measured
    per engine (`FASTER_WHISPER_OVERHEAD`, `OPENAI_WHISPER_OVERHEAD`)."""

    def window_bytes(self) -> int:
        """Cross-attention K/V of every decoder layer plus the encoder output, times the
        engine's overhead, in bytes."""
        one_tensor = self.audio_positions * self.width * self.bytes_per_value
        return int((self.layers * 2 + 1) * one_tensor * self.overhead)


def budget_bytes(setting_mb: int, device: str, free_gpu: Callable[[], int | None]) -> int:
    """The budget in bytes: the setting, or (0) the device's default; `free_gpu()` is the
    free GPU memory in bytes, or None when it cannot be known."""
    if setting_mb > 0:
        return setting_mb * MB
    if device != "cuda":
        return CPU_BUDGET_MB * MB
    free = free_gpu()
    return int(free * GPU_SHARE) if free is not None else GPU_FALLBACK_MB * MB


def effective_batch(max_batch: int, budget: int, per_window: int) -> int:
    """`min(max_batch, max(1, budget // per_window))`: one window always fits."""
    return min(max_batch, max(1, budget // max(1, per_window)))


def plan_batch(
    max_batch: int,
    setting_mb: int,
    device: str,
    shape: DecoderShape,
    free_gpu: Callable[[], int | None] = lambda: None,
) -> int:
    """The effective batch for a loaded model, logged once at start."""
    per_window = shape.window_bytes()
    budget = budget_bytes(setting_mb, device, free_gpu)
    batch = effective_batch(max_batch, budget, per_window)
    log.info(
        "batching: at most %d windows per forward pass (--max-batch %d; budget %.0f MiB%s "
        "at ~%.1f MiB per window: %d layers × 2 × %d × %d × %d bytes + encoder output)",
        batch,
        max_batch,
        budget / MB,
        "" if setting_mb else f", auto on {device}",
        per_window / MB,
        shape.layers,
        shape.audio_positions,
        shape.width,
        shape.bytes_per_value,
    )
    return batch
