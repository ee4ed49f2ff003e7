"""Audio that exists only as it arrives (a microphone), kept until the farm holds it.

A recording cannot be decoded again after a dropped connection, so this buffer keeps every
frame from the farm's last acknowledgement on — plus whatever arrives while the client
reconnects — and `packets(from_frame)` serves the resumed stream from there: nothing said
during an outage is lost. Acknowledgements come every second or so, which keeps the
buffer a few seconds long while the connection is up.

Everything runs on the event loop: a capture thread hands its audio over with
`loop.call_soon_threadsafe(audio.feed, pcm)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from whisperfarm.packets import FRAMES_PER_PACKET
from whisperfarm.streaming.decode import AudioInfo
from whisperfarm.streaming.errors import ProtocolViolation


class LiveAudio:
    """A growing stream of interleaved PCM in the format of `info` (a `LiveSource`)."""

    def __init__(self, name: str, info: AudioInfo) -> None:
        self.name, self.info = name, info
        self._bytes_per_frame = info.audio_format.bytes_per_frame
        self._pcm = bytearray()
        self._first = 0
        """The stream frame `_pcm` begins at: every frame before it was released."""
        self._stopped = False
        self._arrived = asyncio.Event()

    @property
    def frames(self) -> int:
        """Frames received so far."""
        return self._first + len(self._pcm) // self._bytes_per_frame

    def feed(self, pcm: bytes) -> None:
        """More audio (whole frames); ignored once stopped."""
        if not self._stopped:
            self._pcm += pcm
            self._arrived.set()

    def stop(self) -> None:
        """No more audio: `packets` sends what it has, a short last packet included, and ends."""
        self._stopped = True
        self._arrived.set()

    def release(self, frames: int) -> None:
        """Forget the whole packets before `frames` (a resume starts at a packet boundary)."""
        keep_from = frames - frames % FRAMES_PER_PACKET
        if keep_from > self._first:
            del self._pcm[: (keep_from - self._first) * self._bytes_per_frame]
            self._first = keep_from

    async def packets(self, from_frame: int) -> AsyncGenerator[bytes, None]:
        """Full packets as soon as they are complete, from `from_frame` until `stop()`."""
        if not self._first <= from_frame <= self.frames:
            raise ProtocolViolation(
                f"resume from frame {from_frame}, but frames {self._first}–{self.frames} are held"
            )
        frame = from_frame
        while True:
            while self.frames - frame >= FRAMES_PER_PACKET:
                yield self._slice(frame, FRAMES_PER_PACKET)
                frame += FRAMES_PER_PACKET
            if self._stopped:
                if frame < self.frames:
                    yield self._slice(frame, self.frames - frame)
                return
            self._arrived.clear()
            await self._arrived.wait()

    def _slice(self, frame: int, count: int) -> bytes:
        begin = (frame - self._first) * self._bytes_per_frame
        return bytes(self._pcm[begin : begin + count * self._bytes_per_frame])
