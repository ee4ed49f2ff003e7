"""WebSocket edge `/v1/stream`: protocol v1 in, `Farm` calls out, errors translated once.

One connection is one stream. The handler reads `start`/`resume`, then packets until
`end`; a separate sender task writes everything the client gets (accepted, acks,
segments, the final or error) from the upload's replies, so they never interleave.
Any `WhisperfarmError` becomes an `error` message and its close code; anything else is
logged and becomes `internal` — never a crash, the broker keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import metrics
from broker.farm import Farm
from broker.upload import ReadGate, Upload
from broker.ws_protocol import PacketControl, packet_sink_setter
from whisperfarm.errors import (
    BadPacket,
    CloseCode,
    ProtocolError,
    Timeout,
    WhisperfarmError,
)
from whisperfarm.protocol import (
    Accepted,
    Clear,
    Commit,
    End,
    Error,
    Final,
    Partial,
    Resume,
    Start,
    parse_client_message,
)

log = logging.getLogger(__name__)
SEND_GRACE_S = 5.0
"""After an error: how long the sender may take to deliver what is queued and the error."""


class _ClientGone(Exception):
    pass


async def stream_endpoint(ws: WebSocket) -> None:
    farm: Farm = ws.app.state.farm
    await ws.accept()
    try:
        upload = await _open(ws, farm)
    except _ClientGone:
        return
    except WhisperfarmError as exc:
        await _reply_error(ws, exc)
        return
    except Exception:
        log.error("unexpected error opening a stream", exc_info=True)
        await _reply_error(ws, WhisperfarmError("internal error; the stream was not opened"))
        return
    sender = asyncio.create_task(_send_replies(ws, upload))
    try:
        await _receive_upload(ws, farm, upload)
        await _await_result(ws, upload, sender)
    except _ClientGone:
        closing = upload.disconnected()
        if closing is not None:
            await closing
    except WhisperfarmError as exc:
        log.info("stream error %s: %s", exc.code.value, exc.detail)
        closing = upload.abort(exc)  # the error follows what the client has not got yet
        await _finish_sending(sender)
        if closing is not None:
            await closing
    except Exception:
        log.error("unexpected error on a stream", exc_info=True)
        upload.abort(WhisperfarmError("internal error; the job was not finished"))
        await _finish_sending(sender)
    finally:
        sender.cancel()


async def _open(ws: WebSocket, farm: Farm) -> Upload:
    first = await _receive_text(ws, farm.settings.idle_timeout)
    # Checked once the client has spoken, so the refusal answers its `start`.
    who = farm.identity(ws.headers, ws.query_params)
    message = parse_client_message(first)
    if isinstance(message, End):
        raise ProtocolError("end before start")
    if isinstance(message, Resume):
        upload = await farm.resume(message.job_id, who)
    else:
        assert isinstance(message, Start)
        upload = await farm.open(message, who)
    accepted = Accepted(job_id=upload.job_id, resume_from_frame=upload.frames)
    upload.replies.put_nowait((accepted, None))
    return upload


async def _receive_upload(ws: WebSocket, farm: Farm, upload: Upload) -> None:
    """Packets until `end`, which is acted on once: by the packet sink if it saw it
    (`_DirectPackets.message`), else here. Returns once the upload is durable."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(farm.settings.idle_timeout) as deadline:
            idle = _IdleDeadline(deadline, farm.settings.idle_timeout, loop)
            with _DirectPackets.attached(ws, upload, idle) as direct:
                gate = ReadGate()
                if direct is None:
                    upload.read_with(gate)
                while True:
                    await gate.open.wait()
                    event = await _receive(ws)
                    idle.touch()
                    if direct is not None and direct.error is not None:
                        raise direct.error
                    data: bytes | None = event.get("bytes")
                    if data is not None:
                        upload.feed(data)
                        continue
                    message = parse_client_message(event.get("text") or "")
                    if isinstance(message, End):
                        break
                    if not isinstance(message, Commit | Clear):
                        raise ProtocolError(f"unexpected {message.type} during the upload")
                    _tell(upload, message)  # one the packet sink did not take
    except TimeoutError:
        raise Timeout(f"nothing received for {farm.settings.idle_timeout:g} s") from None
    if direct is None or not direct.saw_end:
        upload.end()
    await upload.settled()


def _tell(upload: Upload, message: Commit | Clear) -> None:
    """A live client's `commit` or `clear` (raises for a stream that is not live)."""
    if isinstance(message, Commit):
        upload.commit()
    else:
        upload.clear()


