"""The speech helpers other tests trust: text normalisation, WER, synthesis and fixtures.

A bug here would not fail anything by itself; it would make transcription tests pass or
fail for the wrong reason. These tests are fast and need no model.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.speech import (
    FIXTURE_DIR,
    SENTENCES,
    fixture_clips,
    normalize_text,
    require_tool,
    synthesize,
    word_error_rate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello,   World!\n", "hello world"),
        ("Don't STOP—believing…", "dont stop believing"),
        ("don\u2019t", "dont"),
        ("cold-hearted and ill-disposed", "cold hearted and ill disposed"),
        ("Mr. Dashwood; (yes) “quoted”", "mr dashwood yes quoted"),
        ("Ten or 10?", "ten or 10"),
        ("Café au lait", "cafe au lait"),
        ("?!...", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_normalize_treats_apostrophes_and_hyphens_the_same_on_both_sides() -> None:
    assert normalize_text("It’s a well-known fact.") == normalize_text("its a well known fact")


def test_wer_ignores_case_and_punctuation() -> None:
    reference = "And so my fellow Americans, ask not what your country can do for you."
    hypothesis = "and so, my fellow americans ask not what your country can do for you"
    assert word_error_rate(reference, hypothesis) == 0.0


def test_wer_counts_word_errors() -> None:
    assert word_error_rate("the cat sat down", "the cat sat") == pytest.approx(0.25)
    assert word_error_rate("the cat sat down", "a cat sat up") == pytest.approx(0.5)
    assert word_error_rate("ten apples", "10 apples") == pytest.approx(0.5)
    assert word_error_rate("one two", "") == pytest.approx(1.0)


def test_wer_with_an_empty_reference() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate(" ... ", "") == 0.0
    assert word_error_rate("", "something was heard") == 1.0


def test_require_tool_finds_an_installed_tool() -> None:
    assert Path(require_tool("sh")).name == "sh"


def test_require_tool_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "no-such-tool-whisperfarm"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=missing):
        require_tool(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=missing):
        require_tool(missing)


@pytest.mark.parametrize(
    ("name", "rate", "channels", "want_rate", "want_channels", "codec"),
    [
        ("a.wav", None, None, 22_050, 1, "pcm_s16le"),
        ("a.wav", 16_000, None, 16_000, 1, "pcm_s16le"),
        ("a.flac", 44_100, 2, 44_100, 2, "flac"),
        ("a.mp3", None, None, 22_050, 1, "mp3"),
        ("a.m4a", 48_000, 2, 48_000, 2, "aac"),
        ("a.ogg", None, None, 48_000, 1, "opus"),
        ("a.opus", None, 2, 48_000, 2, "opus"),
        ("a.mp4", 44_100, 2, 44_100, 2, "aac"),
        ("a.webm", None, None, 48_000, 1, "opus"),
    ],
)
def test_synthesize_writes_decodable_speech(
    tmp_path: Path,
    name: str,
    rate: int | None,
    channels: int | None,
    want_rate: int,
    want_channels: int,
    codec: str,
) -> None:
    out = synthesize(SENTENCES[0], tmp_path / name, rate=rate, channels=channels)
    assert out == tmp_path / name
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.codec.canonical_name == codec
        assert audio.codec_context.sample_rate == want_rate
        assert audio.codec_context.channels == want_channels
        has_video = bool(container.streams.video)
        samples = np.concatenate(
            [frame.to_ndarray().reshape(-1) for frame in container.decode(audio)]
        )
    assert has_video == name.endswith((".mp4", ".webm"))
    seconds = samples.size / want_channels / want_rate
    assert 2.0 < seconds < 10.0, seconds  # a ~13-word sentence at 150 words per minute
    assert np.abs(samples.astype(np.float64)).max() > 0  # not silence


def test_synthesize_rejects_an_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.xyz"):
        synthesize("hello", tmp_path / "a.xyz")


def test_sentences_are_plain_words() -> None:
    assert len(SENTENCES) >= 3  # tests take the first three as separate streams
    for sentence in SENTENCES:
        words = normalize_text(sentence).split()
        assert 10 <= len(words) <= 20, sentence
        assert not any(ch.isdigit() for ch in sentence), sentence


def test_fixture_clips_are_small_real_speech_with_references() -> None:
    clips = fixture_clips()
    assert len(clips) >= 3
    assert len({path.stem for path, _ in clips}) == len(clips)  # outputs are named by stem
    for path, reference in clips:
        assert path.parent == FIXTURE_DIR and path.is_file(), path
        assert len(normalize_text(reference).split()) >= 10, reference
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            assert container.duration is not None
            assert 2.0 < container.duration / av.time_base <= 25.0, path
            assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (16_000, 1)
    total = sum(path.stat().st_size for path in FIXTURE_DIR.iterdir())
    assert total < 3 * 1024 * 1024, total
