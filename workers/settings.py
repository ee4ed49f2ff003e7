"""Worker configuration: one pydantic-settings object, read once at start and passed down.

Every field is a CLI flag (`--max-batch`) and an environment variable
(`WHISPERFARM_WORKER_MAX_BATCH`); the descriptions are what `--help` shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from whisperfarm.settings import ComponentSettings

LIVE_PASS_STEPS = 3.5
"""Live steps a second one forward pass serves, by default: between the pace at which six
streams on a 2-core worker with tiny.en kept up and the faster one at which their commits
fell behind (`bench/RESULTS.md`)."""
LIVE_LEAD_IN_MS = 5000
"""Speech before an utterance that its opening steps decode first, by default
(`workers.live.LiveState._leads_in`): shorter lead-ins helped tiny.en's first words less
(`bench/RESULTS.md`)."""

DEFAULT_MODEL_CACHE_DIR = Path("~/.cache/whisperfarm/models")


class WorkerSettings(ComponentSettings):
    """Everything a worker process needs to know, from flags, environment and defaults."""

    model_config = SettingsConfigDict(env_prefix="WHISPERFARM_WORKER_")

    broker: str = Field(
        default="tcp://127.0.0.1:5555",
        description="ZeroMQ endpoint of the broker's ROUTER socket to connect to.",
    )
    engine: str = Field(
        default="faster-whisper",
        description=(
            "Inference engine: faster-whisper (CTranslate2), openai-whisper (torch) or null "
            "(no model, for load tests)."
        ),
    )
    model: str = Field(
        default="base",
        description=(
            "Model name (tiny.en and base are bundled; other names are looked up in "
            "--model-cache-dir) or a path: a CTranslate2 model directory, or for "
            "openai-whisper also a checkpoint file (CTranslate2 models are converted once "
            "into --model-cache-dir)."
        ),
    )
    slots: int = Field(
        default=4, ge=1, le=256, description="How many streams this worker decodes at once."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the model runs; auto picks cuda when a GPU is visible."
    )
    compute_type: str = Field(
        default="auto",
        description=(
            "CTranslate2 compute type (int8, float16, ...); auto: int8 on CPU, float16 on GPU."
        ),
    )
    model_cache_dir: Path = Field(
        default=DEFAULT_MODEL_CACHE_DIR,
        description="Directory holding assembled and converted models; never filled from a hub.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the /metrics and /healthz HTTP server binds."
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the metrics server; 0 picks a free port."
    )
    cpu_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "CPU threads per forward pass; 0: the CPUs the worker may use (its container's "
            "quota, its affinity) shared out between --parallel-batches (with one pass at a "
            "time, the library's default)."
        ),
    )
    beam_size: int = Field(
        default=5, ge=1, le=32, description="Beam size (5 is faster-whisper's own default)."
    )
    chunk_seconds: float = Field(
        default=60.0,
        ge=10.0,
        description=(
            "Decode a stream while it uploads once this much undecoded audio is buffered; "
            "shorter streams are decoded in one pass at the end."
        ),
    )
    live_step_ms: int = Field(
        default=250,
        ge=100,
        le=10_000,
        description=(
            "A live stream is decoded again once this much new audio arrived (sooner shows "
            "words sooner and costs more decodes); with more live streams, at the multiple "
            "of this that keeps each forward pass to --live-pass-steps steps a second."
        ),
    )
    live_pass_steps: float = Field(
        default=LIVE_PASS_STEPS,
        gt=0,
        le=1000,
        description=(
            "Live steps a second that one forward pass serves; past it each live stream "
            "steps less often. The default is measured for tiny.en on CPU cores (a GPU "
            "serves more)."
        ),
    )
    live_lead_in_ms: int = Field(
        default=LIVE_LEAD_IN_MS,
        ge=0,
        le=8000,
        description=(
            "Speech before a live utterance that the decodes of its first words run on "
            "from (they hear them better); 0: none. Each such decode costs that much more "
            "decoder work: a worker short of CPU may want less."
        ),
    )
    live_beam_size: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Beam size of a live stream's decode steps (1: greedy).",
    )
    vad_pause_ms: int = Field(
        default=500,
        ge=100,
        le=10_000,
        description=(
            "Silence that ends a live utterance (its text is committed at once) when the "
            "stream's start does not set vad_pause_ms."
        ),
    )
    max_batch: int = Field(
        default=8,
        ge=1,
        description=(
            "Most windows decoded together in one forward pass (cross-stream batching); "
            "1 turns batching off. --batch-memory-mb may allow fewer."
        ),
    )
    parallel_batches: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "Forward passes run at once, each with its share of the CPU threads (faster-whisper: "
            "as many CTranslate2 replicas, sharing one copy of the weights). 0: auto (2 on a "
            "CPU with 2 or more cores, 1 on a GPU)."
        ),
    )
    batch_memory_mb: int = Field(
        default=0,
        ge=0,
        description=(
            "Memory (MiB) the forward passes running at once may hold for their windows' "
            "decoding state; the batch is min(--max-batch, budget / --parallel-batches / one "
            "window's estimate from the model's dimensions), at least 1. 0: auto (CPU: 96, "
            "one tiny.en window in each of 2 parallel passes; CUDA: half the free GPU "
            "memory with openai-whisper, 4096 with faster-whisper)."
        ),
    )
    batch_wait_ms: float = Field(
        default=20.0,
        ge=0.0,
        description=(
            "How long a forward pass may wait for more streams' windows before it runs "
            "(it runs at once when every decoding stream is waiting)."
        ),
    )
    drain_timeout: float = Field(
        default=60.0,
        ge=0.0,
        description=(
            "On the first SIGTERM, finish the current streams for at most this many seconds "
            "(taking no new ones), then leave; a second SIGTERM leaves at once."
        ),
    )
    name: str = Field(
        default="", description="Name shown by the broker for this worker; empty: host:pid."
    )
    null_delay_per_second: float = Field(
        default=0.0,
        ge=0.0,
        description="null engine only: seconds of simulated inference per second of audio.",
    )
    curve_server_key: Path | None = Field(
        default=None,
        description="ZeroMQ CURVE: the broker's public certificate (broker.key); unset: plain TCP.",
    )
    curve_secret_key: Path | None = Field(
        default=None,
        description="ZeroMQ CURVE: this worker's secret certificate; unset: an ephemeral key.",
    )
    log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")

    @field_validator("model_cache_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        """`~` comes unexpanded from env vars and defaults; resolve it once here."""
        return value.expanduser()
