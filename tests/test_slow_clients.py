"""Slow readers: clients that upload but never read replies don't grow the broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets

from tests.farm import Broker
from tests.wsclient import Reply, packets, read_all, start_message, tone


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _upload_without_reading(url: str, pcm: bytes) -> websockets.ClientConnection:
    # A one-message receive queue: the broker's replies back up in the TCP buffers, unread.
    ws = await websockets.connect(url, max_queue=1)
    await ws.send(start_message())
    for packet in packets(pcm):
        await ws.send(packet)
    await ws.send(json.dumps({"type": "end"}))
    return ws


async def test_clients_that_never_read_do_not_stall_or_bloat_the_broker(
    broker: Broker, null_worker: object
) -> None:
    pcm = tone(30.0)
    before = rss_mb(broker.process.popen.pid)
    sockets = await asyncio.gather(*(_upload_without_reading(broker.ws, pcm) for _ in range(10)))
    assert broker.get("/healthz").status_code == 200, "the broker still answers"
    grown = rss_mb(broker.process.popen.pid) - before
    assert grown < 60, f"broker RSS grew {grown:.0f} MB for 10 unread 30 s streams"
    for ws in sockets:  # reading at last: every reply is still there, in order
        reply = await read_all(ws, Reply())
        assert reply.messages[0]["type"] == "accepted" and reply.last["type"] == "final"
        assert "30.0 s of audio" in reply.last["text"]
