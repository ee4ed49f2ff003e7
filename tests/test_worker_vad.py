"""Voice activity on file streams: a real worker with tiny.en, on both model engines.

Silence, white noise and mains hum must come back without a word and without a decode;
speech padded with long silence must give the words of the speech alone, at times shifted
by the padding; `vad: false` must decode everything, as before voice activity existed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.exposition import metric_sum
from tests.speech import FIXTURE_DIR
from tests.worker_support import WorkerRig, final_body, interleave_streams, read_wav, worker_rig
from whisperfarm.packets import AudioFormat
from whisperfarm.wire import Command

pytestmark = pytest.mark.model

RATE = 16_000
MONO = AudioFormat(RATE, 1, "s16le")
PADDING_S = 20.0
DECODED = "whisperfarm_worker_audio_decoded_seconds_total"

Stream = tuple[bytes, AudioFormat]


def silence(seconds: float) -> bytes:
    return bytes(round(seconds * RATE) * 2)


def white_noise(seconds: float) -> Stream:
    """Loud enough to hear well (-20 dBFS), in a layout the worker resamples (44.1 kHz stereo)."""
    rate = 44_100
    noise = np.random.default_rng(7).normal(0.0, 0.1 * 32767, (round(seconds * rate), 2))
    return noise.clip(-32768, 32767).astype("<i2").tobytes(), AudioFormat(rate, 2, "s16le")


def hum(seconds: float) -> bytes:
    """50 Hz mains hum with its odd harmonics, as a bad cable picks it up."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((50, 0.3), (150, 0.1), (250, 0.05)))
    return (np.asarray(wave) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def tiny(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerRig]:
    """A worker with the default window (60 s): each stream here is one window."""
    cache = tmp_path_factory.getbasetemp() / "models"  # the openai checkpoint, converted once
    yield from worker_rig(
        tmp_path_factory.mktemp("worker"),
        "--engine", request.param, "--model", "tiny.en", "--model-cache-dir", str(cache),
        "--slots", "3",
    )  # fmt: skip


def finals(rig: WorkerRig, streams: dict[str, Stream], **start: Any) -> dict[str, dict[str, Any]]:
    """Send the streams side by side (ASSIGN with `start`'s options) and collect the FINALs."""
    broker = rig.broker
    interleave_streams(broker, streams, **start)
    return {job: final_body(broker.expect(Command.FINAL, job, timeout=180)[1]) for job in streams}


def test_silence_noise_and_hum_give_no_words_and_no_decode(tiny: WorkerRig) -> None:
    before = metric_sum(tiny.metrics(), DECODED)
    streams = {"silence": (silence(30), MONO), "noise": white_noise(30), "hum": (hum(30), MONO)}
    for job, final in finals(tiny, streams).items():
        assert (final["text"], final["segments"]) == ("", []), job
        assert not [m for m in tiny.broker.results_for(job) if m.command is Command.SEGMENT]
        assert final["duration"] == pytest.approx(30.0)
    assert metric_sum(tiny.metrics(), DECODED) == before


def test_speech_padded_with_silence_gives_the_same_words_shifted(tiny: WorkerRig) -> None:
    jfk, audio = read_wav(FIXTURE_DIR / "jfk.wav")
    assert audio == MONO
    padding = silence(PADDING_S)
    got = finals(tiny, {"alone": (jfk, MONO), "padded": (padding + jfk + padding, MONO)})
    alone, padded = got["alone"]["segments"], got["padded"]["segments"]
    assert got["alone"]["text"] and got["padded"]["text"] == got["alone"]["text"]
    assert [s["text"] for s in padded] == [s["text"] for s in alone]
    for ours, theirs in zip(padded, alone, strict=True):
        assert ours["start"] - theirs["start"] == pytest.approx(PADDING_S, abs=0.1)
        assert ours["end"] - theirs["end"] == pytest.approx(PADDING_S, abs=0.1)
        assert ours["seek"] / 100 <= ours["start"]  # where its Whisper window began
        assert ours["seek"] / 100 >= PADDING_S - 1


def test_vad_false_decodes_silence_as_before(tiny: WorkerRig) -> None:
    before = metric_sum(tiny.metrics(), DECODED)
    final = finals(tiny, {"no-vad": (silence(30), MONO)}, vad=False)["no-vad"]
    assert final["duration"] == pytest.approx(30.0)
    assert metric_sum(tiny.metrics(), DECODED) - before == pytest.approx(30.0)
    assert final["decode_started"] < final["decode_ended"]
