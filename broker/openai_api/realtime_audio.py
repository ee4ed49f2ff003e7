"""The Realtime edge's input audio: OpenAI's formats as the farm's 1000-frame packets.

`audio/pcm` (16-bit little-endian mono at 24 kHz) goes down the pipeline as it is, at its
own rate: the worker resamples, as it does for any stream. G.711 (`audio/pcmu`, μ-law,
and `audio/pcma`, A-law, both 8 kHz) is expanded here to 16-bit PCM at 8 kHz, through a
256-entry table per law that FFmpeg's own decoder (PyAV) fills once; expanding is then one
numpy lookup per append.

Clients append any number of bytes; `Packets` keeps what does not fill a packet until the
next append, and a commit sends it padded with silence (so the worker hears the end of
the turn without waiting for more audio).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from whisperfarm.packets import FRAMES_PER_PACKET, AudioFormat

if TYPE_CHECKING:
    import numpy as np

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
PCM_RATE = 24_000
"""The one rate OpenAI's `audio/pcm` has."""
G711_RATE = 8_000
_G711_CODECS = {"audio/pcmu": "pcm_mulaw", "audio/pcma": "pcm_alaw"}


@dataclass(frozen=True)
class InputFormat:
    """One of OpenAI's input formats, and what the farm's stream of it looks like."""

    type: FormatType

    @property
    def rate(self) -> int:
        return PCM_RATE if self.type == "audio/pcm" else G711_RATE

    @property
    def audio(self) -> AudioFormat:
        return AudioFormat(self.rate, 1, "s16le")

    def to_pcm(self, data: bytes) -> bytes:
        """Client bytes as 16-bit PCM (`ValueError` for PCM cut mid-sample)."""
        if self.type == "audio/pcm":
            if len(data) % 2:
                raise ValueError("audio/pcm is 16-bit: an odd number of bytes")
            return data
        import numpy as np  # only G.711 needs it (see `_expansion`)

        table = _expansion(_G711_CODECS[self.type])
        return table[np.frombuffer(data, dtype=np.uint8)].tobytes()

    def as_dict(self) -> dict[str, object]:
        """As a session shows it (`rate` only for PCM, as OpenAI's schema has it)."""
        return (
            {"type": self.type, "rate": PCM_RATE}
            if self.type == "audio/pcm"
            else {"type": self.type}
        )


@functools.cache
def _expansion(codec: str) -> np.ndarray:
    """Code byte → 16-bit sample, for every byte, as FFmpeg's G.711 decoder expands it.

    PyAV and numpy are imported here, on a session's first G.711 audio, not with the
    module: loaded at start they would weigh on every broker's memory, and most brokers
    never see G.711 (bench/RESULTS.md has the figure)."""
    import av
    import numpy as np

    context: av.AudioCodecContext = av.CodecContext.create(codec, "r")  # type: ignore[assignment]
    context.sample_rate = G711_RATE
    context.layout = "mono"
    frames = context.decode(av.Packet(bytes(range(256))))
    samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    assert samples.dtype == np.int16 and len(samples) == 256, "a sample per code byte"
    return samples.astype("<i2")


class Packets:
    """Client PCM in, whole 1000-frame packets out; the remainder waits for more."""

    def __init__(self, audio: AudioFormat) -> None:
        self._size = FRAMES_PER_PACKET * audio.bytes_per_frame
        self._pending = bytearray()
        self.sent = 0
        """Packets handed out: the stream is `sent` × 1000 frames long (padding included)."""

    def take(self, pcm: bytes) -> list[bytes]:
        """The packets `pcm` completes, in order."""
        self._pending += pcm
        whole = len(self._pending) // self._size * self._size
        packets = [bytes(self._pending[i : i + self._size]) for i in range(0, whole, self._size)]
        del self._pending[:whole]
        self.sent += len(packets)
        return packets

    def flush(self) -> bytes | None:
        """What waits, as one packet padded with silence (None: nothing waits)."""
        if not self._pending:
            return None
        packet = bytes(self._pending) + bytes(self._size - len(self._pending))
        self._pending.clear()
        self.sent += 1
        return packet

    def drop(self) -> None:
        """Forget what waits (the client cleared its buffer)."""
        self._pending.clear()
