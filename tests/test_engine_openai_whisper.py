"""The openai-whisper engine on the bundled tiny.en (converted from CTranslate2 on first use).

Its transcripts must match the faster-whisper engine's on the same weights (WER between
them ≤ 2 % over the test set), a request's token context must be honoured, and a real
worker process must serve it end to end with the model loaded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.exposition import metric_sum, samples
from tests.speech import SENTENCES, fixture_clips, synthesize, word_error_rate
from tests.worker_support import WorkerRig, final_body, read_wav, worker_rig
from whisperfarm.wire import Command
from workers import engines
from workers.engines import LIVE_FIT_FRAMES, DecodeRequest, DecodeResult, Engine, fitted_frames
from workers.settings import WorkerSettings

pytestmark = pytest.mark.model


def load_audio(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    audio: np.ndarray = decode_audio(str(path), sampling_rate=16_000)
    return audio


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, str]]:
    """Real recordings and espeak-ng sentences, as 16 kHz audio with their references."""
    tmp = tmp_path_factory.mktemp("speech")
    spoken = [(synthesize(text, tmp / f"{i}.wav"), text) for i, text in enumerate(SENTENCES)]
    return [(load_audio(path), text) for path, text in [*fixture_clips(), *spoken]]


def engine(name: str, cache: Path, **settings: Any) -> Engine:
    return engines.load(
        WorkerSettings(engine=name, model="tiny.en", model_cache_dir=cache, **settings)
    )


@pytest.fixture(scope="module")
def openai_engine(cache: Path) -> Engine:
    return engine("openai-whisper", cache)


def text_of(result: DecodeResult) -> str:
    return " ".join(s.text.strip() for s in result.segments)


def test_matches_the_faster_whisper_engine(
    openai_engine: Engine, cache: Path, test_set: list[tuple[np.ndarray, str]]
) -> None:
    faster = engine("faster-whisper", cache)
    requests = [DecodeRequest(audio) for audio, _ in test_set]
    ours = [text_of(r) for r in openai_engine.transcribe(requests)]  # batched, as it runs
    theirs = [text_of(faster.transcribe([r])[0]) for r in requests]
    pairs = list(zip(ours, theirs, strict=True))
    assert word_error_rate(" ".join(theirs), " ".join(ours)) <= 0.02, pairs
    for text, (_, reference) in zip(ours, test_set, strict=True):
        assert word_error_rate(reference, text) <= 0.15, (reference, text)


def test_result_shape_language_and_timing(
    openai_engine: Engine, test_set: list[tuple[np.ndarray, str]]
) -> None:
    audio, _ = test_set[0]  # jfk.wav: 11 s
    (result,) = openai_engine.transcribe([DecodeRequest(audio)])
    assert result.language == "en"  # an .en model is English without detection
    ends = [s.end for s in result.segments]
    assert ends == sorted(ends) and 0 < ends[-1] <= len(audio) / 16_000 + 0.5
    timestamp_begin = 50363  # tiny.en: <|0.00|>
    assert all(s.tokens and s.tokens[0] >= timestamp_begin for s in result.segments)
    assert openai_engine.transcribe([DecodeRequest(audio[:0])])[0].segments == []


def test_context_tokens_are_the_prompt(
    openai_engine: Engine, test_set: list[tuple[np.ndarray, str]]
) -> None:
    """The committed tokens of earlier windows condition the next one (as in faster-whisper):
    a context that spells a word another way makes the model follow that spelling."""
    from whisper.tokenizer import get_tokenizer

    audio, _ = test_set[1]  # "... Mr. John Dashwood ..."
    tokenizer = get_tokenizer(False)
    context = tuple(tokenizer.encode(" MISTER JOHN DASHWOOD HAD THEN LEISURE"))
    (plain,) = openai_engine.transcribe([DecodeRequest(audio)])
    (prompted,) = openai_engine.transcribe([DecodeRequest(audio, context=context)])
    assert text_of(plain) != text_of(prompted)
    assert word_error_rate(text_of(plain), text_of(prompted)) <= 0.5


def test_words_and_decoding_figures_agree_with_the_faster_whisper_engine(
    openai_engine: Engine, cache: Path, test_set: list[tuple[np.ndarray, str]]
) -> None:
    """openai-whisper's own word timing, run per window of the batched loop (two requests
    at once: the alignment passes take turns on the shared decoder)."""
    audio, _ = test_set[0]  # jfk.wav
    request = DecodeRequest(audio, word_timestamps=True)
    ours, again = openai_engine.transcribe([request, request])
    (theirs,) = engine("faster-whisper", cache).transcribe([request])
    words = [w for s in ours.segments for w in s.words or ()]
    assert words == [w for s in again.segments for w in s.words or ()]
    expected = [w for s in theirs.segments for w in s.words or ()]
    assert [w.word for w in words] == [w.word for w in expected]
    assert all(abs(a.start - b.start) <= 0.1 and abs(a.end - b.end) <= 0.1
               for a, b in zip(words, expected, strict=True))  # fmt: skip
    for segment in ours.segments:
        assert segment.seek == 0 and segment.temperature == 0.0 and segment.tokens
        assert segment.avg_logprob is not None and segment.avg_logprob < 0
        assert segment.compression_ratio is not None and segment.compression_ratio > 0
        assert segment.no_speech_prob is not None and 0 <= segment.no_speech_prob <= 1
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words or ())


def test_fitted_windows_encode_only_their_audio_and_agree_with_the_faster_whisper_engine(
    openai_engine: Engine,
    cache: Path,
    test_set: list[tuple[np.ndarray, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Live steps' windows (`fit_window`) of different lengths, and a whole one, at once:
    each is encoded at its fitted length, and the text and word times are those of the
    faster-whisper engine's fitted windows."""
    from workers.engines import openai_whisper
    from workers.engines.torch_decode import encode as torch_encode

    encoded: list[int] = []

    def spy(encoder: Any, mel: Any) -> Any:
        encoded.append(int(mel.shape[-1]))
        return torch_encode(encoder, mel)

    monkeypatch.setattr(openai_whisper, "encode", spy)
    fitted = [
        DecodeRequest(audio, word_timestamps=True, beam_size=1, fit_window=LIVE_FIT_FRAMES)
        for audio, _ in test_set[:3]
    ]
    *ours, whole = openai_engine.transcribe([*fitted, DecodeRequest(test_set[0][0])])
    faster = engine("faster-whisper", cache)
    theirs = [faster.transcribe([r])[0] for r in fitted]
    lengths = [fitted_frames(len(r.source), LIVE_FIT_FRAMES) for r in fitted]
    assert sorted(set(encoded)) == sorted({*lengths, 3000}) and min(lengths) < 3000
    assert text_of(whole) == text_of(openai_engine.transcribe([DecodeRequest(test_set[0][0])])[0])
    joined = [" ".join(text_of(r) for r in results) for results in (ours, theirs)]
    assert word_error_rate(joined[1], joined[0]) <= 0.02, joined
    words = [w for s in ours[0].segments for w in s.words or ()]
    expected = [w for s in theirs[0].segments for w in s.words or ()]
    assert [w.word for w in words] == [w.word for w in expected]
    assert all(abs(a.end - b.end) <= 0.1 for a, b in zip(words, expected, strict=True))


