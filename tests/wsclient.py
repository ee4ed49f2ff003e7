"""A minimal protocol-v1 client for tests: speaks the wire directly, no source CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

from whisperfarm.packets import FRAMES_PER_PACKET


@dataclass
class Reply:
    """Everything the broker said on one connection, and how it closed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def last(self) -> dict[str, Any]:
        return self.messages[-1] if self.messages else {}


def tone(seconds: float, rate: int = 16_000, channels: int = 1) -> bytes:
    """s16le interleaved sine: real-looking audio for protocol tests (the null engine)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1).tobytes()


def packets(pcm: bytes, channels: int = 1, sample_bytes: int = 2) -> list[bytes]:
    size = FRAMES_PER_PACKET * channels * sample_bytes
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def client_frame(opcode: Opcode, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """A frame as a client writes it (masked unless told), for writes the client's own
    framing would never make: several frames in one write, a frame cut in two."""
    return Frame(opcode, payload, fin=fin).serialize(mask=mask, extensions=[])


def start_message(**overrides: Any) -> str:
    message: dict[str, Any] = {"type": "start", "name": "test.wav", "sample_rate": 16_000}
    message.update(overrides)
    return json.dumps(message)


async def read_all(ws: ClientConnection, reply: Reply) -> Reply:
    """Read until the broker closes the connection."""
    try:
        async for raw in ws:
            reply.messages.append(json.loads(raw))
    except websockets.ConnectionClosed:
        pass
    reply.close_code = ws.close_code
    return reply


async def stream_pcm(
    url: str,
    pcm: bytes,
    *,
    channels: int = 1,
    headers: dict[str, str] | None = None,
    **start: Any,
) -> Reply:
    """Start, send all packets, end, and collect every reply until the close. A stream
    the farm fails while its packets are still going (a worker that cannot serve it)
    stops sending there; the replies it got before the close are read as usual."""
    async with websockets.connect(url, max_size=None, additional_headers=headers) as ws:
        await ws.send(start_message(channels=channels, **start))
        reply = Reply([json.loads(await ws.recv())])
        if reply.last.get("type") != "accepted":
            return await read_all(ws, reply)
        with contextlib.suppress(websockets.ConnectionClosed):
            for packet in packets(pcm, channels):
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
        return await read_all(ws, reply)


async def send_raw(url: str, *frames: str | bytes) -> Reply:
    """Send frames as they are and collect the replies (for bad-input tests)."""
    async with websockets.connect(url, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        return await read_all(ws, Reply())


@dataclass
class LiveReply(Reply):
    """A live stream's replies, each with when it arrived, and when each packet and the
    `end` went (seconds from the first packet; a benchmark measures lag with them)."""

    arrived: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    ended: float = 0.0


async def stream_live(
    url: str,
    pcm: bytes,
    *,
    speed: float = 1.0,
    controls: dict[int, str] | None = None,
    **start: Any,
) -> LiveReply:
    """Start a live stream and send 16 kHz mono `pcm` paced at `speed` × real time; after
    packet N send `controls[N]` (`commit`, `clear`); then `end`, and collect everything."""
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(start_message(live=True, **start))
        reply = LiveReply([json.loads(await ws.recv())], arrived=[0.0])
        if reply.last.get("type") != "accepted":
            await read_all(ws, reply)
            return reply
        began = loop.time()

        async def listen() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    reply.messages.append(json.loads(raw))
                    reply.arrived.append(loop.time() - began)
            reply.close_code = ws.close_code

        listener = asyncio.create_task(listen())
        for index, packet in enumerate(packets(pcm)):
            due = began + index * FRAMES_PER_PACKET / 16_000 / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
            await ws.send(packet)
            reply.sent.append(loop.time() - began)
            if controls and index in controls:
                await ws.send(json.dumps({"type": controls[index]}))
        await ws.send(json.dumps({"type": "end"}))
        reply.ended = loop.time() - began
        await listener
    return reply