class _IdleDeadline:
    """The upload's idle timeout: one `asyncio.timeout` over the whole upload, pushed
    back at most ten times per period, not a `wait_for` per packet (a task and a timer
    for each packet, at thousands of packets a second). It fires between `timeout` and
    1.1 × `timeout` after the last message."""

    def __init__(
        self, deadline: asyncio.Timeout, timeout: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._deadline, self._timeout, self._loop = deadline, timeout, loop
        self._step = timeout / 10
        self._pushed = loop.time()

    def touch(self) -> None:
        now = self._loop.time()
        if now - self._pushed >= self._step:
            self._pushed = now
            self._deadline.reschedule(now + self._timeout + self._step)


class _DirectPackets:
    """The sink the WebSocket protocol hands packets to, without an ASGI message each.

    It runs inside the protocol's `data_received` and must not raise: an error (a bad
    packet, a full disk) is kept, further packets are dropped, and the endpoint is
    woken to raise it, exactly as if it had read the packet itself. The connection is
    the upload's `Reader` (backpressure). It sees every text message a turn of the loop
    before the endpoint does, and acts then on `end` (`saw_end`: the endpoint does
    not; packets after it are not the upload's) and on a live client's `commit` and `clear`,
    so that they fall between the packets they were sent between.
    """

    def __init__(self, upload: Upload, idle: _IdleDeadline) -> None:
        self.upload, self.idle = upload, idle
        self.error: WhisperfarmError | None = None
        self.saw_end = False
        self.control: PacketControl | None = None

    @classmethod
    @contextlib.contextmanager
    def attached(
        cls, ws: WebSocket, upload: Upload, idle: _IdleDeadline
    ) -> Iterator[_DirectPackets | None]:
        """The sink, set for the `with` block (None where the server has no direct path)."""
        setter = packet_sink_setter(ws.scope)
        if setter is None:
            yield None
            return
        direct = cls(upload, idle)
        direct.control = setter(direct)
        upload.read_with(direct.control)
        try:
            yield direct
        finally:
            setter(None)  # packets after `end` are not the upload's
            upload.release_reader()

    def __call__(self, data: bytes) -> None:
        if self.error is not None or self.saw_end:
            return
        try:
            self.upload.feed(data)
            self.idle.touch()
        except WhisperfarmError as exc:
            self._keep(exc)
        except Exception:
            log.error("unexpected error taking a packet of job %s", self.upload.job_id,
                      exc_info=True)  # fmt: skip
            self._keep(WhisperfarmError("internal error; the job was not finished"))

    def message(self, text: str) -> bool:
        """`end` is acted on here and still goes to the endpoint (which stops reading);
        `commit` and `clear` are taken here: the endpoint does not see them."""
        if self.saw_end or self.error is not None:
            return False  # the endpoint raises the error as it reads the next message
        message = _control(text)
        if message is None:
            return False
        try:
            if isinstance(message, End):
                self.saw_end = True
                self.upload.end()
            else:
                _tell(self.upload, message)
                return True
        except WhisperfarmError as exc:
            self._keep(exc)
        except Exception:
            log.error("unexpected error ending the upload of job %s", self.upload.job_id,
                      exc_info=True)  # fmt: skip
            self._keep(WhisperfarmError("internal error; the job was not finished"))
        return False

    def _keep(self, error: WhisperfarmError) -> None:
        """Drop further packets and wake the endpoint to raise `error`."""
        self.error = error
        assert self.control is not None
        self.control.wake()


def _control(text: str) -> End | Commit | Clear | None:
    """An `end`, `commit` or `clear`; None for anything else (the endpoint answers it)."""
    try:
        message = parse_client_message(text)
    except (WhisperfarmError, ValueError):
        return None
    return message if isinstance(message, End | Commit | Clear) else None


async def _await_result(ws: WebSocket, upload: Upload, sender: asyncio.Task[None]) -> None:
    """After `end`: wait for the sender to deliver the final, or for the client to leave.

    A client that leaves now is detached at once, so that it can `resume` and get the
    final on a new connection while the job goes on.
    """
    while not sender.done():
        listener = asyncio.ensure_future(ws.receive())
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        if not listener.done():
            listener.cancel()
            break
        if listener.exception() or listener.result()["type"] == "websocket.disconnect":
            upload.detach()
            break


async def _receive_text(ws: WebSocket, timeout: float) -> str:
    try:
        event = await asyncio.wait_for(_receive(ws), timeout)
    except TimeoutError:
        raise Timeout(f"nothing received for {timeout:g} s") from None
    if event.get("text") is None:
        raise BadPacket("binary data before start: send a start message first")
    return str(event["text"])


async def _receive(ws: WebSocket) -> Mapping[str, Any]:
    try:
        event = await ws.receive()
    except (WebSocketDisconnect, RuntimeError):
        raise _ClientGone() from None
    if event["type"] == "websocket.disconnect":
        raise _ClientGone()
    return event


async def _send_replies(ws: WebSocket, upload: Upload) -> None:
    """Write the upload's replies in order; close after the final or error."""
    try:
        while True:
            message, close = await upload.replies.get()
            if isinstance(message, Partial) and message.only_marks:
                continue
            await ws.send_text(message.dumps())
            if isinstance(message, Final | Error):
                await ws.close(int(close or CloseCode.NORMAL))
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        log.info("client of job %s went away before its result; the job goes on", upload.job_id)
    finally:
        upload.detach()  # unless a resumed connection has attached since


async def _reply_error(ws: WebSocket, exc: WhisperfarmError) -> None:
    """Refuse a stream that never opened: the error, then the close."""
    _count_error(exc)
    with contextlib.suppress(Exception):
        await ws.send_text(Error.from_exception(exc).dumps())
        await ws.close(int(exc.close_code))


def _count_error(exc: WhisperfarmError) -> None:
    log.info("stream error %s: %s", exc.code.value, exc.detail)
    metrics.STREAM_ERRORS.labels(code=exc.code.value).inc()


async def _finish_sending(sender: asyncio.Task[None]) -> None:
    """Let the sender deliver what is queued, the error last, and close; a client that
    does not read gets `SEND_GRACE_S`."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sender, SEND_GRACE_S)
