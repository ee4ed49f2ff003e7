"""WebSocket edge `/v1/stream`: protocol v1 in, `Farm` calls out, errors translated once.

One connection is one stream. The handler reads `start`/`resume`, then packets until
`end`; a separate sender task writes everything the client gets (accepted, acks,
segments, the final or error) from the run's outbox, so replies never interleave.
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
from broker.run import StreamRun
from broker.ws_protocol import PacketControl, packet_sink_setter
from whisperfarm.errors import (
    BadPacket,
    CloseCode,
    Interrupted,
    ProtocolError,
    Timeout,
    TooLarge,
    WhisperfarmError,
)
from whisperfarm.protocol import Accepted, End, Error, Final, Resume, Start, parse_client_message

log = logging.getLogger(__name__)
MAX_BINARY_BYTES = 1024 * 1024
"""The largest valid packet is 1000 frames × 8 channels × 4 bytes = 32 000 bytes."""


SEND_GRACE_S = 5.0
"""After an error: how long the sender may take to deliver what is queued and the error."""


class _ClientGone(Exception):
    pass


async def stream_endpoint(ws: WebSocket) -> None:
    farm: Farm = ws.app.state.farm
    await ws.accept()
    try:
        run = await _open(ws, farm)
    except _ClientGone:
        return
    except WhisperfarmError as exc:
        await _reply_error(ws, exc)
        return
    except Exception:
        log.error("unexpected error opening a stream", exc_info=True)
        await _reply_error(ws, _Internal("internal error; the stream was not opened"))
        return
    sender = asyncio.create_task(_send_outbox(ws, run))
    try:
        await _receive_upload(ws, farm, run)
        await _await_result(ws, run, sender)
    except _ClientGone:
        await farm.interrupt(run, "the client disconnected before end")
    except (Timeout, Interrupted) as exc:  # the job is kept for a `resume`
        _count_error(exc)
        run.emit(Error.from_exception(exc), exc.close_code)
        await _finish_sending(sender)
        await farm.interrupt(run, exc.detail)
    except WhisperfarmError as exc:
        log.info("stream error %s: %s", exc.code.value, exc.detail)
        farm.fail(run, exc)  # counts it; the error follows what the client has not got yet
        await _finish_sending(sender)
    except Exception:
        log.error("unexpected error on a stream", exc_info=True)
        farm.fail(run, _Internal("internal error; the job was not finished"))
        await _finish_sending(sender)
    finally:
        sender.cancel()


async def _open(ws: WebSocket, farm: Farm) -> StreamRun:
    first = await _receive_text(ws, farm.settings.idle_timeout)
    # Checked once the client has spoken, so the refusal answers its `start`.
    owner = farm.auth.owner(ws.headers, ws.query_params)
    message = parse_client_message(first)
    if isinstance(message, End):
        raise ProtocolError("end before start")
    if isinstance(message, Resume):
        run = await farm.resume_stream(message.job_id, owner)
    else:
        assert isinstance(message, Start)
        run = await farm.open_stream(message, owner)
    run.emit(Accepted(job_id=run.job_id, resume_from_frame=run.validator.frames))
    return run


async def _receive_upload(ws: WebSocket, farm: Farm, run: StreamRun) -> None:
    """Packets until `end`; returns once the run is ended (the sender then finishes)."""
    resumed_after_end = run.ended
    await _receive_packets(ws, farm, run)
    if resumed_after_end:
        farm.end_again(run)
    else:
        await farm.end_stream(run)


async def _receive_packets(ws: WebSocket, farm: Farm, run: StreamRun) -> None:
    """Hand packets to the farm until `end` arrives; any other text is a protocol error.

    Packets come straight from the WebSocket protocol where the server offers that
    (`broker.ws_protocol`), else as ASGI messages; `end` always comes as a message.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(farm.settings.idle_timeout) as deadline:
            idle = _IdleDeadline(deadline, farm.settings.idle_timeout, loop)
            with _DirectPackets.attached(ws, farm, run, idle) as direct:
                while True:
                    event = await _receive(ws)
                    idle.touch()
                    if direct is not None and direct.error is not None:
                        raise direct.error
                    data: bytes | None = event.get("bytes")
                    if data is None:
                        break
                    _take_packet(farm, run, data)
                    if farm.disk.congested():  # the ASGI way's backpressure: read later
                        _count_pause(farm)
                        await farm.disk.drained()
    except TimeoutError:
        raise Timeout(f"nothing received for {farm.settings.idle_timeout:g} s") from None
    message = parse_client_message(event.get("text") or "")
    if not isinstance(message, End):
        raise ProtocolError(f"unexpected {message.type} during the upload")


