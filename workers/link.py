"""One DEALER connection to the broker, with the liveness bookkeeping of the wire protocol.

A link is never reused: after the broker goes silent (or says DISCONNECT) the worker
closes it and opens a new one with a fresh identity, so the broker sees a new worker and
cannot mix up streams of the old connection with the new one.
"""

from __future__ import annotations

import logging
import time
import uuid

import zmq
import zmq.asyncio

from whisperfarm import wire
from whisperfarm.curve import CurveClient
from whisperfarm.wire import Message

log = logging.getLogger(__name__)

EXPIRY_S = wire.HEARTBEAT_INTERVAL_S * wire.HEARTBEAT_LIVENESS
"""Silence after which the broker counts as gone."""


class Link:
    """A connected DEALER socket plus when the broker was last heard from."""

    def __init__(
        self, ctx: zmq.asyncio.Context, endpoint: str, name: str, curve: CurveClient | None = None
    ) -> None:
        self.identity = f"{name}-{uuid.uuid4().hex[:8]}".encode()
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(endpoint)
        self.heard_at = time.monotonic()
        self.heard_any = False
        self.closed = False

    def expires_in(self) -> float:
        """Seconds left before the broker counts as dead."""
        return self.heard_at + EXPIRY_S - time.monotonic()

    async def send(self, message: Message) -> None:
        """Send one message; a closed link drops it (its streams are gone anyway)."""
        if self.closed:
            return
        await self.socket.send_multipart([b"", *wire.encode(message)])

    async def recv(self, timeout_s: float) -> list[bytes] | None:
        """Frames after the empty delimiter, or None if nothing came within the timeout.

        A message that is already there is taken without a poll: a poll sets up a
        poller and a timer, which per audio message was most of a busy worker's loop.
        """
        try:
            frames: list[bytes] = await self.socket.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            if not await self.socket.poll(max(0, int(timeout_s * 1000))):
                return None
            frames = await self.socket.recv_multipart()
        self.heard_at = time.monotonic()
        self.heard_any = True
        if frames and frames[0] == b"":
            return frames[1:]
        return frames  # a DEALER peer without the delimiter: decode() will reject it

    def close(self, linger_ms: int = 0) -> None:
        if not self.closed:
            self.closed = True
            self.socket.close(linger=linger_ms)
