"""A fake farm on loopback for the source CLI's tests, and the helpers around it.

The fake speaks protocol v1 the way the broker does (it parses with the shared contract
and validates packets with `PacketValidator`), scripted per test to overload, fail or
drop the connection; a live stream also gets partials, a segment resent on resume, and
its `commit`/`clear` recorded where they came in the audio. The CLI runs as `main(argv)`
in a thread with its own event loop, exactly as `whisperfarm-source` would, while the
fake serves on the test's loop (the `farm` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from source.__main__ import main
from whisperfarm.errors import BadPacket, CloseCode, ErrorCode
from whisperfarm.packets import PacketValidator
from whisperfarm.protocol import (
    Accepted,
    Ack,
    Clear,
    ClientMessage,
    Commit,
    End,
    Error,
    Final,
    Partial,
    Resume,
    Segment,
    SegmentData,
    Start,
    parse_client_message,
)
from whisperfarm.streaming.decode import iter_packets, open_audio

RATE = 44_100
CHANNELS = 2
FAST_RETRY = ["--retry-delay", "0.01"]
SEGMENTS = [
    SegmentData(id=0, start=0.0, end=1.0, text=" hello"),
    SegmentData(id=1, start=1.0, end=2.0, text=" world"),
]


def write_wav(path: Path, seconds: float, rate: int = RATE, channels: int = CHANNELS) -> Path:
    """A sine as s16 WAV, written without ffmpeg so these tests run anywhere."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono[:, None], channels, axis=1).tobytes())
    return path


@dataclass
class Job:
    """What the fake farm holds for one accepted stream."""

    start: Start
    pcm: bytearray = field(default_factory=bytearray)
    acked: int = 0
    resumes: int = 0
    ends: int = 0
    packet_sizes: list[list[int]] = field(default_factory=list)
    """Packet sizes per connection."""
    controls: list[tuple[int, str]] = field(default_factory=list)
    """Live `commit`/`clear` messages, each with the frames received before it."""


@dataclass
class FakeFarm:
    """Protocol v1, scripted: by file name overload or fail, by count drop connections."""

    overloaded: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    drop_after_packets: int | None = None
    """Abort the first connection of every job after this many packets."""
    interrupt_after_packets: int | None = None
    """Answer the first connection of every job with `interrupted` after this many packets."""
    drop_after_end: bool = False
    """Abort the first connection of every job once `end` arrived, before `final`."""
    drop_always: bool = False
    """Abort every connection right after `accepted` (no progress ever)."""
    ack_every: int = 10
    final_delay: float = 0.0
    """Seconds between `end` and the final (a farm still decoding)."""
    partials_to_files: bool = False
    """Send partials to streams that are not live (a farm breaking the protocol)."""
    connections: int = 0
    hellos: list[ClientMessage] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs.values() if j.start.name == name)

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        hello = parse_client_message(await ws.recv())
        self.hellos.append(hello)
        if isinstance(hello, Start) and hello.name in self.overloaded:
            await ws.send(Error(code=ErrorCode.OVERLOADED, detail="busy", retry_after=5).dumps())
            await ws.close(CloseCode.TRY_AGAIN_LATER, "overloaded")
            return
        job_id, job, first = self._admit(hello)
        await ws.send(Accepted(job_id=job_id, resume_from_frame=job.acked).dumps())
        if self.drop_always:
            ws.transport.abort()
            return
        if await self._receive_audio(ws, job, first) and await self._finish(ws, job_id, job, first):
            await ws.close()

    def _admit(self, hello: ClientMessage) -> tuple[str, Job, bool]:
        if isinstance(hello, Start):
            job_id = uuid.uuid4().hex
            self.jobs[job_id] = Job(start=hello)
            return job_id, self.jobs[job_id], True
        assert isinstance(hello, Resume)
        job = self.jobs[hello.job_id]
        job.resumes += 1
        del job.pcm[job.acked * job.start.channels * 2 :]  # only acked audio is durable
        return hello.job_id, job, False

    async def _receive_audio(self, ws: ServerConnection, job: Job, first: bool) -> bool:
        """Take packets until `end`; False when this connection was dropped or refused."""
        validator = PacketValidator(job.start.audio_format())
        sizes: list[int] = []
        job.packet_sizes.append(sizes)
        async for message in ws:
            if isinstance(message, str):
                text = parse_client_message(message)
                if isinstance(text, Commit | Clear):
                    job.controls.append((len(job.pcm) // (job.start.channels * 2), text.type))
                    continue
                assert isinstance(text, End)
                job.ends += 1
                return True
            try:
                frames = validator.accept(message)
            except BadPacket as exc:
                await ws.send(Error(code=exc.code, detail=exc.detail).dumps())
                await ws.close(exc.close_code)
                return False
            sizes.append(len(message))
            job.pcm += message
            if len(sizes) % self.ack_every == 0:
                job.acked = len(job.pcm) // (job.start.channels * 2)
                await ws.send(Ack(frames=job.acked).dumps())
                await self._live_news(ws, job, len(sizes) // self.ack_every)
            if first and len(sizes) == self.drop_after_packets:
                ws.transport.abort()
                return False
            if first and len(sizes) == self.interrupt_after_packets:
                await ws.send(Error(code=ErrorCode.INTERRUPTED, detail="storage restarted").dumps())
                await ws.close(CloseCode.SERVICE_RESTART)
                return False
            del frames
        return False

    async def _live_news(self, ws: ServerConnection, job: Job, n: int) -> None:
        """A live stream's partial grows a word per ack; the first segment commits early
        (and comes again with the final, as a resumed stream may see it twice)."""
        if not (job.start.live or self.partials_to_files):
            return
        await ws.send(Partial(text=" hello" * n, start=0.0, end=n).dumps())
        if n == 2:
            await ws.send(Segment(**SEGMENTS[0].model_dump()).dumps())
            await ws.send(Partial(text="", start=1.0, end=1.0).dumps())

    async def _finish(self, ws: ServerConnection, job_id: str, job: Job, first: bool) -> bool:
        job.acked = len(job.pcm) // (job.start.channels * 2)
        if first and self.drop_after_end:
            ws.transport.abort()
            return False
        if job.start.name in self.failing:
            await ws.send(Error(code=ErrorCode.INTERNAL, detail="engine exploded").dumps())
            await ws.close(CloseCode.INTERNAL)
            return False
        if self.final_delay:  # still decoding, unless the client hangs up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), self.final_delay)
                return False
        for s in SEGMENTS:
            await ws.send(Segment(**s.model_dump()).dumps())
        duration = job.acked / job.start.sample_rate
        text = f"transcript of {job.start.name}"
        final = Final(job_id=job_id, text=text, segments=SEGMENTS, language="en", duration=duration)
        await ws.send(final.dumps())
        return True


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[FakeFarm]:
    """A `FakeFarm` listening on a free loopback port until the block ends."""
    fake = FakeFarm()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.port = server.sockets[0].getsockname()[1] if server.sockets else 0
        yield fake


async def run_cli(*args: str | Path) -> int:
    """`main()` in a thread: it owns an event loop, the fake farm runs on this one."""
    return await asyncio.to_thread(main, [str(a) for a in args])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pcm_of(path: Path) -> bytes:
    return b"".join(iter_packets(path, open_audio(path)))
