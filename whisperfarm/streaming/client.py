"""Protocol v1 client for one stream: start, packets, end, segments, final — and resume.

A dropped connection after `accepted` is not a failure of the job: the broker keeps the
spooled audio as `interrupted`, so the client reconnects, sends `resume`, and re-sends
from the frame the broker names (the `AudioSource` gives it again). Everything else (an
`error` message, a close code that says why, a protocol violation) ends the stream with a
typed `SourceError`.

A live stream (`ClientOptions.live`) also hands its caller each `partial` and takes
`commit()` / `clear()`, which go out in order with the audio sent before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from whisperfarm.errors import CloseCode, ErrorCode, ProtocolError
from whisperfarm.protocol import (
    STREAM_PATH,
    Accepted,
    Ack,
    Clear,
    Commit,
    End,
    Error,
    Final,
    Partial,
    Resume,
    Segment,
    ServerMessage,
    Start,
    parse_server_message,
)
from whisperfarm.streaming.decode import SAMPLE_FORMAT
from whisperfarm.streaming.errors import (
    ConnectionLost,
    FarmFailed,
    FarmOverloaded,
    FarmUnreachable,
    ProtocolViolation,
)
from whisperfarm.streaming.sources import AudioSource
from whisperfarm.tokens import person_headers

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A `final` carries every segment twice over (text + list): megabytes for a 4 h stream,
past websockets' 1 MiB default."""
MAX_BACKOFF = 30.0
FATAL_CLOSE_CODES = {CloseCode.BAD_DATA, CloseCode.POLICY, CloseCode.TOO_LARGE, CloseCode.INTERNAL}
"""Close codes by which the broker says why it hung up; any other close is a mere drop."""


class StreamEvents(Protocol):
    """What the client reports while a stream goes (`FileProgress`, `LiveView` in `source/`)."""

    def accepted(self, job_id: str, resume_from_frame: int) -> None: ...
    def sent(self, frames: int) -> None: ...
    def uploaded(self) -> None: ...
    def segment(self, segment: Segment) -> None: ...
    def partial(self, partial: Partial) -> None:
        """Live streams only: the uncommitted tail, replacing the previous one."""
        ...

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
    person: str | None = None
    """Who a `service:` token streams for (`X-Whisperfarm-User`; the GUI's people)."""
    live: bool = False
    """Decoded as it arrives: partials, committed segments, `commit()` / `clear()`."""
    vad: bool = True
    """Voice activity: non-speech is skipped (False sends `"vad": false`)."""
    vad_pause_ms: int | None = None
    """Silence that ends a live utterance; None: the farm's default."""
    diarize: bool = False
    """Speaker labels on the final's segments (files only)."""
    speakers: int | None = None
    """With `diarize`: how many speakers; None: the farm estimates it."""


