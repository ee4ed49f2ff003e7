"""faster-whisper (CTranslate2) engine: one `WhisperModel` per worker process.

The model is loaded once with `num_workers=slots`, so up to `slots` streams decode at the
same time from different threads. Decoding uses faster-whisper's own defaults (only the
beam size is configurable, and its default is faster-whisper's), so a transcript is what
a user gets from `WhisperModel.transcribe()` on the original file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
from faster_whisper import WhisperModel

from whisperfarm.errors import EngineError
from workers import metrics
from workers.engines import DecodedSegment, DecodeRequest, DecodeResult
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


@dataclass
class FasterWhisperEngine:
    whisper: WhisperModel
    model: str
    device: str
    beam_size: int = 5
    name: str = "faster-whisper"

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode each request in turn (cross-stream batching comes later)."""
        return [self._one(r) for r in requests]

    def _one(self, request: DecodeRequest) -> DecodeResult:
        if not len(request.audio):
            return DecodeResult([], request.language)
        prompt: str | list[int] | None = list(request.context) or request.initial_prompt
        segments, info = self.whisper.transcribe(
            request.audio,
            language=request.language,
            task=request.task,
            beam_size=self.beam_size,
            initial_prompt=prompt,
        )
        decoded = [  # iterating runs the decode
            DecodedSegment(s.start, s.end, s.text, tuple(s.tokens)) for s in segments
        ]
        return DecodeResult(decoded, info.language)


def load(settings: WorkerSettings) -> FasterWhisperEngine:
    path = resolve_model(settings.model, settings.model_cache_dir)
    if not (Path(path) / "model.bin").is_file():
        raise EngineError(f"{path} is not a CTranslate2 model directory (no model.bin)")
    device = pick_device(settings.device)
    compute_type = pick_compute_type(settings.compute_type, device)
    started = time.perf_counter()
    try:
        whisper = WhisperModel(
            str(path),
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.slots,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise EngineError(f"could not load model {settings.model!r} from {path}: {exc}") from exc
    metrics.MODEL_LOADS.labels(engine="faster-whisper", model=settings.model).inc()
    log.info(
        "loaded faster-whisper model %s from %s on %s (%s) in %.1f s",
        settings.model,
        path,
        device,
        compute_type,
        time.perf_counter() - started,
    )
    return FasterWhisperEngine(whisper, settings.model, device, settings.beam_size)
