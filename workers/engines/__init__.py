"""The one small engine interface: `load(settings) -> Engine`, `Engine.transcribe(batch)`.

An engine turns 16 kHz mono audio into timed text. It never sees stream ids, packets or
the wire: the worker owns streams and hands the engine plain decode requests, so adding
an engine is one module with a `load(settings)` function and nothing else. Modules are
imported only when picked, so the null engine never pays for importing CTranslate2.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast

import numpy as np

from whisperfarm.errors import EngineError
from workers.audio import SAMPLE_RATE, Pcm, Samples, to_float32

if TYPE_CHECKING:
    from workers.settings import WorkerSettings

Task = Literal["transcribe", "translate"]

ENGINES: dict[str, str] = {
    "faster-whisper": "workers.engines.faster_whisper",
    "openai-whisper": "workers.engines.openai_whisper",
    "null": "workers.engines.null",
}
"""Engine name → module with `load(settings) -> Engine`."""

OPENAI_WHISPER = "openai-whisper==20250625"
"""The openai-whisper release the engine extends (`torch_decode` subclasses its decoding task);
the Makefile and the Dockerfile install the same one."""

INSTALL: dict[str, str] = {
    "openai-whisper": (
        f"pip install 'whisperfarm[openai-whisper]' && pip install --no-deps {OPENAI_WHISPER}"
    ),
}
"""The one command (README: Engines) that adds an engine left out of the base install. Two pip
calls because an extra cannot say `--no-deps`: the extra brings openai-whisper's runtime
requirements, the second call openai-whisper itself without the triton its metadata asks for
on Linux (only its CUDA word-timestamp kernels use it, and PyPI's CUDA torch brings it; without
it the engine refuses word timestamps on a GPU, naming it)."""

_OWN_PACKAGES = ("whisperfarm", "workers", "broker", "gui", "source")


TEMPERATURE_STEP = 0.2
"""How much hotter each retry of a window decodes (OpenAI's and faster-whisper's step)."""


def fallback_temperatures(first: float, fallback: bool = True) -> tuple[float, ...]:
    """The temperatures a window is decoded at, in order, until its text looks right:
    from `first` up to 1.0 by `TEMPERATURE_STEP`, as OpenAI's `transcribe` builds them
    (only `first` without `fallback`)."""
    if not fallback:
        return (first,)
    steps = int((1.0 - first) / TEMPERATURE_STEP + 1e-9)
    return tuple(round(first + TEMPERATURE_STEP * i, 6) for i in range(steps + 1))


@dataclass(frozen=True)
class DecodeRequest:
    """One window of one stream's audio to decode."""

    source: Samples | Pcm
    """16 kHz mono: float32 in [-1, 1], or the stream buffer's int16 (see `audio`)."""
    language: str | None = None
    """Language code, or None to let the engine detect it."""
    task: Task = "transcribe"
    initial_prompt: str | None = None
    """Text that came just before this audio (keeps style and names consistent)."""
    context: tuple[int, ...] = ()
    """The engine's own tokens for the text just before this audio (`DecodedSegment.tokens`
    of the committed segments). An engine that has them uses them instead of
    `initial_prompt`: it is how Whisper conditions one 30 s window on the previous one
    inside a single decode, timestamps included — a text-only prompt makes small models
    stop predicting timestamps. Engines without tokens leave this empty."""
    temperature: float = 0.0
    """The first decoding temperature (`fallback_temperatures`)."""
    word_timestamps: bool = False
    beam_size: int | None = None
    """The beam at temperature 0; None: the engine's own (`--beam-size`). Live steps decode
    greedily: a step is redone a second later anyway."""
    fallback: bool = True
    """Decode again hotter when the text looks wrong (`fallback_temperatures`). A live step
    that commits nothing by itself skips it: a second later it is decoded again anyway."""
    max_new_tokens: int | None = None
    """At most this many tokens per window (None: Whisper's own limit, 224). A live step's
    audio holds a few seconds of speech: a decoder that loops ("and so and so …") would
    otherwise run to the limit, a second or more of CPU for nothing."""
    fit_window: int | None = None
    """Encode only the audio, rounded up and at least this many mel frames (`fitted_frames`),
    not a whole zero-padded 30 s window: the encoder's cost follows its input, and a live
    step's audio is a few seconds. File windows stay whole: fitted ones made tiny.en skip
    words of some files on some hosts' CPUs (`bench/RESULTS.md`). None: whole
    windows. Both model engines honour it (openai-whisper with `torch_decode.encode`)."""

    @property
    def audio(self) -> Samples:
        """The float32 samples, made from int16 the first time an engine reads them (in
        its decoding thread). The null engine never does: a load test's final windows
        (up to two chunks, minutes of audio) cost its workers no copy and no CPU taken
        from the broker they share a machine with. (Not `functools.cached_property`:
        before Python 3.12 it holds one lock for all instances, and the forward passes'
        threads would convert their windows one at a time.)"""
        converted: Samples | None = self.__dict__.get("_audio")
        if converted is None:
            if self.source.dtype == np.float32:
                converted = cast(Samples, self.source)
            else:
                converted = to_float32(cast(Pcm, self.source))
            object.__setattr__(self, "_audio", converted)  # frozen: a cache, not a field
        return converted

    @property
    def seconds(self) -> float:
        return len(self.source) / SAMPLE_RATE


