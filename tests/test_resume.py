"""Resuming after `end`: a client that lost its connection still gets its final."""

from __future__ import annotations

import json
from pathlib import Path

import websockets

from tests.farm import start_broker, start_worker
from tests.wsclient import Reply, packets, read_all, start_message, tone


async def _resume_and_end(url: str, job_id: str) -> Reply:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        reply = Reply([json.loads(await ws.recv())])
        await ws.send(json.dumps({"type": "end"}))
        return await read_all(ws, reply)


async def test_drop_after_end_then_resume_gets_the_final(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    # 1 s of simulated inference per audio second: the job is still running when we drop.
    worker = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "1.0", engine="null")
    try:
        broker.wait_workers(1)
        async with websockets.connect(broker.ws) as ws:
            await ws.send(start_message())
            job_id = json.loads(await ws.recv())["job_id"]
            for packet in packets(tone(2.0)):
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
        assert broker.job(job_id)["status"] in {"transcribing", "queued", "streaming"}
        reply = await _resume_and_end(broker.ws, job_id)
        assert reply.messages[0] == {"type": "accepted", "job_id": job_id,
                                     "resume_from_frame": 32_000}  # fmt: skip
        assert reply.last["type"] == "final" and "2.0 s" in reply.last["text"]
        again = await _resume_and_end(broker.ws, job_id)
        assert again.last == reply.last, "a done job answers a repeated end with its final"
        assert broker.farm()["streams"]["active"] == 0
    finally:
        worker.process.stop()
        broker.process.stop()
