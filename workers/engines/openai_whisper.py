"""openai-whisper (torch) engine: one `Whisper` model per worker, batched across streams.

The model loads once, on CUDA when torch sees a GPU (float16 there, float32 on CPU). A
model is a checkpoint file, a name whose `<name>.pt` sits in `--model-cache-dir` (what a
cluster pre-populates, openai's own file names), or a CTranslate2 model (the bundled
`tiny.en`/`base`, or `<cache>/<name>/model.bin`) converted once into `<cache>/<name>.pt`.
Nothing is downloaded.

Every request runs the per-window loop of `whisper_loop` in its own thread; windows go
through one `BatchGate`, so windows of all streams at the same step are decoded in one
encoder pass and one batched beam search (`torch_decode`).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from whisper.audio import N_FRAMES, pad_or_trim
from whisper.decoding import DecodingOptions, DecodingResult
from whisper.model import ModelDimensions, Whisper
from whisper.timing import add_word_timestamps
from whisper.tokenizer import Tokenizer, get_tokenizer

from whisperfarm.errors import EngineError
from workers import metrics
from workers.batch_budget import (
    OPENAI_WHISPER_OVERHEAD,
    DecoderShape,
    parallel_batches,
    plan_batch,
    threads_per_batch,
)
from workers.batching import BatchGate, Limited, useful_concurrency
from workers.convert import ensure_checkpoint
from workers.cpus import usable_cpus
from workers.engines import DecodeRequest, DecodeResult, fallback_temperatures
from workers.engines.torch_decode import BatchedDecodingTask, encode
from workers.engines.whisper_loop import (
    TorchFeatures,
    content_frames,
    initial_tokens,
    mel_of,
    transcribe_mel,
)
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

Item = tuple[TorchFeatures, list[int]]
"""What a thread parks at the gate: a window (mel or encoder output) and its prompt."""
ENCODE_BATCH = 1
"""Windows per encoder pass. The encoder is compute-bound and no faster batched, while a
pass holds every window's activations; the decoder, which does gain from batching, still
gets all (`bench/RESULTS.md`, design measurements)."""


def pick_device(setting: str) -> torch.device:
    """`auto` means the GPU when torch can see one."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda, but torch sees no CUDA GPU")
    return torch.device(setting)


def load_checkpoint(path: Path, device: torch.device) -> Whisper:
    """`whisper.load_model()` for any checkpoint, with the alignment heads our converter
    stores (openai-whisper only knows them for its own model names)."""
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise EngineError(f"could not load the checkpoint {path}: {exc}") from exc
    heads = checkpoint.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device).eval()