def _take_packet(farm: Farm, run: StreamRun, data: bytes) -> None:
    if len(data) > MAX_BINARY_BYTES:
        raise TooLarge(f"packet of {len(data)} bytes is far above 1000 frames")
    farm.receive_packet(run, data)


class _IdleDeadline:
    """The upload's idle timeout: one `asyncio.timeout` over the whole upload, pushed
    back at most ten times per period, not a `wait_for` per packet (that cost a task
    and a timer for each of 16 000 packets a second at a thousand streams). It fires
    between `timeout` and 1.1 × `timeout` after the last message."""

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
    woken to raise it, exactly as if it had read the packet itself. While the disk is
    `congested` it holds the connection's reading until the disk has drained. An `end`
    ends the upload here (`Farm.mark_ended`), a turn of the loop before the endpoint
    reads it; packets after it are dropped, as once the endpoint has it.
    """

    control: PacketControl
    """The connection's, set by `attached` as it hands the sink over."""

    def __init__(self, farm: Farm, run: StreamRun, idle: _IdleDeadline) -> None:
        self.farm, self.run, self.idle = farm, run, idle
        self.error: WhisperfarmError | None = None
        self.held = False
        self.ended = False

    @classmethod
    @contextlib.contextmanager
    def attached(
        cls, ws: WebSocket, farm: Farm, run: StreamRun, idle: _IdleDeadline
    ) -> Iterator[_DirectPackets | None]:
        """The sink, set for the `with` block (None where the server has no direct path)."""
        setter = packet_sink_setter(ws.scope)
        if setter is None:
            yield None
            return
        direct = cls(farm, run, idle)
        direct.control = setter(direct)
        try:
            yield direct
        finally:
            setter(None)  # packets after `end` are not the upload's
            direct.release()

    def __call__(self, data: bytes) -> None:
        if self.error is not None or self.ended:
            return
        try:
            _take_packet(self.farm, self.run, data)
            self.idle.touch()
        except WhisperfarmError as exc:
            self._keep(exc)
        except Exception:
            log.error("unexpected error taking a packet of job %s", self.run.job_id, exc_info=True)
            self._keep(_Internal("internal error; the job was not finished"))
        else:
            if not self.held and self.farm.disk.congested():
                self.held = True
                _count_pause(self.farm)
                self.control.hold()
                self.farm.disk.call_when_drained(self.release)

    def message(self, text: str) -> None:
        if self.error is not None or self.run.ended or not _is_end(text):
            return
        try:
            self.farm.mark_ended(self.run)
        except WhisperfarmError:
            return  # kept by the spool: the endpoint meets it when it reads `end`
        except Exception:
            log.error("unexpected error ending the upload of job %s", self.run.job_id,
                      exc_info=True)  # fmt: skip
            return  # the endpoint tries again when it reads `end`
        self.ended = True

    def _keep(self, error: WhisperfarmError) -> None:
        """Drop further packets and wake the endpoint to raise `error`."""
        self.error = error
        self.control.wake()

    def release(self) -> None:
        if self.held:
            self.held = False
            self.control.release()


def _is_end(text: str) -> bool:
    try:
        return isinstance(parse_client_message(text), End)
    except (WhisperfarmError, ValueError):
        return False  # the endpoint answers it


def _count_pause(farm: Farm) -> None:
    metrics.UPLOAD_PAUSES.inc()
    log.debug("disk backlog %d bytes: an upload waits for the disk", farm.disk.backlog)


async def _await_result(ws: WebSocket, run: StreamRun, sender: asyncio.Task[None]) -> None:
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
            run.detach()
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


async def _send_outbox(ws: WebSocket, run: StreamRun) -> None:
    """Write the run's messages in order; close after the final or error."""
    assert run.outbox is not None
    outbox = run.outbox
    try:
        while True:
            message, close = await outbox.get()
            await ws.send_text(message.dumps())
            if isinstance(message, Final | Error):
                await ws.close(int(close or CloseCode.NORMAL))
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        log.info("client of job %s went away before its result; the job goes on", run.job_id)
    finally:
        if run.outbox is outbox:  # not one a resumed connection has attached since
            run.detach()


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


class _Internal(WhisperfarmError):
    pass
