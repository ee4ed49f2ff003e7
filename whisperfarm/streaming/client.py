"""Protocol v1 client for one file: start, packets, end, segments, final — and resume.

A dropped connection after `accepted` is not a failure of the job: the broker keeps the
spooled audio as `interrupted`, so the client reconnects, sends `resume`, and re-sends
from the frame the broker names. Everything else (an `error` message, a close code that
says why, a protocol violation) ends the file with a typed `SourceError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from whisperfarm.errors import CloseCode, ErrorCode, ProtocolError
from whisperfarm.protocol import (
    STREAM_PATH,
    Accepted,
    Ack,
    End,
    Error,
    Final,
    Resume,
    Segment,
    ServerMessage,
    Start,
    parse_server_message,
)
from whisperfarm.streaming.decode import SAMPLE_FORMAT, AudioInfo
from whisperfarm.streaming.errors import (
    ConnectionLost,
    FarmFailed,
    FarmOverloaded,
    FarmUnreachable,
    ProtocolViolation,
)
from whisperfarm.streaming.feed import packets_off_loop

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A `final` carries every segment twice over (text + list): megabytes for a 4 h stream,
past websockets' 1 MiB default."""
MAX_BACKOFF = 30.0
FATAL_CLOSE_CODES = {CloseCode.BAD_DATA, CloseCode.POLICY, CloseCode.TOO_LARGE, CloseCode.INTERNAL}
"""Close codes by which the broker says why it hung up; any other close is a mere drop."""


class StreamEvents(Protocol):
    """What the client reports while a file streams (implemented by `progress.FileProgress`)."""

    def accepted(self, job_id: str, resume_from_frame: int) -> None: ...
    def sent(self, frames: int) -> None: ...
    def uploaded(self) -> None: ...
    def segment(self, segment: Segment) -> None: ...
    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None: ...


@dataclass(frozen=True)
class ClientOptions:
    """The part of `SourceSettings` a stream needs, so the client never sees the CLI."""

    url: str
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: bool = False
    retries: int = 3
    retry_delay: float = 1.0
    connect_timeout: float = 10.0
    token: str | None = None
    """API bearer token, when the farm asks for one."""


