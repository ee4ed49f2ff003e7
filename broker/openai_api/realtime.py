"""`WS /v1/realtime?intent=transcription`: OpenAI's GA Realtime transcription session.

One connection is one live stream of the farm. Its admission slot is taken when the
connection opens (overloaded: an `error` event, then close 1013); the stream itself is
opened with the first audio, when its format is known (`realtime_session`), and ended
when the client leaves, so the whole session's transcript is a job like any other. A
client that leaves before sending audio leaves no job.

Client events: `session.update`, `input_audio_buffer.append` / `.commit` / `.clear`. A bad
one (not JSON, an unknown type, bad base64, a bad field) is answered with an `error` event
and the session goes on; a failure of the stream itself (the farm's error) is an `error`
event and the close code the native protocol uses for it. The token comes as
`Authorization: Bearer …` or, from browsers, as the `openai-insecure-api-key.<token>`
subprotocol. How the farm's replies become turns is `realtime_turns`'.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import metrics
from broker.admission import Reservation
from broker.farm import Farm
from broker.openai_api.realtime_audio import Packets
from broker.openai_api.realtime_events import error, event
from broker.openai_api.realtime_session import Session, SessionError
from broker.openai_api.realtime_turns import Turns
from broker.upload import ReadGate, Upload
from whisperfarm.errors import CloseCode, ProtocolError, Timeout, WhisperfarmError
from whisperfarm.protocol import Error, Final, Partial, Segment

log = logging.getLogger(__name__)

PATH = "/v1/realtime"
KEY_PROTOCOL = "openai-insecure-api-key."
"""A browser, which cannot set headers on a WebSocket, offers its key as a subprotocol."""
CLIENT_EVENTS = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                 "input_audio_buffer.clear")  # fmt: skip


async def realtime_endpoint(ws: WebSocket) -> None:
    farm: Farm = ws.app.state.farm
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    try:
        who = farm.identity(_with_key_protocol(ws.headers, offered), ws.query_params)
        if ws.query_params.get("intent") != "transcription":
            raise ProtocolError("this server serves transcription sessions only: connect "
                                "with ?intent=transcription")  # fmt: skip
        reservation = farm.reserve(who)
    except WhisperfarmError as exc:
        await _close_with_error(ws, exc.code.value, exc.detail, exc.close_code)
        return
    connection = _Connection(ws, farm, who, reservation)
    metrics.REALTIME_SESSIONS.inc()
    try:
        await connection.serve()
    finally:
        metrics.REALTIME_SESSIONS.dec()
        await connection.close()


def _with_key_protocol(headers: Any, offered: list[str]) -> dict[str, str]:
    """The request's headers, with a browser's subprotocol key as its bearer token."""
    found = dict(headers.items())
    for protocol in offered:
        if protocol.startswith(KEY_PROTOCOL) and "authorization" not in found:
            found["authorization"] = f"Bearer {protocol.removeprefix(KEY_PROTOCOL)}"
    return found


async def _close_with_error(ws: WebSocket, code: str, detail: str, close: CloseCode | None) -> None:
    """The farm's error as an `error` event, then the close code the native protocol uses."""
    log.info("realtime session error %s: %s", code, detail)
    metrics.STREAM_ERRORS.labels(code=code).inc()
    with contextlib.suppress(Exception):
        await ws.send_text(_farm_error(code, detail))
        await ws.close(int(close or CloseCode.INTERNAL))


def _farm_error(code: str, detail: str) -> str:
    kind = {
        "unauthorized": "invalid_request_error", "bad_message": "invalid_request_error",
        "overloaded": "rate_limit_error",
    }.get(code, "server_error")  # fmt: skip
    name = "invalid_api_key" if code == "unauthorized" else code
    return error(detail, kind=kind, code=name)


