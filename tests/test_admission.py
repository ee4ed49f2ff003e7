"""Admission: at most --max-active streams, atomically, and free slots are reused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.farm import Broker, start_broker, start_worker, wait_for
from tests.wsclient import Reply, read_all, start_message, stream_pcm, tone


@pytest.fixture
def small_farm(tmp_path: Path) -> Iterator[Broker]:
    broker = start_broker(tmp_path, "--max-active", "2", "--retry-after", "7")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


async def _try_start(
    url: str, gate: asyncio.Barrier | None = None
) -> tuple[Reply, websockets.ClientConnection]:
    """Connect, wait at the barrier (all clients connected), then send `start` at once."""
    ws = await websockets.connect(url)
    if gate is not None:
        await gate.wait()
    await ws.send(start_message())
    return Reply([json.loads(await ws.recv())]), ws


async def test_third_stream_is_told_overloaded_then_admitted_once_a_slot_frees(
    small_farm: Broker,
) -> None:
    held = [await _try_start(small_farm.ws) for _ in range(2)]
    assert [r.last["type"] for r, _ in held] == ["accepted", "accepted"]

    async with websockets.connect(small_farm.ws) as ws:
        await ws.send(start_message())
        rejected = await read_all(ws, Reply())
    assert rejected.messages == [
        {"type": "error", "code": "overloaded", "detail": "Server overloaded, try later",
         "retry_after": 7.0}
    ]  # fmt: skip
    assert rejected.close_code == 1013
    assert small_farm.metric("whisperfarm_broker_streams_rejected_total") == 1
    assert small_farm.farm()["streams"] == {"active": 2, "limit": 2}

    _, first = held[0]
    await first.send(json.dumps({"type": "end"}))
    assert (await read_all(first, Reply())).last["type"] == "final"
    reply = await stream_pcm(small_farm.ws, tone(1.0))
    assert reply.last["type"] == "final"
    await held[1][1].close()


async def test_simultaneous_arrivals_never_exceed_the_limit(small_farm: Broker) -> None:
    gate = asyncio.Barrier(5)
    results = await asyncio.gather(*(_try_start(small_farm.ws, gate) for _ in range(5)))
    kinds = sorted(r.last["type"] for r, _ in results)
    assert kinds == ["accepted", "accepted", "error", "error", "error"]
    assert all(r.last["code"] == "overloaded" for r, _ in results if r.last["type"] == "error")
    assert small_farm.farm()["streams"]["active"] == 2
    for _, ws in results:
        await ws.close()
    wait_for(lambda: small_farm.farm()["streams"]["active"] == 0, 10, "slots to free")
    assert (await stream_pcm(small_farm.ws, tone(0.5))).last["type"] == "final"
