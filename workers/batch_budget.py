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

A worker may run several forward passes at once (`--parallel-batches`, see
`parallel_batches`); the budget is for all of them together, so each pass gets its share:
the effective batch is `min(--max-batch, max(1, budget // parallel // per_window))`. The
budget (`--batch-memory-mb`, 0 = auto):
- CPU: `CPU_BUDGET_MB` (96). Each of a CPU worker's 2 parallel passes gets 48 MiB: one
  tiny.en window (25.7 MiB with faster-whisper, 29.7 with openai-whisper). That keeps a
  worker's 10 streams within 100 MB of its 1 stream (`bench/memory.py`) while the farm
  still beats the raw engine by the 1.3× it is for (`bench/throughput.py`); two windows
  per pass came too close to the 100 MB, and with one pass at a time
  (`--parallel-batches 1`) the same 96 MiB take 3 windows (the runs behind this choice:
  `bench/RESULTS.md`). base gets 1 window per pass.
- CUDA, torch (openai-whisper): `GPU_SHARE` of the free GPU memory after the model is
  loaded — the GPU is the worker's own, and batches are what it is for.
- CUDA, CTranslate2 (faster-whisper): `GPU_FALLBACK_MB`; CTranslate2 reports no free
  memory, and importing torch for it would open a second CUDA context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from workers.cpus import usable_cpus

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
CPU_PARALLEL_BATCHES = 2
"""`--parallel-batches` auto on a CPU (see `parallel_batches`)."""
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


def effective_batch(max_batch: int, budget: int, per_window: int, parallel: int = 1) -> int:
    """`min(max_batch, max(1, budget // parallel // per_window))`: one window always fits."""
    return min(max_batch, max(1, budget // max(1, parallel) // max(1, per_window)))


def parallel_batches(setting: int, device: str) -> int:
    """Forward passes a worker runs at once: the setting, or (0) one on a GPU and
    `CPU_PARALLEL_BATCHES` on a CPU (at most one per CPU the process may use: its
    container's quota, not the host's cores; `workers.cpus`).

    On a CPU a pass of a small model gains little from a second thread (tiny.en on 2 cores,
    faster-whisper's own loop: 17.6 audio s/s with 1 thread and with 2), while two passes
    side by side, a core each, do much more (the same loop in two threads: 24.5–27.4
    audio s/s); a GPU runs one pass at a time anyway."""
    cores = usable_cpus()
    if setting > 0:
        if device != "cuda" and setting > cores:
            log.warning(
                "--parallel-batches %d on %d CPU cores: passes will share cores and each "
                "runs slower; at most %d is useful here",
                setting,
                cores,
                cores,
            )
        return setting
    if device == "cuda":
        return 1
    return max(1, min(CPU_PARALLEL_BATCHES, cores))


def threads_per_batch(cpu_threads: int, parallel: int) -> int:
    """CPU threads each parallel pass may use: the setting, or (0) the cores shared out
    between the passes; 0 (the library's default) when passes run one at a time."""
    if cpu_threads or parallel == 1:
        return cpu_threads
    return max(1, usable_cpus() // parallel)


def plan_batch(
    max_batch: int,
    setting_mb: int,
    device: str,
    shape: DecoderShape,
    free_gpu: Callable[[], int | None] = lambda: None,
    parallel: int = 1,
) -> int:
    """The effective batch for a loaded model, logged once at start."""
    per_window = shape.window_bytes()
    budget = budget_bytes(setting_mb, device, free_gpu)
    batch = effective_batch(max_batch, budget, per_window, parallel)
    log.info(
        "batching: at most %d windows per forward pass, %d pass(es) at once (--max-batch %d; "
        "budget %.0f MiB%s at ~%.1f MiB per window: %d layers × 2 × %d × %d × %d bytes + "
        "encoder output)",
        batch,
        parallel,
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