FIT_STEP_FRAMES = 200
"""`fit_window` rounds the encoder's input up to whole steps of this many mel frames (2 s),
plus one: equal shapes across streams, so their passes can batch, and room after the last word."""


LIVE_FIT_FRAMES = 1000
"""A live step's shortest encoder input (10 s). The encoder's cost grows with its input, and
most live steps decode a few seconds; but shorter inputs cost words on some hosts' CPUs and
much shorter ones made the decoder loop (`bench/RESULTS.md`)."""
CLOSING_FIT_FRAMES = 1500
"""A closing live step's shortest encoder input (15 s). It commits all it decodes, with no
later decode to catch a word that a short input cost; one step per utterance, so its cost
shows little in the lags (`bench/RESULTS.md`)."""


def fitted_frames(samples: int, minimum: int) -> int:
    """Mel frames (10 ms) to encode for `samples` of audio, at least `minimum`."""
    return fitted_mel_frames(samples // (SAMPLE_RATE // 100) + 1, minimum)


def fitted_mel_frames(frames: int, minimum: int) -> int:
    """Mel frames to encode for `frames` of audio's mel, at least `minimum`."""
    return min(3000, max(minimum, (frames // FIT_STEP_FRAMES + 2) * FIT_STEP_FRAMES))


@dataclass(frozen=True)
class DecodedWord:
    """A word and its times (seconds from the start of the request's audio)."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class DecodedSegment:
    """Timed text; times are seconds from the start of the request's audio.

    The decoding figures are the engine's own for the window the segment came from
    (None where an engine has none): they are what OpenAI's `verbose_json` shows."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    """Engine-specific token ids of the segment, timestamps included (see `context`)."""
    seek: int | None = None
    """Where its window began, in mel frames (10 ms) from the start of the request."""
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    words: tuple[DecodedWord, ...] | None = None
    """With `DecodeRequest.word_timestamps`."""


@dataclass(frozen=True)
class DecodeResult:
    segments: list[DecodedSegment]
    language: str | None
    """Language given in the request, or the one the engine detected."""


class Engine(Protocol):
    """A loaded model. `transcribe` is called from several threads at once: the model
    engines batch those calls' windows across threads (`workers.batching`).

    An engine may also have `gpu_memory_bytes() -> int | None`, read by the
    `whisperfarm_worker_gpu_memory_bytes` gauge (None: unknown, the gauge reads NaN;
    absent: the gauge stays 0), and
    `concurrency: int`, how many requests are worth having inside `transcribe` at once
    (absent: one per slot). The worker queues the others' windows before they become
    requests: a queued window holds its int16 audio, not float32 audio, features and
    encoder outputs waiting for a forward pass that cannot take them anyway.

    And `wants_vad: bool` (absent: True), whether the worker should spare the engine a file
    stream's non-speech (`start.vad`, `workers.speech_clip`): False for the null engine,
    which has no model to hallucinate and no decode worth sparing, while scoring voice
    activity would cost its load tests (a thousand streams, on the broker's machine) the
    CPU they measure the broker with. Live streams ignore it: their voice activity also
    decides when an utterance ends (`workers.live`).
    """

    name: str
    model: str
    device: str

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode a batch; one result per request, in order. Blocking: run off the loop."""
        ...


def wants_vad(engine: Engine) -> bool:
    """`Engine.wants_vad`, True when the engine does not say."""
    return bool(getattr(engine, "wants_vad", True))


def load(settings: WorkerSettings) -> Engine:
    """Load the engine `settings.engine` names (and its model, once)."""
    module_name = ENGINES.get(settings.engine)
    if module_name is None:
        raise EngineError(
            f"unknown engine {settings.engine!r}; available: {', '.join(sorted(ENGINES))}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in _OWN_PACKAGES:
            raise  # a broken checkout, not a missing engine
        raise not_installed(settings.engine, exc) from None
    engine: Engine = module.load(settings)
    return engine


def not_installed(engine: str, exc: ModuleNotFoundError) -> EngineError:
    """One line that says what is missing and the command that installs it."""
    how = INSTALL.get(engine, "reinstall whisperfarm (pip install --force-reinstall whisperfarm)")
    return EngineError(
        f"the {engine} engine needs the Python module {exc.name!r}, which is not installed here; "
        f"install it with: {how}"
    )
