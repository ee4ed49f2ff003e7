"""Every worker metric, declared once, on the worker's own registry.

Names start with `whisperfarm_worker_`, counters end in `_total` (prometheus-client adds
it), durations are in seconds, and labels are bounded (engine, model, outcome) — never a
job id, so a busy farm cannot blow up Prometheus.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

MODEL_LOADS = Counter(
    "whisperfarm_worker_model_loads",
    "Models loaded by this process (should stay at 1: one long-lived model per worker).",
    ["engine", "model"],
    registry=REGISTRY,
)
STREAMS_ACTIVE = Gauge(
    "whisperfarm_worker_streams_active",
    "Streams assigned to this worker and not finished yet.",
    registry=REGISTRY,
)
SLOTS = Gauge(
    "whisperfarm_worker_slots",
    "How many streams this worker takes at once.",
    registry=REGISTRY,
)
MAX_BATCH = Gauge(
    "whisperfarm_worker_max_batch",
    "Most windows one forward pass takes: --max-batch, capped by --batch-memory-mb.",
    registry=REGISTRY,
)
PARALLEL_BATCHES = Gauge(
    "whisperfarm_worker_parallel_batches",
    "Forward passes run at once (--parallel-batches; auto: 2 on a CPU, 1 on a GPU).",
    registry=REGISTRY,
)
STREAMS_FINISHED = Counter(
    "whisperfarm_worker_streams_finished",
    "Streams that left this worker, by outcome (done, failed, cancelled, replaced, dropped).",
    ["outcome"],
    registry=REGISTRY,
)
WORK_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
"""Buckets for a piece of work on audio: from a short window to a long file."""
INFERENCE_SECONDS = Histogram(
    "whisperfarm_worker_inference_seconds",
    "Wall time of one engine call.",
    buckets=WORK_SECONDS,
    registry=REGISTRY,
)
SPEAKER_MODEL_LOADS = Counter(
    "whisperfarm_worker_speaker_model_loads",
    "Speaker models loaded by this process (0 until a stream asks for labels, then 1).",
    registry=REGISTRY,
)
DIARIZE_SECONDS = Histogram(
    "whisperfarm_worker_diarize_seconds",
    "Wall time of labelling one stream's segments with speakers (`start.diarize`).",
    buckets=WORK_SECONDS,
    registry=REGISTRY,
)
AUDIO_DECODED_SECONDS = Counter(
    "whisperfarm_worker_audio_decoded_seconds",
    "Seconds of audio handed to the engine (overlaps between windows count twice; the"
    " non-speech that voice activity keeps from it does not count).",
    registry=REGISTRY,
)
DECODE_BATCH_SIZE = Histogram(
    "whisperfarm_worker_decode_batch_size",
    "Windows decoded together in one forward pass (cross-stream batching).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
REAL_TIME_FACTOR = Histogram(
    "whisperfarm_worker_real_time_factor",
    "Inference seconds per second of audio, per engine call (below 1 is faster than real time).",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
    registry=REGISTRY,
)
FORWARD_SECONDS = Histogram(
    "whisperfarm_worker_forward_seconds",
    "Wall time of one batched forward pass (encoder + decoding of up to --max-batch windows).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60),
    registry=REGISTRY,
)
LIVE_STREAMS = Gauge(
    "whisperfarm_worker_live_streams",
    "Live streams assigned to this worker and not finished yet (counted in streams_active too).",
    registry=REGISTRY,
)
LIVE_STEP_SECONDS = Histogram(
    "whisperfarm_worker_live_step_seconds",
    "Wall time of one live decode step (a live stream's uncommitted audio decoded again); "
    "a stream's partials come at best this often.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
    registry=REGISTRY,
)
GPU_MEMORY_BYTES = Gauge(
    "whisperfarm_worker_gpu_memory_bytes",
    "GPU memory this process holds (openai-whisper: reserved by torch's allocator; "
    "faster-whisper: as the driver counts it, NaN when it cannot say); 0 on CPU.",
    registry=REGISTRY,
)
DRAINING = Gauge(
    "whisperfarm_worker_draining",
    "1 while the worker finishes its streams before exiting (takes no new ones), else 0.",
    registry=REGISTRY,
)
