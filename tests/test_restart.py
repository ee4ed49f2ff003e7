"""Broker restarts lose nothing: finished jobs are still served, unfinished ones resume."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import websockets

from tests.farm import start_broker, start_worker
from tests.wsclient import packets, start_message, stream_pcm, tone


async def test_finished_jobs_and_transcripts_survive_a_restart(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        final = (await stream_pcm(broker.ws, tone(1.5), name="kept.wav")).last
        before = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format="srt").text
        broker.process.stop()
        broker = start_broker(tmp_path, data_dir=broker.data_dir)
        job = broker.job(final["job_id"])
        assert job["status"] == "done" and job["name"] == "kept.wav"
        after = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format="srt")
        assert after.status_code == 200 and after.text == before
        assert [j["id"] for j in broker.jobs()] == [final["job_id"]]
    finally:
        worker.process.stop()
        broker.process.stop()


async def test_killed_broker_finishes_ended_uploads_and_marks_cut_ones_resumable(
    tmp_path: Path,
) -> None:
    """A job whose upload ended is re-queued after SIGKILL; a cut upload is `interrupted`."""
    broker = start_broker(tmp_path)
    try:
        # No worker yet: the ended job waits in the queue when the broker dies.
        async with websockets.connect(broker.ws) as ws:
            await ws.send(start_message(name="ended.wav"))
            ended_id = json.loads(await ws.recv())["job_id"]
            for packet in packets(tone(2.0)):
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
            while json.loads(await ws.recv()) != {"type": "ack", "frames": 32_000}:
                pass
            cut = await websockets.connect(broker.ws)
            await cut.send(start_message(name="cut.wav"))
            cut_id = json.loads(await cut.recv())["job_id"]
            broker.process.stop(signal.SIGKILL)
        broker = start_broker(tmp_path, data_dir=broker.data_dir)
        worker = start_worker(tmp_path, broker.zmq, engine="null")
        try:
            done = broker.wait_job(ended_id, {"done"}, timeout=30)
            assert done["duration"] == 2.0
            transcript = broker.get(f"/v1/jobs/{ended_id}/transcript").text
            assert "2.0 s" in transcript
            assert broker.job(cut_id)["status"] == "interrupted"
        finally:
            worker.process.stop()
    finally:
        broker.process.stop()
