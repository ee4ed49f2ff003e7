"""A real worker process with the bundled `tiny.en` model, driven by a fake broker.

Real speech goes in as 1000-frame packets in several layouts: espeak-ng sentences (mono,
44.1 kHz stereo, float32) and a real recording. Transcripts must be close to what was
said, equal to what faster-whisper gives on the same file, decoded side by side, with
the model loaded exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.exposition import metric_sum, samples
from tests.speech import FIXTURE_DIR, SENTENCES, fixture_clips, synthesize, word_error_rate
from tests.worker_support import (
    WorkerRig,
    final_body,
    interleave_streams,
    read_wav,
    worker_rig,
    write_wav,
)
from whisperfarm import wire
from whisperfarm.packets import AudioFormat
from whisperfarm.wire import Command, Message

pytestmark = pytest.mark.model

CHUNK_SECONDS = 10
"""Small windows, so streams longer than 10 s are decoded while they upload."""
MAX_WER = 0.15
"""Every sentence in `SENTENCES` transcribes at WER 0 on tiny.en (see tests/speech.py)."""
JFK = "jfk.wav"

Stream = tuple[bytes, AudioFormat]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stream]:
    """Streams by name: three sentences in three layouts, and a real recording."""
    tmp = tmp_path_factory.mktemp("speech")
    mono, mono_audio = read_wav(synthesize(SENTENCES[0], tmp / "mono.wav"))
    stereo = read_wav(synthesize(SENTENCES[1], tmp / "stereo.wav", rate=44_100, channels=2))
    s16, rate = read_wav(synthesize(SENTENCES[2], tmp / "f32.wav"))
    f32 = (np.frombuffer(s16, dtype=np.int16).astype(np.float32) / 32768.0).tobytes()
    return {
        "mono-s16": (mono, mono_audio),
        "stereo-44k": stereo,
        "mono-f32": (f32, AudioFormat(rate.sample_rate, 1, "f32le")),
        "real-voice": read_wav(FIXTURE_DIR / JFK),
    }


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """Every sentence in a row, half a second apart: about 20 s, two chunks and more."""
    tmp = tmp_path_factory.mktemp("story")
    parts = [read_wav(synthesize(text, tmp / f"{i}.wav")) for i, text in enumerate(SENTENCES)]
    audio = parts[0][1]
    gap = bytes(audio.sample_rate // 2 * audio.bytes_per_frame)
    return b"".join(pcm + gap for pcm, _ in parts), audio


def reference(name: str) -> str:
    said = dict(zip(["mono-s16", "stereo-44k", "mono-f32"], SENTENCES, strict=False))
    return said.get(name) or dict((p.name, t) for p, t in fixture_clips())[JFK]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerRig]:
    yield from worker_rig(
        tmp_path_factory.mktemp("worker"),
        "--engine", "faster-whisper", "--model", "tiny.en", "--slots", "4",
        "--chunk-seconds", str(CHUNK_SECONDS),
    )  # fmt: skip


def test_streams_at_once_in_every_layout(tiny: WorkerRig, speech: dict[str, Stream]) -> None:
    broker = tiny.broker
    interleave_streams(broker, speech)
    broker.send(wire.audio("mono-s16", 7, b"\x7f" * 2000))  # another attempt's audio: dropped
    finals = {job: final_body(broker.expect(Command.FINAL, job, timeout=120)[1]) for job in speech}
    for job, (pcm, audio) in speech.items():
        final = finals[job]
        assert word_error_rate(reference(job), final["text"]) <= MAX_WER, (job, final["text"])
        assert final["language"] == "en" and final["attempt"] == 1
        seconds = len(pcm) / audio.bytes_per_frame / audio.sample_rate
        assert final["duration"] == pytest.approx(seconds, abs=1e-3)
        segments = [m.body for m in broker.results_for(job) if m.command is Command.SEGMENT]
        assert [{**s, "attempt": 1} for s in final["segments"]] == segments
    starts = [float(f["decode_started"]) for f in finals.values()]
    ends = [float(f["decode_ended"]) for f in finals.values()]
    assert max(starts) < min(ends), "the streams were not decoded side by side"


def test_matches_faster_whisper_on_the_same_file(
    tiny: WorkerRig, speech: dict[str, Stream], tmp_path: Path
) -> None:
    """Shorter than a chunk: one engine call, as a user would make with faster-whisper's
    voice-activity filter (what `start.vad` does by default); silence around the speech
    gives the filter something to take out, and the times must come back the same."""
    from faster_whisper import WhisperModel

    from workers.models import resolve_model
    from workers.speech_clip import FILE_VAD

    speech_pcm, audio = speech["stereo-44k"]
    frame = audio.bytes_per_frame
    pcm = (
        bytes(2 * audio.sample_rate * frame)
        + speech_pcm
        + bytes(5 * audio.sample_rate * frame // 2)
    )
    assert len(pcm) / frame / audio.sample_rate < CHUNK_SECONDS
    wav = tmp_path / "stereo.wav"
    write_wav(wav, pcm, audio)
    tiny.broker.stream("same-file", pcm, audio)
    final = final_body(tiny.broker.expect(Command.FINAL, "same-file", timeout=120)[1])
    model = WhisperModel(str(resolve_model("tiny.en", tmp_path)), device="cpu", compute_type="int8")
    raw, _ = model.transcribe(str(wav), beam_size=5, vad_filter=True, vad_parameters=FILE_VAD)
    expected = [(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in raw]
    assert [(s["start"], s["end"], s["text"]) for s in final["segments"]] == expected


def test_long_stream_is_decoded_while_it_uploads(tiny: WorkerRig, story: Stream) -> None:
    broker = tiny.broker
    pcm, audio = story
    tail = 2 * audio.sample_rate * audio.bytes_per_frame  # sent after the first SEGMENT
    broker.assign("long", audio)
    broker.packets("long", pcm[:-tail], audio)
    broker.expect(Command.SEGMENT, "long", timeout=120)  # committed before the upload ended
    broker.packets("long", pcm[-tail:], audio)
    broker.send(Message(Command.END, "long", {"attempt": 1}))
    final = final_body(broker.expect(Command.FINAL, "long", timeout=120)[1])
    segments: list[dict[str, Any]] = final["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments)))
    starts = [float(s["start"]) for s in segments]
    assert starts == sorted(starts)
    assert float(segments[-1]["end"]) <= len(pcm) / audio.bytes_per_frame / audio.sample_rate + 0.5
    assert word_error_rate(" ".join(SENTENCES), final["text"]) <= MAX_WER, final["text"]


def test_model_loaded_once_and_metrics_served(tiny: WorkerRig, speech: dict[str, Stream]) -> None:
    tiny.broker.stream("metrics", *speech["mono-s16"])
    tiny.broker.expect(Command.FINAL, "metrics", timeout=120)
    text = tiny.metrics()
    loads = metric_sum(text, "whisperfarm_worker_model_loads_total",
                       {"engine": "faster-whisper", "model": "tiny.en"})  # fmt: skip
    assert loads == 1
    assert metric_sum(text, "whisperfarm_worker_slots") == 4
    assert metric_sum(text, "whisperfarm_worker_inference_seconds_count") >= 1
    assert metric_sum(text, "whisperfarm_worker_audio_decoded_seconds_total") > 3
    done = metric_sum(text, "whisperfarm_worker_streams_finished_total", {"outcome": "done"})
    assert done >= 1
    assert "whisperfarm_worker_real_time_factor_bucket" in text
    assert "whisperfarm_worker_decode_batch_size_bucket" in text
    assert [s.value for s in samples(text, "whisperfarm_worker_gpu_memory_bytes")] == [0]  # CPU


def test_faster_whisper_window_lines_stay_out_of_the_default_log(
    tiny: WorkerRig, speech: dict[str, Stream]
) -> None:
    tiny.broker.stream("quiet", *speech["mono-s16"])
    tiny.broker.expect(Command.FINAL, "quiet", timeout=120)
    log = tiny.worker.output()
    assert "loaded faster-whisper model" in log  # the worker's own INFO lines are there
    assert "Processing audio with duration" not in log


def test_heartbeats_arrive(tiny: WorkerRig) -> None:
    peer = tiny.broker.peer
    tiny.broker.unread.clear()
    for _ in range(2):
        _, beat = tiny.broker.expect(Command.HEARTBEAT, sender=peer, timeout=5)
        assert beat.body["busy"] == 0
    assert tiny.broker.peer == peer  # the same connection all along: no reconnects
    assert tiny.broker.errors == []
