"""faster-whisper (CTranslate2) engine: one `WhisperModel` per worker process.

Decoding uses faster-whisper's own `transcribe()` and defaults (only the beam size is
configurable, and its default is faster-whisper's), so a transcript is what a user gets
from `WhisperModel.transcribe()` on the original file. Each request runs in its own
thread; their CTranslate2 calls meet in one gate (`ct2_gate`) and run as batches,
`--parallel-batches` at once (2 on a CPU, a core each; 1 on a GPU) — so that many
CTranslate2 replicas (`num_workers`), sharing one copy of the weights, serve every stream.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ctranslate2
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment

from whisperfarm.errors import EngineError
from workers import gpu_memory, metrics
from workers.batch_budget import (
    FASTER_WHISPER_OVERHEAD,
    DecoderShape,
    parallel_batches,
    plan_batch,
    threads_per_batch,
)
from workers.batching import Limited, useful_concurrency
from workers.cpus import usable_cpus
from workers.ct2_format import Ct2FormatError, read_shapes
from workers.engines import (
    DecodedSegment,
    DecodedWord,
    DecodeRequest,
    DecodeResult,
    fallback_temperatures,
    fitted_frames,
)
from workers.engines.ct2_gate import GatedCt2Model
from workers.models import resolve_model
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


def pick_device(setting: str) -> str:
    """`auto` means the GPU when CTranslate2 can see one."""
    if setting != "auto":
        return setting
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def pick_compute_type(setting: str, device: str) -> str:
    """`auto`: int8 on CPU (fastest there), float16 on CUDA."""
    if setting != "auto":
        return setting
    return "float16" if device == "cuda" else "int8"


def decoder_shape(model_dir: Path, compute_type: str) -> DecoderShape:
    """The loaded model's decoder, for the batch budget, from `model.bin`'s shapes;
    `compute_type` is CTranslate2's (`int8_float32`: activations are float32)."""
    try:
        shapes = read_shapes(model_dir / "model.bin")
        layers = {m[1] for n in shapes if (m := re.match(r"decoder/layer_(\d+)/", n))}
        width = shapes["decoder/embeddings/weight"][1]
        positions = shapes["encoder/position_encodings/encodings"][0]
    except (Ct2FormatError, KeyError, IndexError, OSError) as exc:
        raise EngineError(f"cannot read the decoder's shape from {model_dir}: {exc!r}") from exc
    value_bytes = 2 if "float16" in compute_type else 4  # bfloat16 too
    return DecoderShape(len(layers), width, value_bytes, positions, FASTER_WHISPER_OVERHEAD)


@dataclass
class FasterWhisperEngine:
    whisper: WhisperModel
    model: str
    device: str
    beam_size: int = 5
    max_batch: int = 8
    batch_wait_s: float = 0.02
    parallel_batches: int = 1
    name: str = "faster-whisper"
    gated: GatedCt2Model = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.gated = GatedCt2Model(
            self.whisper.model, self.max_batch, self.batch_wait_s, parallel=self.parallel_batches
        )
        self.whisper.model = self.gated
        self.whisper.feature_extractor = Limited(self.whisper.feature_extractor, usable_cpus())
        self._pool = ThreadPoolExecutor(max(8, self.concurrency), thread_name_prefix="ct2")

    @property
    def concurrency(self) -> int:
        """Requests worth having inside `transcribe` at once (`Engine.concurrency`)."""
        return useful_concurrency(self.max_batch, next_batch=True, parallel=self.parallel_batches)

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode each request in its own thread; their model calls meet in the gate."""
        if len(requests) == 1:
            return [self._one(requests[0])]
        return list(self._pool.map(self._one, requests))

    def gpu_memory_bytes(self) -> int | None:
        """0 on a CPU; on CUDA what the driver counts for this process (CTranslate2 keeps
        no allocator statistics), or None when the driver cannot say (`gpu_memory`)."""
        return gpu_memory.held_by_this_process() if self.device == "cuda" else 0

    def _one(self, request: DecodeRequest) -> DecodeResult:
        if not len(request.audio):
            return DecodeResult([], request.language)
        prompt: str | list[int] | None = list(request.context) or request.initial_prompt
        frames = (
            None if request.fit_window is None
            else fitted_frames(len(request.source), request.fit_window)
        )  # fmt: skip
        with self.gated.gate.decoding(), self.gated.encoding_frames(frames):
            segments, info = self.whisper.transcribe(
                request.audio,
                language=request.language,
                task=request.task,
                beam_size=request.beam_size or self.beam_size,
                initial_prompt=prompt,
                temperature=fallback_temperatures(request.temperature, request.fallback),
                word_timestamps=request.word_timestamps,
                max_new_tokens=request.max_new_tokens,
            )
            decoded = [_decoded(s) for s in segments]  # iterating runs the decode
        return DecodeResult(decoded, info.language)


def _decoded(segment: Segment) -> DecodedSegment:
    words = segment.words
    return DecodedSegment(
        segment.start,
        segment.end,
        segment.text,
        tuple(segment.tokens),
        seek=segment.seek,
        temperature=segment.temperature,
        avg_logprob=segment.avg_logprob,
        compression_ratio=segment.compression_ratio,
        no_speech_prob=segment.no_speech_prob,
        words=None if words is None else tuple(DecodedWord(**asdict(w)) for w in words),
    )


def load(settings: WorkerSettings) -> FasterWhisperEngine:
    path = resolve_model(settings.model, settings.model_cache_dir)
    if not (Path(path) / "model.bin").is_file():
        raise EngineError(f"{path} is not a CTranslate2 model directory (no model.bin)")
    device = pick_device(settings.device)
    compute_type = pick_compute_type(settings.compute_type, device)
    parallel = parallel_batches(settings.parallel_batches, device)
    started = time.perf_counter()
    try:
        whisper = WhisperModel(
            str(path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads_per_batch(settings.cpu_threads, parallel),
            num_workers=parallel,  # a replica per batch running at once
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise EngineError(f"could not load model {settings.model!r} from {path}: {exc}") from exc
    metrics.MODEL_LOADS.labels(engine="faster-whisper", model=settings.model).inc()
    shape = decoder_shape(Path(path), whisper.model.compute_type)
    max_batch = plan_batch(
        settings.max_batch, settings.batch_memory_mb, device, shape, parallel=parallel
    )
    log.info(
        "loaded faster-whisper model %s from %s on %s (%s) in %.1f s",
        settings.model,
        path,
        device,
        compute_type,
        time.perf_counter() - started,
    )
    return FasterWhisperEngine(
        whisper,
        settings.model,
        device,
        settings.beam_size,
        max_batch,
        settings.batch_wait_ms / 1000,
        parallel,
    )
