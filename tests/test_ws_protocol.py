"""The direct packet path: binary messages reach the sink in order, text stays ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.frames import Opcode
from websockets.server import ServerProtocol

from broker.http_protocol import UpgradingHttpProtocol
from broker.ws_protocol import PacketProtocol, packet_sink_setter
from tests.farm import start_broker, start_worker
from tests.wsclient import client_frame, stream_pcm, tone


class LoggingSink:
    """A packet sink that logs packets as `sink` and the text messages it is shown as
    `seen` (each then also reaches the app the ASGI way)."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def __call__(self, data: bytes) -> None:
        self.log.append(("sink", bytes(data)))

    def message(self, text: str) -> bool:
        self.log.append(("seen", text))
        return text == "take"


class Recorder:
    """An ASGI WebSocket app that logs what came which way."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.registered = asyncio.Event()
        self.control: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        first = await receive()  # before the sink: the ASGI way
        self.log.append(("asgi", first.get("bytes") or first.get("text")))
        setter = packet_sink_setter(scope)
        assert setter is not None, "PacketProtocol offers the sink in the scope"
        self.control = setter(LoggingSink(self.log))
        self.registered.set()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.log.append(("asgi", message.get("bytes") or message.get("text")))
            if message.get("text") == "stop":
                setter(None)
                await send({"type": "websocket.send", "text": "stopped"})
            if message.get("text") == "close":  # the broker closes after a final
                await send({"type": "websocket.close", "code": 1000})
                return


@contextlib.asynccontextmanager
async def serving(
    app: Recorder,
    max_size: int = 16 * 1024 * 1024,
    http: type[asyncio.Protocol] = UpgradingHttpProtocol,
) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=http,
        ws=PacketProtocol,
        lifespan="off",
        log_level="warning",
        ws_max_size=max_size,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await task


async def test_packets_go_to_the_sink_in_order_and_text_through_asgi() -> None:
    app = Recorder()
    async with serving(app) as url, websockets.connect(url) as ws:
        await ws.send(b"before")
        await asyncio.wait_for(app.registered.wait(), 5)
        for i in range(50):
            await ws.send(bytes([i]) * 100)
        await ws.send("stop")
        assert await asyncio.wait_for(ws.recv(), 5) == "stopped"
        await ws.send(b"after")  # the sink is gone: the ASGI way again
        await asyncio.sleep(0.2)
    assert app.log[0] == ("asgi", b"before")
    assert app.log[1:51] == [("sink", bytes([i]) * 100) for i in range(50)]
    assert app.log[51:] == [("seen", "stop"), ("asgi", "stop"), ("asgi", b"after")]


async def test_wake_gives_the_endpoint_an_empty_message() -> None:
    app = Recorder()
    async with serving(app) as url, websockets.connect(url) as ws:
        await ws.send("hello")
        await asyncio.wait_for(app.registered.wait(), 5)
        app.control.wake()
        await asyncio.sleep(0.2)
    assert app.log == [("asgi", "hello"), ("asgi", None)]


async def test_a_packet_never_overtakes_a_message_still_queued() -> None:
    """A text message and a packet parsed from one read: the text goes to the ASGI queue,
    so the packet must follow it there, not reach the sink before the app has read it."""
    app = Recorder()
    async with serving(app) as url, websockets.connect(url) as ws:
        await ws.send(b"before")
        await asyncio.wait_for(app.registered.wait(), 5)
        await ws.send("mark")  # both written before the server's next read
        await ws.send(b"packet")
        await asyncio.sleep(0.2)
        await ws.send(b"later")
        await asyncio.sleep(0.2)
    assert app.log == [
        ("asgi", b"before"),
        ("seen", "mark"),  # the sink sees a text first, then the app gets it
        ("asgi", "mark"),
        ("asgi", b"packet"),
        ("sink", b"later"),  # the queue was empty again
    ]


async def test_a_text_the_sink_takes_never_reaches_the_app() -> None:
    """A live client's `commit` is acted on by the sink, between the packets around it;
    the app must not see it again (it would act twice)."""
    app = Recorder()
    async with serving(app) as url, websockets.connect(url) as ws:
        await ws.send(b"before")
        await asyncio.wait_for(app.registered.wait(), 5)
        await asyncio.sleep(0.2)
        await ws.send("take")
        await asyncio.sleep(0.2)
        await ws.send(b"after")
        await ws.send("keep")
        await asyncio.sleep(0.2)
    assert app.log == [
        ("asgi", b"before"),
        ("seen", "take"),
        ("sink", b"after"),
        ("seen", "keep"),
        ("asgi", "keep"),
    ]


async def server_objects_left_to_the_collector(http: type[asyncio.Protocol]) -> int:
    """Open a few connections (packets to the sink, a text) that the server closes, as
    the broker does after a final; count the server's connection objects that only the
    cyclic garbage collector would free."""
    app = Recorder()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds stays in gc.garbage
    try:
        async with serving(app, http=http) as url:
            for _ in range(5):
                async with websockets.connect(url) as ws:
                    await ws.send(b"before")
                    await asyncio.wait_for(app.registered.wait(), 5)
                    await ws.send(b"packet")
                    await ws.send("close")
                    await asyncio.wait_for(ws.wait_closed(), 5)
            await asyncio.sleep(0.3)  # the server has seen every close
        gc.collect()
        server_side = (HttpToolsProtocol, PacketProtocol, ServerProtocol)
        return sum(isinstance(obj, server_side) for obj in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_closed_connections_leave_no_cycles_for_the_garbage_collector() -> None:
    """A closed connection must be freed by reference counting as it closes, not left
    in reference cycles (uvicorn's HTTP protocol and its parser after the upgrade; the
    packet-sink setter in the WebSocket protocol's own scope) for young collections
    that stop the event loop while streams start and end all the time. uvicorn's own
    HTTP protocol leaves its cycle (if this first check fails, uvicorn fixed it:
    `UpgradingHttpProtocol` can go)."""
    assert await server_objects_left_to_the_collector(HttpToolsProtocol) >= 5
    assert await server_objects_left_to_the_collector(UpgradingHttpProtocol) == 0


async def registered_client(app: Recorder, url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url, compression=None)
    await ws.send(b"before")
    await asyncio.wait_for(app.registered.wait(), 5)
    return ws


async def test_frames_in_one_read_and_frames_cut_across_reads_all_reach_the_sink() -> None:
    """The direct frame path: short, 16-bit and 64-bit lengths, several in one write,
    and frames cut anywhere (in the header, in the mask, in the payload) that websockets
    completes before the direct path goes on."""
    app = Recorder()
    payloads = [b"a" * 10, b"b" * 2000, b"c" * 70_000, b"d" * 125, b"e" * 126]
    stream = b"".join(client_frame(Opcode.BINARY, p) for p in payloads)
    async with serving(app) as url:
        ws = await registered_client(app, url)
        ws.transport.write(stream)  # all at once
        for cut in (1, 3, 7, 2005):  # then the same frames in two writes, cut at `cut`
            ws.transport.write(stream[:cut])
            await asyncio.sleep(0.05)
            ws.transport.write(stream[cut:])
        await ws.send("stop")
        assert await asyncio.wait_for(ws.recv(), 5) == "stopped"
        await ws.close()
    assert app.log[0] == ("asgi", b"before")
    assert app.log[1:-2] == [("sink", p) for p in payloads] * 5
    assert app.log[-2:] == [("seen", "stop"), ("asgi", "stop")]


async def test_text_control_and_fragmented_frames_keep_their_order() -> None:
    """In one write: packets, a ping, a fragmented binary message, a text, packets.
    websockets takes over at the ping; the fragments arrive joined, and nothing
    overtakes the text; once the queue is empty, packets take the direct path again."""
    app = Recorder()
    stream = b"".join([
        client_frame(Opcode.BINARY, b"one"),
        client_frame(Opcode.PING, b"are you there"),
        client_frame(Opcode.BINARY, b"two"),
        client_frame(Opcode.BINARY, b"frag", fin=False),
        client_frame(Opcode.CONT, b"ments"),
        client_frame(Opcode.TEXT, b"mark"),
        client_frame(Opcode.BINARY, b"queued"),
    ])  # fmt: skip
    async with serving(app) as url:
        ws = await registered_client(app, url)
        ws.transport.write(stream)
        await asyncio.sleep(0.2)
        await ws.send(b"later")
        await asyncio.sleep(0.2)
        await ws.close()
    assert app.log == [
        ("asgi", b"before"),
        ("sink", b"one"),
        ("sink", b"two"),
        ("sink", b"fragments"),
        ("seen", "mark"),
        ("asgi", "mark"),
        ("asgi", b"queued"),
        ("sink", b"later"),
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(Opcode.BINARY, b"x" * 1001), 1009),  # over the limit
        (client_frame(Opcode.BINARY, b"unmasked", mask=False), 1002),
    ],
)
async def test_bad_frames_get_websockets_own_errors(frame: bytes, code: int) -> None:
    """What the direct path does not take, websockets judges as before: a frame over the
    size limit closes with 1009, an unmasked client frame with 1002; the packets before
    it were delivered."""
    app = Recorder()
    async with serving(app, max_size=1000) as url:
        ws = await registered_client(app, url)
        ws.transport.write(client_frame(Opcode.BINARY, b"fine") + frame)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == code
    assert app.log == [("asgi", b"before"), ("sink", b"fine")]


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
async def test_per_connection_lines_only_at_debug(tmp_path: Path, level: str, shown: bool) -> None:
    """uvicorn's and websockets' three INFO lines per connection cost the loop more than
    the stream's job saves; a broker logs them only at DEBUG."""
    broker = start_broker(tmp_path, "--log-level", level)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        reply = await stream_pcm(broker.ws, tone(1.0))
        assert reply.last["type"] == "final"
        broker.process.stop()  # after the connection's last line, whichever it is
        output = broker.process.output()
        for line in ("connection open", '"WebSocket /v1/stream" [accepted]'):
            assert (line in output) is shown, (line, output[-2000:])
        assert shown or "connection closed" not in output
    finally:
        worker.process.stop()
        broker.process.stop()