class _Dropped(Exception):
    """The connection went away without the farm saying why: resumable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamClient:
    """Streams one probed file to the farm and returns its `final` message."""

    def __init__(
        self, path: Path, info: AudioInfo, options: ClientOptions, events: StreamEvents
    ) -> None:
        self._path, self._info, self._options, self._events = path, info, options, events
        self._bytes_per_frame = info.audio_format.bytes_per_frame
        self._job_id: str | None = None
        self.acked_frames = 0
        """Latest `ack`: every frame before it is durable in the broker's spool."""
        self.high_water = 0
        """Most frames ever sent; a resume point past it would be the broker's mistake."""

    async def transcribe(self) -> Final:
        """Run the stream to its `final`, resuming after drops; raise `SourceError` otherwise.

        `retries` counts reconnects in a row that made no progress (no new `ack`), so a
        long upload over a flaky link survives many drops but a dead farm is given up on.
        """
        misses = 0
        while True:
            acked_before = self.acked_frames
            try:
                return await self._attempt()
            except _Dropped as drop:
                if self._job_id is None:
                    raise ConnectionLost(
                        f"connection lost before the farm accepted the stream ({drop.reason})"
                    ) from None
                misses = 1 if self.acked_frames > acked_before else misses + 1
                if misses > self._options.retries:
                    raise ConnectionLost(
                        f"connection lost ({drop.reason}), gave up after "
                        f"{self._options.retries} retries"
                    ) from None
                delay = min(self._options.retry_delay * 2 ** (misses - 1), MAX_BACKOFF)
                log.info(
                    "%s: %s; resuming job %s in %g s", self._path, drop.reason, self._job_id, delay
                )
                self._events.reconnecting(misses, self._options.retries, delay, drop.reason)
                await asyncio.sleep(delay)

    async def _attempt(self) -> Final:
        async with await self._connect() as ws:
            accepted = await self._handshake(ws)
            return await self._exchange(ws, accepted.resume_from_frame)

    async def _connect(self) -> ClientConnection:
        try:
            return await connect(
                self._options.url,
                open_timeout=self._options.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                additional_headers=_auth_headers(self._options.token),
                compression=None,  # deflating PCM costs CPU and saves next to nothing
            )
        except (OSError, InvalidHandshake, InvalidURI) as exc:  # TimeoutError is an OSError
            reason = describe_connect_error(exc)
            if self._job_id is None:
                raise FarmUnreachable(self._options.url, reason) from None
            raise _Dropped(f"cannot reconnect: {reason}") from None

    async def _handshake(self, ws: ClientConnection) -> Accepted:
        """Send `start` (or `resume` once a job exists) and wait for `accepted`."""
        hello = Resume(job_id=self._job_id) if self._job_id else self._start_message()
        try:
            await ws.send(hello.dumps())
        except ConnectionClosed as exc:
            raise closed_error(exc) from None
        reply = await self._receive(ws)
        if isinstance(reply, Error):
            raise farm_error(reply)
        if not isinstance(reply, Accepted):
            raise ProtocolViolation(f"expected accepted, got {reply.type}")
        self._check_accepted(reply)
        self._job_id = reply.job_id
        self._events.accepted(reply.job_id, reply.resume_from_frame)
        return reply

    def _start_message(self) -> Start:
        return Start(
            name=self._path.name[:255] or "stream",
            sample_rate=self._info.sample_rate,
            channels=self._info.channels,
            format=SAMPLE_FORMAT,
            language=self._options.language,
            task=self._options.task,
            word_timestamps=self._options.word_timestamps,
            duration=self._info.duration,
        )

    def _check_accepted(self, reply: Accepted) -> None:
        if self._job_id is None:
            if reply.resume_from_frame != 0:
                raise ProtocolViolation("a new stream was accepted from a frame other than 0")
            return
        if reply.job_id != self._job_id:
            raise ProtocolViolation(f"resumed job {self._job_id} came back as {reply.job_id}")
        if not 0 <= reply.resume_from_frame <= self.high_water:
            raise ProtocolViolation(
                f"resume from frame {reply.resume_from_frame}, but only {self.high_water} were sent"
            )

    async def _exchange(self, ws: ClientConnection, from_frame: int) -> Final:
        """Upload and listen at once: segments arrive while the upload goes on."""
        sender = asyncio.create_task(self._send_audio(ws, from_frame))
        receiver = asyncio.create_task(self._receive_results(ws))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and (failure := sender.exception()) is not None:
                raise failure  # e.g. the file became unreadable mid-way
            return await receiver
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send_audio(self, ws: ClientConnection, from_frame: int) -> None:
        """Send packets from `from_frame` on, then `end`.

        A closed socket ends the upload quietly: the receiver sees the same close, along
        with any `error` message that came before it, and reports the outcome.
        """
        frames = from_frame
        packets = packets_off_loop(self._path, self._info, from_frame)
        try:
            async with contextlib.aclosing(packets):
                async for packet in packets:
                    await ws.send(packet)
                    frames += len(packet) // self._bytes_per_frame
                    self.high_water = max(self.high_water, frames)
                    self._events.sent(frames)
            await ws.send(End().dumps())
        except ConnectionClosed:
            return
        self._events.uploaded()

    async def _receive_results(self, ws: ClientConnection) -> Final:
        while True:
            message = await self._receive(ws)
            if isinstance(message, Ack):
                self.acked_frames = max(self.acked_frames, message.frames)
            elif isinstance(message, Segment):
                self._events.segment(message)
            elif isinstance(message, Final):
                if message.job_id != self._job_id:
                    raise ProtocolViolation(f"final for job {message.job_id}, not {self._job_id}")
                return message
            elif isinstance(message, Error):
                raise farm_error(message)
            else:
                raise ProtocolViolation("a second accepted in one connection")

    async def _receive(self, ws: ClientConnection) -> ServerMessage:
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise closed_error(exc) from None
        if isinstance(raw, bytes):
            raise ProtocolViolation("the farm sent a binary frame")
        try:
            return parse_server_message(raw)
        except ProtocolError as exc:
            raise ProtocolViolation(exc.detail) from None


def farm_error(message: Error) -> Exception:
    """The outcome an `error` message stands for (`interrupted`: a drop, to resume)."""
    if message.code == ErrorCode.OVERLOADED:
        return FarmOverloaded(message.detail, message.retry_after)
    if message.code == ErrorCode.INTERRUPTED:
        return _Dropped(f"the farm interrupted the upload ({message.detail})")
    return FarmFailed(message.code, message.detail)


def closed_error(exc: ConnectionClosed) -> Exception:
    """A close without an `error` message: a code that says why is final, anything else a drop."""
    close = exc.rcvd
    if close is None:
        return _Dropped("connection dropped")
    reason = close.reason or "no reason given"
    if close.code == CloseCode.TRY_AGAIN_LATER:
        return FarmOverloaded(reason, None)
    if close.code in FATAL_CLOSE_CODES:
        return FarmFailed(f"close code {close.code}", reason)
    return _Dropped(f"closed with code {close.code}")


def describe_connect_error(exc: Exception) -> str:
    """A few words on why no WebSocket could be opened, for a one-line message."""
    if isinstance(exc, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(exc):
        # The second test catches asyncio's "Multiple exceptions" when every address of a
        # host name (IPv4 and IPv6 localhost) refused.
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return f"HTTP {status} instead of a WebSocket (the stream path is {STREAM_PATH})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
