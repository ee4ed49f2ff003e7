"""uvicorn's WebSocket protocol with a direct path for audio packets.

uvicorn turns every WebSocket frame into an ASGI message: a dict, a queue put, a task
wake-up and a queue get, and it pauses reading the socket until the application has
taken the message and resumes it after (an `epoll_ctl` each way). For `/v1/stream` at
a thousand real-time streams that is 16 000 round trips a second through the event
loop, for packets that the farm handles in a few microseconds without awaiting
anything: enough to make the loop fall behind.

`PacketProtocol` is uvicorn's sans-I/O protocol plus one extension in the connection's
ASGI scope (`SCOPE_KEY`): a function with which the stream endpoint hands over a
`PacketSink`. Once one is set, binary messages go from `data_received` straight to
it whenever the ASGI queue is empty; otherwise they queue behind what is there (uvicorn
stops reading while its queue holds messages, but frames parsed from the same read, a
text and then a packet, would let the packet overtake the text).
Text messages (`end`), close and disconnect take the ASGI path as before, so the
endpoint still sees the end of the upload in order: every packet before `end` has been
handed over when `end` is received. The sink also sees each text message first
(`PacketSink.message`), in order with the packets, just before it is queued for the
endpoint: the endpoint task runs a turn of the loop later (milliseconds at a thousand
streams), and the farm can act on `end` (the worker told, the upload's end time taken)
at once. A server without the extension (another ASGI
server) simply leaves the endpoint on the ASGI path.

Once a sink is set, `data_received` also takes complete, unfragmented binary frames off the
front of each read itself (`_take_packets`: a header check and websockets' C unmasking) and
hands only the rest to websockets' parser. websockets parses every frame in a generator,
through a stream reader's buffer, into a `Frame` object and an event list: per packet, a
large share of the broker's event loop at a thousand streams (`bench/RESULTS.md`, design
measurements). Anything else — a text, control or fragmented frame, a frame over the size
limit, a frame cut by the end of the read, a read while websockets still holds part of a
frame — goes to websockets as before, with everything after it, so order, limits and errors
stay websockets' own.

Setting a sink returns the connection's `PacketControl`: `wake` the endpoint, and
`hold`/`release` reading the socket (backpressure: the packets then wait in the
client's TCP send buffer, not in the broker's memory).

What this reads of uvicorn's and websockets' private state, and the versions it is
tested with, are `broker.ws_compat`'s: importing this module with other versions raises
`UnsupportedVersions` at once rather than failing each handshake (`python -m broker`
checks before it imports this, so the operator sees one line).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from broker import ws_compat

ws_compat.require_supported_versions()  # at import, not at each connection's first packet

CONNECTION_LOG = logging.getLogger("broker.connections")
"""Where uvicorn's and websockets' lines about each connection go (`"WebSocket
/v1/stream" [accepted]`, `connection open`, `connection closed`): three INFO lines per
stream cost the event loop a measurable share of a stream's life, what the broker runs
with `access_log=False` to avoid. `quiet_connection_lines` keeps them for DEBUG; errors
(an exception in the app, a refused handshake) still show."""

SCOPE_KEY = "whisperfarm.packet_sink"
"""Key in `scope["extensions"]`: a `SetPacketSink`."""

WAKE_MESSAGE = {"type": "websocket.receive"}
"""What `PacketSink.wake` queues: a message with neither text nor bytes, so an endpoint
waiting for the next ASGI message looks at its sink (e.g. for an error it kept)."""


FINAL_BINARY_FRAME = 0x82
"""A frame header's first byte: FIN, no extension bits, opcode 2 (binary)."""
MASKED = 0x80
"""In the second byte: the payload is masked (every client frame must be)."""


class PacketSink(Protocol):
    def __call__(self, data: bytes) -> None:
        """One binary message; must not raise (keep the error, then `wake` the endpoint)."""

    def message(self, text: str) -> bool:
        """A text message, just before it goes to the endpoint; must not raise. True:
        the sink took it, and the endpoint never sees it."""


