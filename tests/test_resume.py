"""Resuming after `end`: a client that lost its connection still gets its final."""

from __future__ import annotations

import asyncio
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


async def _cut_upload(url: str, sent: list[bytes]) -> str:
    """Start a stream, send `sent`, drop the connection; returns the job id."""
    async with websockets.connect(url) as ws:
        await ws.send(start_message())
        job_id: str = json.loads(await ws.recv())["job_id"]
        for packet in sent:
            await ws.send(packet)
    return job_id


async def _resume_rest_and_end(url: str, job_id: str, sent: list[bytes]) -> Reply:
    """Resume, send everything from the broker's frame on at once, `end` at once."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        accepted = json.loads(await ws.recv())
        assert accepted["type"] == "accepted", accepted
        for packet in sent[accepted["resume_from_frame"] // 1000 :]:
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        return await read_all(ws, Reply([accepted]))


async def test_end_while_a_resumed_upload_is_replayed_loses_nothing(tmp_path: Path) -> None:
    """The worker of a resumed upload first gets the spool replayed, then live packets.
    A client that sends its rest and `end` before that replay has caught up must still
    have every frame decoded: the replay has to know about writes still on their way to
    the spool (it once went by the file's size on disk and ended short, and the null
    engine's final said less audio than was sent)."""
    broker = start_broker(tmp_path, "--max-active", "30")
    worker = start_worker(tmp_path, broker.zmq, engine="null", slots=30)
    sent = packets(tone(4.0))
    try:
        broker.wait_workers(1)
        jobs = [await _cut_upload(broker.ws, sent[: 1 + i % 3]) for i in range(30)]
        for job_id in jobs:
            broker.wait_job(job_id, {"interrupted"})
        replies = await asyncio.gather(*(_resume_rest_and_end(broker.ws, j, sent) for j in jobs))
        texts = [reply.last.get("text", str(reply.last)) for reply in replies]
        assert all("4.0 s of audio" in text for text in texts), texts
    finally:
        worker.process.stop()
        broker.process.stop()


async def _try_resume(url: str, job_id: str) -> dict[str, object]:
    """Send `resume` and return the broker's answer (accepted or error); the connection
    stays open a moment so an accepted one is still attached when the other arrives."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        answer: dict[str, object] = json.loads(await ws.recv())
        await asyncio.sleep(0.5)
        return answer


async def test_two_resumes_of_one_job_at_once_attach_exactly_one(tmp_path: Path) -> None:
    """A resume opens the job's spool off the event loop; a second resume arriving
    meanwhile must be refused, not given a second run truncating the same spool."""
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        for _ in range(5):
            job_id = await _cut_upload(broker.ws, packets(tone(1.0)))
            broker.wait_job(job_id, {"interrupted"})
            answers = await asyncio.gather(*(_try_resume(broker.ws, job_id) for _ in range(4)))
            kinds = sorted(str(a["type"]) for a in answers)
            assert kinds == ["accepted", "error", "error", "error"], answers
            assert all(a["code"] == "not_found" for a in answers if a["type"] == "error")
        assert broker.farm()["streams"]["active"] <= 1
    finally:
        worker.process.stop()
        broker.process.stop()