class _Dropped(Exception):
    """The connection went away without the farm saying why: resumable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamClient:
    """Streams one source to the farm and returns its `final` message."""

    def __init__(self, source: AudioSource, options: ClientOptions, events: StreamEvents) -> None:
        self._source, self._options, self._events = source, options, events
        self._bytes_per_frame = source.info.audio_format.bytes_per_frame
        self._job_id: str | None = None
        self._controls: deque[tuple[int, Commit | Clear]] = deque()
        """Live `commit`/`clear` waiting to go out, each after the frames sent before it."""
        self._last_segment_id = -1
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
                    "%s: %s; resuming job %s in %g s",
                    self._source.name, drop.reason, self._job_id, delay,
                )  # fmt: skip
                self._events.reconnecting(misses, self._options.retries, delay, drop.reason)
                await asyncio.sleep(delay)

    async def _attempt(self) -> Final:
        ws = await self._connect()
        async with ws:  # not `as ws`: websockets 15 types `__aenter__` as the base class
            accepted = await self._handshake(ws)
            return await self._exchange(ws, accepted.resume_from_frame)

    async def _connect(self) -> ClientConnection:
        try:
            return await connect(
                self._options.url,
                open_timeout=self._options.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                additional_headers=_auth_headers(self._options.token)
                | person_headers(self._options.person),
                compression=None,  # deflating PCM costs CPU and saves next to nothing
            )
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            # TimeoutError is an OSError; ConnectionClosed: the peer took the TCP connection
            # and closed it before the handshake (a proxy whose upstream is away).
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

    def commit(self) -> None:
        """Live: end the current utterance now (its partial is committed)."""
        self._control(Commit())

    def clear(self) -> None:
        """Live: drop the audio not committed yet."""
        self._control(Clear())

    def _control(self, message: Commit | Clear) -> None:
        """Queued at the frames sent so far; it goes out before the next packet, or `end`.

        Waiting for the next packet keeps the order the farm must see (the audio before,
        then the message) without a second writer on the socket; at real time that is
        1000 frames, a few tens of milliseconds.
        """
        if not self._options.live:
            raise RuntimeError(f"{message.type} is for live streams only")
        self._controls.append((self.high_water, message))

    def _start_message(self) -> Start:
        info, options = self._source.info, self._options
        return Start(
            name=self._source.name,
            sample_rate=info.sample_rate,
            channels=info.channels,
            format=SAMPLE_FORMAT,
            language=options.language,
            task=options.task,
            word_timestamps=options.word_timestamps,
            duration=info.duration,
            live=options.live,
            vad=options.vad,
            vad_pause_ms=options.vad_pause_ms,
            diarize=options.diarize,
            speakers=options.speakers,
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
        """Send packets from `from_frame` on (live controls in between), then `end`.

        A closed socket ends the upload quietly: the receiver sees the same close, along
        with any `error` message that came before it, and reports the outcome.
        """
        frames = from_frame
        try:
            async with contextlib.aclosing(self._source.packets(from_frame)) as packets:
                async for packet in packets:
                    await self._send_controls(ws, frames)
                    await ws.send(packet)
                    frames += len(packet) // self._bytes_per_frame
                    self.high_water = max(self.high_water, frames)
                    self._events.sent(frames)
            await self._send_controls(ws, None)
            await ws.send(End().dumps())
        except ConnectionClosed:
            return
        self._events.uploaded()

    async def _send_controls(self, ws: ClientConnection, frames: int | None) -> None:
        """The queued controls due once `frames` were sent (None: all of them).

        One leaves the queue only once sent: a control cut off by a dropped connection
        goes out on the resumed one, at its place in the audio.
        """
        while self._controls and (frames is None or self._controls[0][0] <= frames):
            await ws.send(self._controls[0][1].dumps())
            self._controls.popleft()

    async def _receive_results(self, ws: ClientConnection) -> Final:
        while True:
            message = await self._receive(ws)
            if isinstance(message, Ack):
                self.acked_frames = max(self.acked_frames, message.frames)
                self._source.release(self.acked_frames)
            elif isinstance(message, Segment):
                self._segment(message)
            elif isinstance(message, Partial):
                if not self._options.live:
                    raise ProtocolViolation("a partial on a stream that is not live")
                self._events.partial(message)
            elif isinstance(message, Final):
                if message.job_id != self._job_id:
                    raise ProtocolViolation(f"final for job {message.job_id}, not {self._job_id}")
                return message
            elif isinstance(message, Error):
                raise farm_error(message)
            else:
                raise ProtocolViolation("a second accepted in one connection")

    def _segment(self, segment: Segment) -> None:
        """Committed live segments only grow: one seen before (resent on resume) is skipped."""
        if self._options.live:
            if segment.id <= self._last_segment_id:
                return
            self._last_segment_id = segment.id
        self._events.segment(segment)

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
    if isinstance(exc, ConnectionClosed):
        return "closed before the WebSocket handshake"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return f"HTTP {status} instead of a WebSocket (the stream path is {STREAM_PATH})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
