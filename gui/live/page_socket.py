"""`/live/ws`: the page's microphone socket, relayed to the broker by `LiveRelay`.

Browser → GUI: binary packets of mono s16le at the `rate` the URL names, and
`{"type":"stop"}`. GUI → browser: `ready` (the resume key and how many frames the GUI
holds), `ack` (frames held, every `ACK_EVERY_PACKETS`), `accepted`, `partial`,
`segment`, `reconnecting` / `resumed` (the broker connection dropped / is back), then
`final` or `error` (`kind`: overloaded, broker_down, failed, unauthorized, bad_request),
then close.

A page session outlives its socket for `resume_seconds`: a page whose connection
dropped reconnects with `?resume=<key>&seen=<its last segment id>` and re-sends from the
frame `ready` names; the GUI sends what the page lacks (segments after `seen`, the
current partial, the final if it came). A page that never comes back is
stopped (its audio so far is transcribed, the job is kept). The socket opens only with a
ticket (`tickets.py`) or a live session's resume key, so the sign-in applies and the
browser never learns the broker's address or token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gui.live.relay import ErrorKind, LiveRelay, LiveSession
from gui.live.tickets import LiveGrant, Tickets
from gui.settings import MAX_LIVE_RATE as MAX_RATE
from gui.settings import MIN_LIVE_RATE as MIN_RATE
from whisperfarm.errors import CloseCode
from whisperfarm.packets import FRAMES_PER_PACKET
from whisperfarm.protocol import Final, Segment

log = logging.getLogger(__name__)

PATH = "/live/ws"
RESUME_SECONDS = 30.0
"""How long a page's stream waits for the page to reconnect before it is stopped."""
ACK_EVERY_PACKETS = 8
"""Half a second at 16 kHz: the page forgets its copy of what the GUI holds."""
MAX_PACKET_BYTES = FRAMES_PER_PACKET * 2 * 8
"""A page sends 1000-frame packets; a few stuck together after a stall are fine."""


class PageSession:
    """One page's live stream: a `LiveSink` whose messages wait for the page's socket."""

    def __init__(self, relay: LiveRelay, grant: LiveGrant, rate: int) -> None:
        self.key = secrets.token_urlsafe(24)
        self._outbox: deque[dict[str, Any]] = deque()
        self._posted = asyncio.Event()
        self._accepted: dict[str, Any] | None = None
        self._segments: list[dict[str, Any]] = []
        self._partial = ""
        self._last: dict[str, Any] | None = None
        """The final or an error: nothing comes after it."""
        self.socket: WebSocket | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.stream: LiveSession = relay.open(self, grant.language, rate, grant.person)

    @property
    def ended(self) -> bool:
        return self._last is not None

    # ---- LiveSink ----------------------------------------------------------------------

    def accepted(self, job_id: str) -> None:
        self._accepted = {"type": "accepted", "job_id": job_id}
        self._post(self._accepted)

    def partial(self, text: str) -> None:
        self._partial = text
        self._post({"type": "partial", "text": text})

    def segment(self, segment: Segment) -> None:
        message = {"type": "segment", "id": segment.id, "start": segment.start,
                   "end": segment.end, "text": segment.text}  # fmt: skip
        self._segments.append(message)
        self._partial = ""
        self._post(message)

    def final(self, final: Final) -> None:
        self._end({"type": "final", "job_id": final.job_id, "text": final.text})

    def error(self, kind: ErrorKind, detail: str, retry_after: float | None) -> None:
        self._end({"type": "error", "kind": kind, "detail": detail, "retry_after": retry_after})

    def reconnecting(self) -> None:
        self._post({"type": "reconnecting"})

    def resumed(self) -> None:
        self._post({"type": "resumed"})

    def ack(self) -> None:
        """Tell the page how much the GUI holds (through the outbox: one writer per socket)."""
        self._post({"type": "ack", "frames": self.stream.frames})

    def _end(self, message: dict[str, Any]) -> None:
        self._last = message
        self._post(message)

    def _post(self, message: dict[str, Any]) -> None:
        self._outbox.append(message)
        self._posted.set()

    # ---- the page's socket -------------------------------------------------------------

    async def deliver(self, ws: WebSocket) -> None:
        """Send the outbox to `ws` as it fills, while `ws` is the page's socket.

        Returns once the last message went out, or once a newer socket took over (a
        message sent into a connection that was dying is made good by `attach`).
        """
        while self.socket is ws:
            while self._outbox and self.socket is ws:
                await ws.send_text(json.dumps(self._outbox[0], separators=(",", ":")))
                self._outbox.popleft()
            if self.ended and not self._outbox:
                return
            self._posted.clear()
            await self._posted.wait()

    def attach(self, ws: WebSocket, seen: int | None) -> WebSocket | None:
        """`ws` is the page's socket now; returns the one it replaces (a stale connection).

        A page coming back says the last segment id it has (`seen`): the outbox becomes
        what it lacks — the segments after it, the current partial, the end if any — so
        nothing said while it was away, nor anything sent into the dying socket, is lost.
        """
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if seen is not None:
            missed = [m for m in self._segments if m["id"] > seen]
            tail = [{"type": "partial", "text": self._partial}] if self._partial else []
            end = [self._last] if self._last else []
            start = [self._accepted] if self._accepted else []
            self._outbox = deque([*start, *missed, *tail, *end])
        previous, self.socket = self.socket, ws
        self._posted.set()  # the previous socket's writer sees it is replaced
        return previous

    def detach(self, ws: WebSocket, resume_seconds: float) -> None:
        """The page's socket went away: stop the stream unless the page is back in time."""
        if self.socket is not ws:
            return  # already replaced by the page's new socket
        self.socket = None
        if not self.ended:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(resume_seconds, self._expire)

    def _expire(self) -> None:
        log.info("a live page did not come back; stopping its stream")
        self.stream.stop()