def test_decoding_starts_at_the_requested_temperature(
    openai_engine: Engine, test_set: list[tuple[np.ndarray, str]]
) -> None:
    audio, _ = test_set[0]
    (result,) = openai_engine.transcribe([DecodeRequest(audio, temperature=0.6)])
    temperatures = [s.temperature for s in result.segments]
    assert temperatures and all(t is not None and t >= 0.6 for t in temperatures)


# ---- a real worker process -------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_rig(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Iterator[WorkerRig]:
    yield from worker_rig(
        tmp_path_factory.mktemp("worker"),
        "--engine", "openai-whisper", "--model", "tiny.en", "--model-cache-dir", str(cache),
        "--slots", "2", "--chunk-seconds", "10",
    )  # fmt: skip


def test_worker_process_serves_the_engine(openai_rig: WorkerRig) -> None:
    clip, reference = fixture_clips()[0]
    pcm, audio = read_wav(clip)
    assert openai_rig.ready.body["engine"] == "openai-whisper"
    assert openai_rig.ready.body["device"] == "cpu"
    openai_rig.broker.stream("jfk", pcm, audio)
    final = final_body(openai_rig.broker.expect(Command.FINAL, "jfk", timeout=180)[1])
    assert word_error_rate(reference, final["text"]) <= 0.15, final["text"]
    assert final["language"] == "en"
    text = openai_rig.metrics()
    loads = metric_sum(
        text,
        "whisperfarm_worker_model_loads_total",
        {"engine": "openai-whisper", "model": "tiny.en"},
    )
    assert loads == 1
    assert [s.value for s in samples(text, "whisperfarm_worker_gpu_memory_bytes")] == [0]  # CPU
    assert metric_sum(text, "whisperfarm_worker_forward_seconds_count") >= 1
