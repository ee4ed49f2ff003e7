"""One DEALER connection to the broker, with the liveness bookkeeping of the wire protocol.

A link is never reused: after the broker goes silent (or says DISCONNECT) the worker
closes it and opens a new one with a fresh identity, so the broker sees a new worker and
cannot mix up streams of the old connection with the new one.

The DEALER is a plain socket read when the event loop sees its file descriptor become
readable (`add_reader`), as the broker reads its ROUTER: pyzmq's asyncio sockets make a
future, register a poller and translate event flags for every receive, most of what an
audio message costs a worker that decodes nothing (`bench/RESULTS.md`, design measurements).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, cast

import zmq

from whisperfarm import wire
from whisperfarm.curve import CurveClient
from whisperfarm.wire import Message

log = logging.getLogger(__name__)

EXPIRY_S = wire.HEARTBEAT_INTERVAL_S * wire.HEARTBEAT_LIVENESS
"""Silence after which the broker counts as gone."""


class Link:
    """A connected DEALER socket plus when the broker was last heard from."""

    def __init__(
        self, ctx: zmq.Context[Any], endpoint: str, name: str, curve: CurveClient | None = None
    ) -> None:
        """Connect; call on the running loop (it watches the socket from then on)."""
        self.identity = f"{name}-{uuid.uuid4().hex[:8]}".encode()
        self.socket: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        # Sends never wait: results are small, and a broker that stops reading goes
        # silent too, so the link expires and is closed, queue and all.
        self.socket.setsockopt(zmq.SNDHWM, 0)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(endpoint)
        self.heard_at = time.monotonic()
        self.heard_any = False
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._readable = asyncio.Event()
        self._fd = self.socket.fileno()
        self._loop.add_reader(self._fd, self._readable.set)

    def expires_in(self) -> float:
        """Seconds left before the broker counts as dead."""
        return self.heard_at + EXPIRY_S - time.monotonic()

    async def send(self, message: Message) -> None:
        """Send one message; a closed link drops it (its streams are gone anyway).

        Never waits (no high-water mark). Async so that callers need not change if a
        transport ever has to."""
        if self.closed:
            return
        self.socket.send_multipart([b"", *wire.encode(message)], flags=zmq.NOBLOCK)
        # ZeroMQ's descriptor is edge-triggered and a send can take the edge that a
        # message arriving meanwhile raised: have `recv` look before it waits.
        self._readable.set()

    async def recv(self, timeout_s: float) -> list[bytes] | None:
        """Frames after the empty delimiter, or None if nothing came within the timeout.

        A message that is already there is taken at once; otherwise this waits for the
        descriptor (or a send, see `send`) and looks again.
        """
        deadline = self._loop.time() + timeout_s
        while True:
            try:
                frames: list[bytes] = self.socket.recv_multipart(flags=zmq.NOBLOCK)
                break
            except zmq.Again:
                pass
            self._readable.clear()
            if cast(int, self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                continue  # came between the receive and the clear (this also re-arms the edge)
            left = deadline - self._loop.time()
            if left <= 0:
                return None
            try:
                async with asyncio.timeout(left):
                    await self._readable.wait()
            except TimeoutError:
                return None
        self.heard_at = time.monotonic()
        self.heard_any = True
        if frames and frames[0] == b"":
            return frames[1:]
        return frames  # a DEALER peer without the delimiter: decode() will reject it

    def close(self, linger_ms: int = 0) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._fd)
            self.socket.close(linger=linger_ms)
