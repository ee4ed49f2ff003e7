"""Packet framing: audio travels in packets of exactly 1000 frames.

A frame is one sample for every channel, so a packet's size in bytes depends on the
sample format and channel count announced in `start`. Only the last packet of a stream
may be shorter, and it must still hold whole frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from whisperfarm.errors import BadPacket, UnsupportedFormat

FRAMES_PER_PACKET = 1000
SampleFormat = Literal["s16le", "f32le"]
BYTES_PER_SAMPLE: dict[str, int] = {"s16le": 2, "f32le": 4}
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


@dataclass(frozen=True)
class AudioFormat:
    """How the samples of one stream are laid out."""

    sample_rate: int
    channels: int
    format: SampleFormat = "s16le"

    def __post_init__(self) -> None:
        if self.format not in BYTES_PER_SAMPLE:
            raise UnsupportedFormat(f"sample format {self.format!r} is not one of s16le, f32le")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise UnsupportedFormat(
                f"sample rate {self.sample_rate} Hz is outside "
                f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise UnsupportedFormat(f"{self.channels} channels is outside 1–{MAX_CHANNELS}")

    @property
    def bytes_per_frame(self) -> int:
        return BYTES_PER_SAMPLE[self.format] * self.channels

    @property
    def packet_bytes(self) -> int:
        """Size of every full packet."""
        return FRAMES_PER_PACKET * self.bytes_per_frame

    def frames_in(self, nbytes: int) -> int:
        return nbytes // self.bytes_per_frame

    def seconds(self, frames: int) -> float:
        return frames / self.sample_rate


class PacketValidator:
    """Checks each packet of one stream: full packets, then at most one short last one.

    The validator is stateful because "a shorter packet must be the last one" can only be
    judged when the next packet (or `end`) arrives.
    """

    def __init__(self, audio: AudioFormat, frames: int = 0) -> None:
        """`frames`: already received (a resumed stream continues from there)."""
        self.audio = audio
        self.frames = frames
        self._short_seen = False

    def accept(self, packet: bytes) -> int:
        """Validate one packet and return the number of frames it holds."""
        size = len(packet)
        full = self.audio.packet_bytes
        if self._short_seen:
            raise BadPacket("a packet shorter than 1000 frames must be the last one before end")
        if size == 0:
            raise BadPacket("empty packet")
        if size > full:
            raise BadPacket(f"packet of {size} bytes is larger than 1000 frames ({full} bytes)")
        if size % self.audio.bytes_per_frame:
            raise BadPacket(
                f"packet of {size} bytes is not a whole number of "
                f"{self.audio.bytes_per_frame}-byte frames"
            )
        if size < full:
            self._short_seen = True
        frames = size // self.audio.bytes_per_frame
        self.frames += frames
        return frames


def split_packets(pcm: bytes, audio: AudioFormat) -> list[bytes]:
    """Cut interleaved PCM into 1000-frame packets (the last one may be shorter)."""
    step = audio.packet_bytes
    usable = len(pcm) - len(pcm) % audio.bytes_per_frame
    return [pcm[i : i + step] for i in range(0, usable, step)]