@dataclass
class OpenAIWhisperEngine:
    whisper: Whisper
    model: str
    device: str
    beam_size: int = 5
    max_batch: int = 8
    batch_wait_s: float = 0.02
    parallel_batches: int = 1
    name: str = "openai-whisper"
    gate: BatchGate[Item, DecodingResult] = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.gate = BatchGate(
            self._decode_batch, self.max_batch, self.batch_wait_s, self.parallel_batches
        )
        self._pool = ThreadPoolExecutor(
            max(8, self.concurrency), thread_name_prefix="openai-whisper"
        )
        self._fp16 = self.whisper.device.type == "cuda"
        self._mel = Limited(mel_of, usable_cpus())
        self._word_timing_missing = (
            self._fp16 and importlib.util.find_spec("triton") is None
        )  # whisper.timing imports it unguarded for CUDA tensors
        self._hooked = threading.Lock()
        """Held by whatever runs the decoder's own attention modules: word alignment
        hooks them, language detection runs them (the batched decode runs neither)."""

    @property
    def concurrency(self) -> int:
        """Requests worth having inside `transcribe` at once (`Engine.concurrency`)."""
        return useful_concurrency(self.max_batch, next_batch=False, parallel=self.parallel_batches)

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode each request in its own thread; their windows meet in the gate."""
        if len(requests) == 1:
            return [self._one(requests[0])]
        return list(self._pool.map(self._one, requests))

    def gpu_memory_bytes(self) -> int:
        """What torch's allocator holds on the GPU (0 on CPU)."""
        if self.whisper.device.type != "cuda":
            return 0
        return int(torch.cuda.memory_reserved(self.whisper.device))

    def _one(self, request: DecodeRequest) -> DecodeResult:
        if not len(request.audio):
            return DecodeResult([], request.language)
        if request.word_timestamps and self._word_timing_missing:
            raise EngineError(
                "word timestamps on a GPU need openai-whisper's triton kernels, and triton is "
                "not installed here (pip install triton; PyPI's CUDA torch brings it)"
            )
        with self.gate.decoding(), torch.inference_mode():
            mel: torch.Tensor = self._mel(
                request.audio, self.whisper.dims.n_mels, self.whisper.device
            )
            language = self._language(mel, request.language)
            tokenizer = self._tokenizer(language, request.task)
            decode = lambda window, prompt, t: self.gate.call(  # noqa: E731
                self._key(
                    language,
                    request.task,
                    t,
                    request.beam_size or self.beam_size,
                    request.max_new_tokens,
                    self._frames(window),
                ),
                (window, prompt),
            )
            segments = transcribe_mel(
                mel,
                tokenizer,
                decode,
                initial_tokens(request, tokenizer),
                fallback_temperatures(request.temperature, request.fallback),
                functools.partial(self._align, tokenizer) if request.word_timestamps else None,
                request.fit_window,
            )
        return DecodeResult(segments, language)

    def _align(
        self,
        tokenizer: Tokenizer,
        segments: list[dict[str, Any]],
        encoded: TorchFeatures,
        frames: int,
        last_speech: float,
    ) -> None:
        """openai-whisper's own word timing (`AlignFn`): one more decoder pass over the
        window's encoder output, whose cross-attention it reads through hooks on the shared
        decoder — so no other pass through those layers may run meanwhile (`_hooked`)."""
        with self._hooked:
            add_word_timestamps(
                segments=segments,
                model=_Encoded(self.whisper),
                tokenizer=tokenizer,
                mel=encoded,
                num_frames=frames,
                last_speech_timestamp=last_speech,
            )

    def _tokenizer(self, language: str, task: str) -> Tokenizer:
        model = self.whisper
        return get_tokenizer(
            model.is_multilingual, num_languages=model.num_languages, language=language, task=task
        )

    def _language(self, mel: torch.Tensor, given: str | None) -> str:
        """As faster-whisper: English for `.en` models whatever was asked, else the given
        language, else the one detected on the first 30 s."""
        if not self.whisper.is_multilingual:
            return "en"
        if given:
            return given
        window = pad_or_trim(mel[:, : content_frames(mel)], N_FRAMES)
        return str(self.gate.call(("detect",), (window, [])).language)

    def _key(
        self,
        language: str,
        task: str,
        temperature: float,
        beam: int,
        tokens: int | None,
        frames: int,
    ) -> Hashable:
        """Windows decoded in one pass: the same options, and the same length to stack."""
        return ("decode", language, task, temperature, beam, tokens, frames)

    def _is_mel(self, window: TorchFeatures) -> bool:
        """A log-mel (n_mels rows) or, for a retry, an encoder output (frames / 2 rows: a
        multiple of 100 up to 1500, never 80 or 128)."""
        return int(window.shape[-2]) == int(self.whisper.dims.n_mels)

    def _frames(self, window: TorchFeatures) -> int:
        """Mel frames the window covers."""
        return int(window.shape[-1]) if self._is_mel(window) else 2 * int(window.shape[-2])

    def _decode_batch(self, key: Hashable, items: Sequence[Item]) -> list[DecodingResult]:
        """One forward pass for every parked window of one key (runs in the leader thread)."""
        dtype = torch.float16 if self._fp16 else torch.float32
        with torch.inference_mode():
            features = self._encode([w for w, _ in items], dtype)
            if key == ("detect",):
                return self._detect(features)
            assert isinstance(key, tuple)
            _, language, task, temperature, beam, tokens, _ = key
            options = self._options(language, task, temperature, beam, tokens)
            task_ = BatchedDecodingTask(self.whisper, options, [p for _, p in items])
            return task_.run(features)

    def _encode(self, windows: list[TorchFeatures], dtype: torch.dtype) -> torch.Tensor:
        """Encoder output for every window; retries arrive already encoded."""
        is_mel = [self._is_mel(w) for w in windows]
        encoded: list[torch.Tensor | None] = [
            None if m else w.to(dtype) for w, m in zip(windows, is_mel, strict=True)
        ]
        mels = [w for w, m in zip(windows, is_mel, strict=True) if m]
        if mels:
            fresh = iter(self._encoder(mels, dtype))
            encoded = [e if e is not None else next(fresh) for e in encoded]
        return torch.stack([e for e in encoded if e is not None])

    def _encoder(self, mels: list[TorchFeatures], dtype: torch.dtype) -> list[torch.Tensor]:
        """Encoder outputs, `ENCODE_BATCH` windows per pass (see `ENCODE_BATCH`)."""
        outputs: list[torch.Tensor] = []
        for start in range(0, len(mels), ENCODE_BATCH):
            chunk = torch.stack(mels[start : start + ENCODE_BATCH]).to(dtype)
            outputs += list(encode(self.whisper.encoder, chunk))
        return outputs

    def _detect(self, features: torch.Tensor) -> list[DecodingResult]:
        with self._hooked:
            _, probs = self.whisper.detect_language(features)
        return [
            DecodingResult(audio_features=f, language=max(p, key=p.get))
            for f, p in zip(features, probs, strict=True)
        ]

    def _options(
        self, language: str, task: str, temperature: float, beam: int, tokens: int | None
    ) -> DecodingOptions:
        """faster-whisper's defaults: beam search at 0, best-of-5 sampling when hotter;
        a beam of 1 is greedy (openai-whisper refuses `beam_size=1` with `patience`)."""
        search: dict[str, Any] = (
            ({"beam_size": beam, "patience": 1.0} if beam > 1 else {})
            if temperature == 0
            else {"best_of": 5}
        )
        return DecodingOptions(
            task=task,
            language=language,
            temperature=temperature,
            fp16=self._fp16,
            sample_len=tokens,
            **search,
        )