class PacketControl(Protocol):
    def wake(self) -> None:
        """Give the endpoint waiting for an ASGI message an empty one (`WAKE_MESSAGE`)."""

    def hold(self) -> None:
        """Stop reading the socket until `release()`."""

    def release(self) -> None:
        """Read the socket again (unless uvicorn itself paused it, or it is closing)."""


class SetPacketSink(Protocol):
    def __call__(self, sink: PacketSink | None) -> PacketControl:
        """Set (None: remove) the sink; returns the connection's `PacketControl`."""


def packet_sink_setter(scope: Mapping[str, Any]) -> SetPacketSink | None:
    """The connection's `SetPacketSink`, or None on a server without the direct path."""
    setter: SetPacketSink | None = scope.get("extensions", {}).get(SCOPE_KEY)
    return setter


class PacketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol; binary messages to a sink when one is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packet_sink: PacketSink | None = None
        self.logger = CONNECTION_LOG
        self.conn.logger = CONNECTION_LOG
        self.conn.debug = CONNECTION_LOG.isEnabledFor(logging.DEBUG)
        self.frame_size_limit = ws_compat.frame_size_limit(self.conn)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # unset when the handshake was refused
        if scope is not None:  # the ASGI task starts later, on the next loop turn
            scope["extensions"][SCOPE_KEY] = self._set_packet_sink

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The setter in the scope is a method of this protocol, and the scope is this
        # protocol's: a reference cycle that kept every closed connection (transport,
        # websockets' protocol, queues: ~60 objects) for the garbage collector.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(SCOPE_KEY, None)

    def data_received(self, data: bytes) -> None:
        if not self.conn.reader.buffer:  # websockets holds no part of a frame
            data = self._take_packets(data)
            if not data:
                return
        super().data_received(data)

    def _direct_path_open(self) -> bool:
        """A sink is set and nothing is ahead of the next packet: no message queued for
        the endpoint, no fragmented message under way, the connection open."""
        return (
            self.packet_sink is not None
            and self.queue.empty()
            and not self.close_sent
            and ws_compat.partial_message_size(self.conn) is None
            and self.conn.state is State.OPEN
        )

    def _take_packets(self, data: bytes) -> bytes:
        """Hand the complete binary frames at the front of `data` to the sink (RFC 6455
        § 5.2) while the direct path is open; returns what is left for websockets'
        parser, from the first frame that is anything else."""
        limit = self.frame_size_limit
        start, size = 0, len(data)
        while size - start >= 2 and self._direct_path_open():
            if data[start] != FINAL_BINARY_FRAME or not data[start + 1] & MASKED:
                break
            length, mask_at = data[start + 1] & 0x7F, start + 2
            if length >= 126:
                width = 2 if length == 126 else 8
                length = int.from_bytes(data[mask_at : mask_at + width])
                mask_at += width
            payload_at = mask_at + 4
            if payload_at + length > size or (limit is not None and length > limit):
                break
            sink = self.packet_sink
            assert sink is not None
            start = payload_at + length
            sink(apply_mask(data[payload_at:start], data[mask_at:payload_at]))
        return data[start:] if start else data

    def _set_packet_sink(self, sink: PacketSink | None) -> PacketControl:
        self.packet_sink = sink
        return self

    def wake(self) -> None:
        self.queue.put_nowait(WAKE_MESSAGE)  # type: ignore[arg-type]

    def hold(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def release(self) -> None:
        # uvicorn pauses reading itself while its queue holds messages (`read_paused`)
        # and resumes once the endpoint has taken them: that pause is not ours to end.
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def send_receive_event_to_app(self) -> None:
        sink = self.packet_sink
        if sink is None or self.close_sent or not self.queue.empty():
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        if self.curr_msg_data_type == "bytes":
            self.frames = []
            sink(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            pass  # uvicorn's own path refuses it (1007)
        else:
            if sink.message(text):
                self.frames = []
                return
        super().send_receive_event_to_app()


def quiet_connection_lines(level: str) -> None:
    """Per-connection lines only when the broker logs at DEBUG (see `CONNECTION_LOG`)."""
    debug = logging.getLevelName(level.upper()) == logging.DEBUG
    CONNECTION_LOG.setLevel(logging.DEBUG if debug else logging.WARNING)
