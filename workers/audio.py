"""Per-stream resampling of raw PCM packets to 16 kHz mono int16, and int16 → float32.

The resampler is PyAV's, configured exactly as `faster_whisper.audio.decode_audio`
configures it (s16, mono, 16 kHz; `to_float32` is its `/ 32768`), so a stream sent packet
by packet gives the engine the same samples it would get by decoding the original file
itself — which is what makes farm transcripts match a plain `WhisperModel.transcribe(path)`.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

from whisperfarm.errors import BadPacket
from whisperfarm.packets import AudioFormat

SAMPLE_RATE = 16_000
"""What every Whisper engine consumes."""
SEEK_HOP = SAMPLE_RATE // 100
"""Samples per mel frame (10 ms): the unit Whisper counts `seek` in."""

_AV_FORMATS = {"s16le": ("s16", np.int16), "f32le": ("flt", np.float32)}
_LAYOUTS = {1: "mono", 2: "stereo"}
"""Named layouts for 1–2 channels; more channels use FFmpeg's default layout for N."""

Samples = npt.NDArray[np.float32]
"""What engines take: 16 kHz mono float32 in [-1, 1]."""
Pcm = npt.NDArray[np.int16]
"""What the resampler gives and streams buffer: 16 kHz mono s16 (half of float32's bytes)."""


def to_float32(pcm: Pcm) -> Samples:
    """`decode_audio`'s `s16.astype(np.float32) / 32768.0`, bit for bit, in one array
    (dividing in place: `/` would allocate a second one)."""
    samples = pcm.astype(np.float32)
    samples /= 32768.0
    return samples


class Resampler:
    """Turns one stream's interleaved packets into 16 kHz mono s16, statefully.

    The filter keeps history between packets (resampling is a streaming FIR), so the
    same instance must see every packet of a stream in order, and `flush()` once at the
    end to get the samples still held in its delay line.
    """

    def __init__(self, audio: AudioFormat) -> None:
        self.audio = audio
        self._av_format, self._dtype = _AV_FORMATS[audio.format]
        self._layout = _LAYOUTS.get(audio.channels, f"{audio.channels}c")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._flushed = False
        self._identity = (audio.sample_rate, audio.channels, audio.format) == (
            SAMPLE_RATE,
            1,
            "s16le",
        )
        """16 kHz mono s16le is already what the engine wants: the filter would only copy
        it (bit for bit), at a per-packet cost that dominates a load test's worker."""

    def feed(self, pcm: bytes) -> Pcm:
        """Resample one packet of whole frames; returns what the filter lets out now."""
        if self._flushed:
            raise BadPacket("audio after the end of the stream")
        if len(pcm) % self.audio.bytes_per_frame:
            raise BadPacket(
                f"packet of {len(pcm)} bytes is not a whole number of "
                f"{self.audio.bytes_per_frame}-byte frames"
            )
        if not pcm:
            return np.zeros(0, dtype=np.int16)
        if self._identity:
            return np.frombuffer(pcm, dtype=np.int16)
        samples = np.frombuffer(pcm, dtype=self._dtype).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format=self._av_format, layout=self._layout)
        frame.sample_rate = self.audio.sample_rate
        frame.pts = None  # packets carry no timestamps; decode_audio drops them too
        return self._convert(self._resampler.resample(frame))

    def flush(self) -> Pcm:
        """Drain the filter at end of stream (the last few milliseconds live there)."""
        if self._flushed:
            return np.zeros(0, dtype=np.int16)
        self._flushed = True
        return self._convert(self._resampler.resample(None))

    @staticmethod
    def _convert(frames: list[av.AudioFrame]) -> Pcm:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        s16: Pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        return s16
