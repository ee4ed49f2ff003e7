"""The worker's resampler gives the engine exactly what faster-whisper's own decoder would.

Reference: `faster_whisper.audio.decode_audio()` on a WAV file of the same PCM. Equality
is exact (bit for bit), whatever the packet size, so a streamed file and the file itself
produce the same transcript.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faster_whisper.audio import decode_audio

from tests.worker_support import write_wav
from whisperfarm.errors import BadPacket
from whisperfarm.packets import AudioFormat, split_packets
from workers.audio import SAMPLE_RATE, Resampler, to_float32
from workers.pcm_buffer import PcmBuffer


def signal(audio: AudioFormat, seconds: float = 2.0) -> bytes:
    """A chirp plus a little noise, different in every channel."""
    n = round(audio.sample_rate * seconds)
    t = np.arange(n) / audio.sample_rate
    rng = np.random.default_rng(audio.sample_rate + audio.channels)
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)[:, None]
    samples = chirp + 0.05 * rng.standard_normal((n, audio.channels))
    if audio.format == "s16le":
        return (samples * 32767).astype(np.int16).tobytes()
    return samples.astype(np.float32).tobytes()


def resample(audio: AudioFormat, packets: list[bytes]) -> np.ndarray:
    """What an engine gets: the packets' s16 output, buffered, then made float32."""
    resampler = Resampler(audio)
    buffer = PcmBuffer()
    for pcm in [resampler.feed(p) for p in packets] + [resampler.flush()]:
        assert pcm.dtype == np.int16
        buffer.append(pcm)
    return to_float32(buffer.view())


@pytest.mark.parametrize(
    "audio",
    [
        AudioFormat(16_000, 1, "s16le"),
        AudioFormat(44_100, 2, "s16le"),
        AudioFormat(22_050, 1, "f32le"),
        AudioFormat(8_000, 1, "s16le"),
        AudioFormat(48_000, 6, "s16le"),
        AudioFormat(192_000, 3, "f32le"),
    ],
    ids=lambda a: f"{a.sample_rate}Hz-{a.channels}ch-{a.format}",
)
def test_packets_resample_exactly_like_decode_audio(audio: AudioFormat, tmp_path: Path) -> None:
    pcm = signal(audio)
    wav = tmp_path / "ref.wav"
    write_wav(wav, pcm, audio)
    expected = decode_audio(str(wav))
    got = resample(audio, split_packets(pcm, audio))
    assert got.dtype == np.float32
    assert len(got) == len(expected) == round(2.0 * SAMPLE_RATE)
    assert np.array_equal(got, expected)


def test_packet_size_does_not_matter() -> None:
    audio = AudioFormat(44_100, 2, "s16le")
    pcm = signal(audio, 1.5)
    odd = [pcm[i : i + 4 * 313] for i in range(0, len(pcm), 4 * 313)]
    assert np.array_equal(resample(audio, odd), resample(audio, [pcm]))


def test_flush_returns_the_tail_once() -> None:
    audio = AudioFormat(44_100, 1, "s16le")
    resampler = Resampler(audio)
    fed = resampler.feed(signal(audio, 1.0))
    tail = resampler.flush()
    assert len(tail) > 0 and len(fed) + len(tail) == SAMPLE_RATE
    assert len(resampler.flush()) == 0


def test_bad_packets_are_refused() -> None:
    resampler = Resampler(AudioFormat(16_000, 2, "s16le"))
    assert len(resampler.feed(b"")) == 0
    with pytest.raises(BadPacket, match="whole number of 4-byte frames"):
        resampler.feed(b"\x00" * 6)
    resampler.flush()
    with pytest.raises(BadPacket, match="after the end"):
        resampler.feed(b"\x00" * 4)


def test_16k_mono_s16_skips_the_filter_bit_for_bit() -> None:
    """The fast path for audio already in the engine's format gives PyAV's exact output."""
    audio = AudioFormat(16_000, 1, "s16le")
    pcm = signal(audio, 1.5)
    fast, filtered = Resampler(audio), Resampler(audio)
    filtered._identity = False
    assert fast._identity
    out = [np.concatenate([r.feed(pcm[i : i + 2000]) for i in range(0, len(pcm), 2000)]
                          + [r.flush()]) for r in (fast, filtered)]  # fmt: skip
    assert np.array_equal(out[0], out[1])


def test_buffer_grows_drops_and_never_rewrites_a_view() -> None:
    """A window's view stays valid while packets arrive and after its audio is dropped."""
    buffer = PcmBuffer()
    buffer.append(np.arange(10, dtype=np.int16))
    first = buffer.view()
    buffer.append(np.arange(10, 20_000, dtype=np.int16))  # grows past the first second
    assert buffer.capacity >= 20_000 and len(buffer) == 20_000
    assert np.array_equal(first, np.arange(10))
    whole = buffer.view()
    buffer.drop(19_990)
    assert np.array_equal(buffer.view(), np.arange(19_990, 20_000))
    assert np.array_equal(whole, np.arange(20_000, dtype=np.int16))
    buffer.append(np.zeros(5, dtype=np.int16))
    assert len(buffer) == 15 and np.array_equal(whole[:3], [0, 1, 2])
    buffer.drop(100)
    assert len(buffer) == 0 and len(buffer.view()) == 0


def test_to_float32_is_decode_audios_division() -> None:
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    got = to_float32(pcm)
    assert got.dtype == np.float32
    assert np.array_equal(got, pcm.astype(np.float32) / 32768.0)
