"""Where a stream's audio comes from: a file, as fast as it decodes or paced at real time.

The client asks a source for packets from a frame on — frame 0 at the start, the farm's
`resume_from_frame` after a dropped connection — so a source must be able to give again
any frame the farm has not acknowledged. A file simply decodes itself again (decoding is
deterministic); a source of audio that exists only once (`live_audio.LiveAudio`, a
microphone) keeps it until the farm acknowledges it (`release`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

from whisperfarm.streaming.decode import AudioInfo
from whisperfarm.streaming.feed import packets_off_loop


class AudioSource(Protocol):
    """The audio of one stream, as the client sends it."""

    @property
    def name(self) -> str:
        """What `start.name` says: a file's name, or a name for a recording."""
        ...

    @property
    def info(self) -> AudioInfo: ...

    def packets(self, from_frame: int) -> AsyncGenerator[bytes, None]:
        """1000-frame packets (the last one shorter) from `from_frame` to the end."""
        ...

    def release(self, frames: int) -> None:
        """The farm holds every frame before `frames`: it will never ask for them again."""
        ...


class LiveSource(AudioSource, Protocol):
    """A source that goes on until told to stop (a microphone, a file played at real time)."""

    def stop(self) -> None:
        """No more audio: what was captured is still sent, then the stream ends."""
        ...


class FileAudio:
    """A file, decoded off the event loop as fast as the connection takes it."""

    def __init__(self, path: Path, info: AudioInfo) -> None:
        self.path, self.info = path, info

    @property
    def name(self) -> str:
        return self.path.name[:255] or "stream"

    def packets(self, from_frame: int) -> AsyncGenerator[bytes, None]:
        return packets_off_loop(self.path, self.info, from_frame)

    def release(self, frames: int) -> None:
        """Nothing to forget: any frame can be decoded again."""


class PacedAudio:
    """A file played at real time, as if someone spoke it into a microphone.

    A packet goes out once its last frame "has been spoken": `rate` frames per second
    after the first packet was asked for. The clock keeps running through a dropped
    connection, as a speaker does not stop talking, so after a resume the frames that
    fell due meanwhile go out at once and the rest at real time again.
    """

    def __init__(self, audio: FileAudio) -> None:
        self._audio = audio
        self._began: float | None = None
        self._stopped = False

    @property
    def name(self) -> str:
        return self._audio.name

    @property
    def info(self) -> AudioInfo:
        return self._audio.info

    async def packets(self, from_frame: int) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        if self._began is None:
            self._began = loop.time()
        frame, rate = from_frame, self.info.sample_rate
        bytes_per_frame = self.info.audio_format.bytes_per_frame
        async with contextlib.aclosing(self._audio.packets(from_frame)) as packets:
            async for packet in packets:
                frame += len(packet) // bytes_per_frame
                await asyncio.sleep(max(0.0, self._began + frame / rate - loop.time()))
                if self._stopped:
                    return
                yield packet

    def release(self, frames: int) -> None:
        self._audio.release(frames)

    def stop(self) -> None:
        """End the stream at the next packet (the rest of the file is never sent)."""
        self._stopped = True