class _Encoded:
    """The model as openai-whisper's word alignment calls it, `model(mel, tokens)`, handed
    the window's encoder output as its `mel`: the decode already encoded the window, so
    encoding it again would double the step's encoder work, and `Whisper.forward` would
    take whole 30 s windows only."""

    def __init__(self, whisper: Whisper) -> None:
        self._whisper = whisper

    def __call__(self, encoded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self._whisper.decoder(tokens, encoded)
        return logits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._whisper, name)


def decoder_shape(whisper: Whisper) -> DecoderShape:
    """The loaded model's decoder, for the batch budget (float16 on CUDA, else float32)."""
    dims = whisper.dims
    value_bytes = 2 if whisper.device.type == "cuda" else 4
    return DecoderShape(
        dims.n_text_layer, dims.n_text_state, value_bytes, dims.n_audio_ctx, OPENAI_WHISPER_OVERHEAD
    )


def free_gpu_bytes(device: torch.device) -> int | None:
    """Free memory on the model's GPU (after the model was loaded); None on CPU."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def load(settings: WorkerSettings) -> OpenAIWhisperEngine:
    device = pick_device(settings.device)
    started = time.perf_counter()
    path = ensure_checkpoint(settings.model, settings.model_cache_dir)
    whisper = load_checkpoint(path, device)
    parallel = parallel_batches(settings.parallel_batches, device.type)
    threads = threads_per_batch(settings.cpu_threads, parallel)
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)  # per forward thread: libgomp gives each its own team
    metrics.MODEL_LOADS.labels(engine="openai-whisper", model=settings.model).inc()
    max_batch = plan_batch(
        settings.max_batch,
        settings.batch_memory_mb,
        device.type,
        decoder_shape(whisper),
        lambda: free_gpu_bytes(device),
        parallel,
    )
    log.info(
        "loaded openai-whisper model %s from %s on %s in %.1f s",
        settings.model,
        path,
        device,
        time.perf_counter() - started,
    )
    return OpenAIWhisperEngine(
        whisper,
        settings.model,
        device.type,
        settings.beam_size,
        max_batch,
        settings.batch_wait_ms / 1000,
        parallel,
    )