class LivePages:
    """The page sessions of this GUI, by resume key, and the tickets that open new ones."""

    def __init__(self, relay: LiveRelay, resume_seconds: float = RESUME_SECONDS) -> None:
        self.relay, self.tickets = relay, Tickets()
        self._resume_seconds = resume_seconds
        self._sessions: dict[str, PageSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, ws: WebSocket) -> None:
        """The `/live/ws` route: one connection of one page."""
        await ws.accept()
        session, refusal = self._session_for(ws)
        if session is None:
            await _refuse(ws, *refusal)
            return
        if (stale := session.attach(ws, _seen(ws))) is not None:
            self._spawn(_close_quietly(stale), "close a replaced live socket")
        await ws.send_text(json.dumps({"type": "ready", "resume": session.key,
                                       "frames": session.stream.frames}))  # fmt: skip
        try:
            await _pump(ws, session)
        finally:
            session.detach(ws, self._resume_seconds)

    def _session_for(self, ws: WebSocket) -> tuple[PageSession | None, tuple[str, str]]:
        params = ws.query_params
        if "resume" in params:
            session = self._sessions.get(params["resume"])
            if session is None:
                return None, ("unauthorized", "that live session is over")
            return session, ("", "")
        grant = self.tickets.redeem(params.get("ticket", ""))
        if grant is None:
            return None, ("unauthorized", "no valid ticket: reload the page")
        rate = params.get("rate", "")
        if not rate.isdigit() or not MIN_RATE <= int(rate) <= MAX_RATE:
            return None, ("bad_request", f"sample rate must be {MIN_RATE}–{MAX_RATE} Hz")
        session = PageSession(self.relay, grant, int(rate))
        self._sessions[session.key] = session
        self._spawn(self._forget_when_done(session), "live page session")
        return session, ("", "")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget_when_done(self, session: PageSession) -> None:
        await session.stream.final()
        # The page has `resume_seconds` to fetch the last messages after a drop.
        await asyncio.sleep(self._resume_seconds if session.socket is None else 0)
        self._sessions.pop(session.key, None)

    @property
    def active(self) -> int:
        """Page sessions held now (tests check that finished ones are forgotten)."""
        return len(self._sessions)


async def _pump(ws: WebSocket, session: PageSession) -> None:
    """Read the page's packets while delivering the relay's messages; end with either."""
    reader = asyncio.create_task(_read(ws, session))
    writer = asyncio.create_task(session.deliver(ws))
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if writer in done and writer.exception() is None:
            await ws.close(CloseCode.NORMAL)  # the final (or an error) went out
        elif reader in done and (refusal := reader.result()) is not None:
            await _refuse(ws, *refusal)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the page went away while we closed
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)


async def _read(ws: WebSocket, session: PageSession) -> tuple[str, str] | None:
    """Feed packets to the stream until the page goes; a refusal ends the connection."""
    packets = 0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        if (data := message.get("bytes")) is not None:
            if len(data) % 2 or not 0 < len(data) <= MAX_PACKET_BYTES:
                return "bad_request", "packets are whole s16le frames, at most 8000 of them"
            session.stream.feed(data)
            packets += 1
            if packets % ACK_EVERY_PACKETS == 0:
                session.ack()
        elif _message_type(message.get("text")) == "stop":
            session.stream.stop()
        else:
            return "bad_request", 'text messages are {"type":"stop"}'


def _seen(ws: WebSocket) -> int | None:
    """A resuming page's last segment id (`seen`, -1: none yet); None for a new session."""
    if "resume" not in ws.query_params:
        return None
    seen = ws.query_params.get("seen", "-1")
    return int(seen) if seen.lstrip("-").isdigit() else -1


def _message_type(text: str | None) -> str | None:
    try:
        parsed = json.loads(text or "")
    except ValueError:
        return None
    return parsed.get("type") if isinstance(parsed, dict) else None


async def _close_quietly(ws: WebSocket) -> None:
    """A socket the page gave up on: its closing handshake may never complete."""
    with contextlib.suppress(Exception):
        await ws.close(CloseCode.NORMAL)


async def _refuse(ws: WebSocket, kind: str, detail: str) -> None:
    """An `error` the page shows, then a close code that says why."""
    code = CloseCode.POLICY if kind == "unauthorized" else CloseCode.BAD_DATA
    if ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"type": "error", "kind": kind, "detail": detail}))
            await ws.close(code)
