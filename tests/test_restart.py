"""Broker restarts lose nothing: finished jobs are still served, unfinished ones resume."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
from pathlib import Path

import websockets

from tests.farm import start_broker, start_worker, wait_for
from tests.wsclient import Reply, packets, read_all, start_message, stream_pcm, tone


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


def _roll_back_status(database: Path, job_id: str, status: str) -> None:
    """What a power cut can do: the job table commits without an fsync, so its last
    commits (here: `done`) may be lost while the fsynced transcript survives."""
    db = sqlite3.connect(database)
    try:
        with db:
            (data,) = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            job = json.loads(data) | {"status": status, "finished_at": None}
            db.execute(
                "UPDATE jobs SET status = ?, data = ? WHERE id = ?",
                (status, json.dumps(job), job_id),
            )
    finally:
        db.close()


async def test_a_stored_transcript_counts_as_done_even_if_the_job_table_lost_it(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        final = (await stream_pcm(broker.ws, tone(1.5), name="stored.wav")).last
    finally:
        worker.process.stop()
        broker.process.stop()
    _roll_back_status(broker.data_dir / "jobs.sqlite3", final["job_id"], "transcribing")
    broker = start_broker(tmp_path, data_dir=broker.data_dir)  # no worker: nothing to redo
    try:
        job = broker.job(final["job_id"])
        assert job["status"] == "done" and job["error"] is None and job["duration"] == 1.5
        text = broker.get(f"/v1/jobs/{final['job_id']}/transcript").text
        assert text.strip() == final["text"]
    finally:
        broker.process.stop()


async def test_a_done_job_whose_transcript_never_reached_the_disk_is_transcribed_again(
    tmp_path: Path,
) -> None:
    """What a power cut right after a final can leave: the job table says `done`, but
    the transcript, written behind the final, is not on disk. The spool (deleted only
    once the transcript is durable) is: the restarted broker transcribes the job again.
    Where the spool is gone too, the job is failed with the reason, not left `done`
    without a transcript."""
    broker = start_broker(tmp_path, "--spool-retention", "-1")  # keep spools: lose the file
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        redo = (await stream_pcm(broker.ws, tone(1.5), name="redo.wav")).last
        lost = (await stream_pcm(broker.ws, tone(0.5), name="lost.wav")).last
        broker.process.stop()
        for final in (redo, lost):
            (broker.data_dir / "jobs" / final["job_id"] / "transcript.json").unlink()
        (broker.data_dir / "jobs" / lost["job_id"] / "spool.pcm").unlink()
        worker.process.stop()
        broker = start_broker(tmp_path, data_dir=broker.data_dir)
        worker = start_worker(tmp_path, broker.zmq, engine="null")
        done = lambda: broker.job(redo["job_id"])["status"] == "done"  # noqa: E731
        wait_for(done, 20, "the job to be transcribed again")
        text = broker.get(f"/v1/jobs/{redo['job_id']}/transcript").text
        assert text.strip() == redo["text"]
        assert "did not reach the disk; transcribing again" in broker.process.output()
        job = broker.job(lost["job_id"])
        assert job["status"] == "failed" and "lost before it reached the disk" in job["error"]
        assert broker.get(f"/v1/jobs/{lost['job_id']}/transcript").status_code == 409
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_workers_reconnect_and_cut_uploads_resume_after_a_broker_kill(
    tmp_path: Path,
) -> None:
    """Same ports after the restart: the old worker rejoins alone, the client resumes."""
    ports = ["--port", str(_free_port()), "--zmq", f"tcp://127.0.0.1:{_free_port()}"]
    broker = start_broker(tmp_path, *ports)
    worker = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "2", engine="null")
    sent = packets(tone(3.0))
    try:
        broker.wait_workers(1)
        async with websockets.connect(broker.ws) as ws:
            await ws.send(start_message(name="ended.wav"))
            ended_id = json.loads(await ws.recv())["job_id"]
            for packet in sent:
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
            while json.loads(await ws.recv()) != {"type": "ack", "frames": 48_000}:
                pass
            cut = await websockets.connect(broker.ws)
            await cut.send(start_message(name="cut.wav"))
            cut_id = json.loads(await cut.recv())["job_id"]
            for packet in sent[:20]:
                await cut.send(packet)
            while json.loads(await cut.recv())["type"] != "ack":
                pass
            broker.process.stop(signal.SIGKILL)
            await cut.close()
        broker = start_broker(tmp_path, *ports, data_dir=broker.data_dir)
        broker.wait_workers(1, timeout=30)  # the same worker process, reconnected by itself
        assert broker.wait_job(ended_id, {"done"}, timeout=30)["duration"] == 3.0
        async with websockets.connect(broker.ws) as ws:
            await ws.send(json.dumps({"type": "resume", "job_id": cut_id}))
            accepted = json.loads(await ws.recv())
            assert accepted["type"] == "accepted" and accepted["resume_from_frame"] >= 16_000
            for packet in sent[accepted["resume_from_frame"] // 1000 :]:
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
            reply = await read_all(ws, Reply())
        assert reply.last["type"] == "final" and "3.0 s of audio" in reply.last["text"]
        assert worker.process.popen.poll() is None
    finally:
        worker.process.stop()
        broker.process.stop()