class _Connection:
    def __init__(self, ws: WebSocket, farm: Farm, who: Any, reservation: Reservation) -> None:
        self.ws, self.farm, self.who = ws, farm, who
        self.reservation = reservation
        self.session = Session()
        self.turns = Turns(self.session)
        self.upload: Upload | None = None
        self.packets: Packets | None = None
        self.gate = ReadGate()
        self.relay: asyncio.Task[None] | None = None
        self.uncommitted = False
        """Audio was appended since the last commit or clear."""
        self.failed = False
        """The stream failed (the client was told): it is not ended, only let go."""

    async def send(self, *texts: str) -> None:
        for text in texts:
            await self.ws.send_text(text)

    async def serve(self) -> None:
        await self.send(event("session.created", session=self.session.as_dict()))
        timeout = self.farm.settings.idle_timeout
        try:
            while True:
                await self.gate.open.wait()
                try:
                    async with asyncio.timeout(timeout):
                        message = await self.ws.receive()
                except TimeoutError:
                    raise Timeout(f"nothing received for {timeout:g} s") from None
                if message["type"] == "websocket.disconnect":
                    return
                await self._answer(message.get("text"))
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client is gone
            return
        except WhisperfarmError as exc:
            if self.upload is not None:
                self.upload.abort(exc)
            await self._fail(exc.code.value, exc.detail, exc.close_code)

    async def _answer(self, text: str | None) -> None:
        """One client event; a bad one gets an `error` event, and the session goes on."""
        client_event: dict[str, Any] = {}
        try:
            client_event = _parse(text)
            await self._handle(client_event)
        except SessionError as exc:
            event_id = client_event.get("event_id")
            at_fault = event_id if isinstance(event_id, str) else None
            await self.send(error(exc.message, code=exc.code, param=exc.param, event_id=at_fault))

    async def _handle(self, client_event: dict[str, Any]) -> None:
        kind = client_event["type"]
        if kind == "session.update":
            session = client_event.get("session")
            if not isinstance(session, dict):
                raise SessionError("session.update needs a session object", "session")
            before = (self.session.language, self.session.prompt)
            self.session.update(session, started=self.upload is not None)
            self._check_model()
            after = (self.session.language, self.session.prompt)
            if self.upload is not None and after != before:
                self.upload.retune(*after)  # from the next turn on
            await self.send(event("session.updated", session=self.session.as_dict()))
        elif kind == "input_audio_buffer.append":
            await self._append(client_event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            self._commit()
        else:
            await self._clear()

    def _check_model(self) -> None:
        try:
            self.farm.resolve_model(self.session.model)
        except WhisperfarmError as exc:
            self.session.model = None
            raise SessionError(exc.detail, "session.audio.input.transcription.model",
                               "model_not_found") from None  # fmt: skip

    async def _append(self, audio: object) -> None:
        if not isinstance(audio, str):
            raise SessionError("audio must be a base64 string", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise SessionError("audio is not valid base64", "audio") from None
        try:
            pcm = self.session.format.to_pcm(data)
        except ValueError as exc:
            raise SessionError(str(exc), "audio") from None
        if not pcm:
            return
        upload, packets = await self._stream()
        for packet in packets.take(pcm):
            upload.feed(packet)
        self.uncommitted = True

    async def _stream(self) -> tuple[Upload, Packets]:
        """The farm's stream, opened with the first audio."""
        if self.upload is None or self.packets is None:
            self.upload = await self.farm.open(self.session.start(), self.who, self.reservation)
            self.upload.read_with(self.gate)
            self.packets = Packets(self.session.format.audio)
            self.relay = asyncio.create_task(self._relay(self.upload))
        return self.upload, self.packets

    def _position(self) -> float:
        assert self.packets is not None
        return self.packets.sent * 1000 / self.session.format.rate

    def _commit(self) -> None:
        if self.upload is None or self.packets is None or not self.uncommitted:
            raise SessionError("the input audio buffer is empty: append audio first",
                               code="input_audio_buffer_commit_empty")  # fmt: skip
        packet = self.packets.flush()
        if packet is not None:
            self.upload.feed(packet)
        self.uncommitted = False
        self.turns.commit(self._position())
        self.upload.commit()

    async def _clear(self) -> None:
        if self.upload is not None and self.packets is not None:
            self.packets.drop()
            self.upload.clear()
            await self.send(*self.turns.clear(self._position()))
        self.uncommitted = False
        await self.send(event("input_audio_buffer.cleared"))

    async def _relay(self, upload: Upload) -> None:
        """The farm's replies as events; a farm error ends the session."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # client gone
            await self._relay_replies(upload)

    async def _relay_replies(self, upload: Upload) -> None:
        while True:
            message, close = await upload.replies.get()
            if isinstance(message, Segment):
                await self.send(*self.turns.on_segment(message))
            elif isinstance(message, Partial):
                await self.send(*self.turns.on_partial(message))
            elif isinstance(message, Error):
                await self.send(*self.turns.failed(message.detail))
                await self._fail(message.code.value, message.detail, close)
                return
            elif isinstance(message, Final):
                return

    async def _fail(self, code: str, detail: str, close: CloseCode | None) -> None:
        self.failed = True
        await _close_with_error(self.ws, code, detail, close)

    async def close(self) -> None:
        """The session is over: its stream ends, and the job goes on to its transcript."""
        self.reservation.release()
        upload, relay = self.upload, self.relay
        if relay is not None and not relay.done():
            relay.cancel()
        if upload is None or self.packets is None or self.failed:
            return
        upload.detach()
        try:
            packet = self.packets.flush()
            if packet is not None:
                upload.feed(packet)
            upload.end()
            await upload.settled()
        except WhisperfarmError as exc:
            log.info("realtime session of job %s ended badly: %s", upload.job_id, exc.detail)
            upload.abort(exc)


def _parse(text: str | None) -> dict[str, Any]:
    """A client event, or `SessionError` saying what is wrong with it."""
    if text is None:
        raise SessionError("events are JSON text messages; audio goes in "
                           "input_audio_buffer.append as base64")  # fmt: skip
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SessionError(f"the event is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SessionError("an event must be a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_EVENTS:
        raise SessionError(f"unknown event type {kind!r} (this transcription session takes "
                           f"{', '.join(CLIENT_EVENTS)})", "type", "unknown_event")  # fmt: skip
    return data
