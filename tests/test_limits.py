"""Limits and hostile input: long streams, odd names, a data dir that refuses writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.farm import ROOT, Broker, start_broker, start_worker, wait_for
from tests.speech import require_tool
from tests.wsclient import Reply, packets, read_all, start_message, stream_pcm, tone


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Broker]:
    broker = start_broker(tmp_path, "--max-stream-seconds", "2", "--max-stream-bytes", "200000")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    broker.wait_workers(1)
    yield broker
    worker.process.stop()
    broker.process.stop()


async def test_a_stream_past_the_duration_limit_is_cut_with_too_large(strict: Broker) -> None:
    reply = await stream_pcm(strict.ws, tone(3.0))
    assert reply.last["type"] == "error" and reply.last["code"] == "too_large"
    assert "longer than 2 s" in reply.last["detail"] and reply.close_code == 1009
    job = strict.job(reply.messages[0]["job_id"])
    assert job["status"] == "failed" and "longer than 2 s" in job["error"]
    assert (await stream_pcm(strict.ws, tone(1.5))).last["type"] == "final"


async def test_a_stream_past_the_byte_limit_is_cut_with_too_large(strict: Broker) -> None:
    reply = await stream_pcm(strict.ws, tone(1.0, rate=48_000, channels=4), channels=4,
                             sample_rate=48_000)  # fmt: skip
    assert reply.last["code"] == "too_large" and "bytes" in reply.last["detail"]


@pytest.mark.parametrize("name", ["../../../etc/passwd", "Запись №1 🎙.wav", 'a"b\\c\r\n.mp3'])
async def test_hostile_names_stay_data(strict: Broker, name: str) -> None:
    final = (await stream_pcm(strict.ws, tone(0.5), name=name)).last
    job = strict.job(final["job_id"])
    assert job["name"] == name
    response = strict.get(f"/v1/jobs/{job['id']}/transcript", format="srt")
    disposition = response.headers["content-disposition"]
    assert "/" not in disposition and "\\" not in disposition and "\n" not in disposition
    stored = strict.data_dir / "jobs" / job["id"] / "transcript.json"
    await asyncio.to_thread(wait_for, stored.exists, 10, "the transcript to be stored")
    assert not (strict.data_dir.parent / "etc").exists()


async def test_unwritable_spool_refuses_the_stream_and_recovers(strict: Broker) -> None:
    jobs_dir = strict.data_dir / "jobs"
    shutil.rmtree(jobs_dir, ignore_errors=True)
    jobs_dir.write_text("not a directory")  # every job dir under it now fails to create
    reply = await stream_pcm(strict.ws, tone(0.5))
    assert reply.last["code"] == "internal" and "cannot store audio" in reply.last["detail"]
    assert strict.farm()["streams"]["active"] == 0, "the slot was given back"
    jobs_dir.unlink()
    jobs_dir.mkdir()
    assert (await stream_pcm(strict.ws, tone(0.5))).last["type"] == "final"


def test_a_data_dir_that_is_a_file_stops_the_broker_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "data"
    bad.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--port", "0", "--zmq", "tcp://127.0.0.1:*",
         "--data-dir", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot start with data dir {bad}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_spool_is_deleted_once_the_transcript_is_durable(strict: Broker) -> None:
    final = (await stream_pcm(strict.ws, tone(1.0))).last
    job_dir = strict.data_dir / "jobs" / final["job_id"]
    gone = lambda: not (job_dir / "spool.pcm").exists()  # noqa: E731
    await asyncio.to_thread(wait_for, gone, 10, "the spool to be deleted")
    assert {p.name for p in job_dir.iterdir()} == {"transcript.json"}


def test_a_tiny_file_that_decodes_to_hours_is_stopped_at_the_limit(
    strict: Broker, tmp_path: Path
) -> None:
    """Decompression-bomb-like input: 4 KB of FLAC, 10 minutes of audio, a 2 s limit."""
    bomb = tmp_path / "bomb.flac"
    subprocess.run(
        [require_tool("ffmpeg"), "-v", "error", "-f", "lavfi", "-i",
         "anullsrc=r=16000:cl=mono", "-t", "600", str(bomb)],
        check=True, timeout=60,
    )  # fmt: skip
    assert bomb.stat().st_size < 200_000
    result = subprocess.run(
        [sys.executable, "-m", "source", "--url", strict.ws, "--out", str(tmp_path), "--quiet",
         str(bomb)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 4 and "longer than 2 s" in result.stderr, result.stderr
    assert strict.get("/healthz").status_code == 200


def disk_agent_pid(broker: Broker) -> int:
    """The broker's disk agent: its one child process."""
    children = broker.disk_agent_pids()
    assert len(children) == 1, children
    return children[0]


async def finish_resumed_upload(
    ws: websockets.ClientConnection, sent: list[bytes]
) -> dict[str, Any]:
    """After a `resume` (at least the first ack's 16 000 frames durable): send what the
    broker lacks and `end`; the last message."""
    accepted = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert accepted["type"] == "accepted", accepted
    assert accepted["resume_from_frame"] >= 16_000, "what was acked is there"
    for packet in sent[accepted["resume_from_frame"] // 1000 :]:
        await ws.send(packet)
    await ws.send(json.dumps({"type": "end"}))
    return (await read_all(ws, Reply([accepted]))).last


@pytest.mark.usefixtures("null_worker")
async def test_a_killed_disk_agent_interrupts_the_open_upload_and_a_resume_finishes_it(
    broker: Broker,
) -> None:
    """The uploads open when the agent dies are cut with `interrupted` (close 1012); what
    the dead agent had written stays, the client resumes from there and nothing is lost."""
    sent = packets(tone(3.0))
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        reply = Reply([json.loads(await ws.recv())])
        job_id = reply.messages[0]["job_id"]
        for packet in sent[:20]:  # an ack's worth (16) and then some
            await ws.send(packet)
        ack = json.loads(await ws.recv())
        assert ack == {"type": "ack", "frames": 16_000}, "durable in the spool"
        agent = disk_agent_pid(broker)
        os.kill(agent, signal.SIGKILL)
        wait_for(lambda: "disk agent exited" in broker.process.output(), 10, "the broker noticed")
        with contextlib.suppress(websockets.ConnectionClosed):  # closed on the error
            for packet in sent[20:]:
                await ws.send(packet)
        reply = await read_all(ws, reply)
    assert reply.last["type"] == "error", reply.messages
    assert reply.last["code"] == "interrupted" and reply.close_code == 1012
    assert broker.job(job_id)["status"] == "interrupted"
    assert broker.farm()["streams"]["active"] == 0, "the slot was given back"
    async with websockets.connect(broker.ws) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        final = await finish_resumed_upload(ws, sent)
    assert final["type"] == "final" and "3.0 s of audio" in final["text"], final
    assert disk_agent_pid(broker) != agent, "a new agent took over"
    assert broker.metric("whisperfarm_broker_disk_agent_exits_total") == 1


@pytest.mark.usefixtures("null_worker")
async def test_a_resume_whose_disk_barrier_meets_a_dying_agent_goes_on_with_the_next(
    broker: Broker,
) -> None:
    """A resume first waits for the disk agent to finish what it was handed (the cut
    upload's last packets); an agent that dies meanwhile has finished all it ever will.
    The resume goes on with a new agent, not refused with `internal`."""
    sent = packets(tone(2.0))
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        for packet in sent[:20]:
            await ws.send(packet)
        assert json.loads(await ws.recv()) == {"type": "ack", "frames": 16_000}
    wait_for(lambda: broker.job(job_id)["status"] == "interrupted", 10, "the cut upload")
    agent = disk_agent_pid(broker)
    os.kill(agent, signal.SIGSTOP)
    try:
        async with websockets.connect(broker.ws) as ws:
            await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
            await asyncio.sleep(0.3)  # the resume waits for the frozen agent's barrier
            os.kill(agent, signal.SIGKILL)
            final = await finish_resumed_upload(ws, sent)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent, signal.SIGKILL)
    assert final["type"] == "final" and "2.0 s of audio" in final["text"], final
    assert disk_agent_pid(broker) != agent, "a new agent took over"


@pytest.mark.usefixtures("null_worker")
async def test_a_paused_upload_whose_agent_died_is_interrupted_by_the_flush_timer(
    broker: Broker,
) -> None:
    """No packet comes to notice the dead agent: the timer's flush does, and says so."""
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        reply = Reply([json.loads(await ws.recv())])
        os.kill(disk_agent_pid(broker), signal.SIGKILL)
        wait_for(lambda: "disk agent exited" in broker.process.output(), 10, "the broker noticed")
        for packet in packets(tone(0.25)):  # 4 packets, under an ack's worth: the timer flushes
            await ws.send(packet)
        reply = await asyncio.wait_for(read_all(ws, reply), 10)
    assert reply.last["code"] == "interrupted" and reply.close_code == 1012, reply.messages
    assert broker.job(reply.messages[0]["job_id"])["status"] == "interrupted"


async def test_the_final_does_not_wait_for_the_disk_and_a_dead_agents_transcript_is_stored(
    tmp_path: Path,
) -> None:
    """The upload is over and durable; the disk agent freezes. The worker's final reaches
    the client all the same, and the transcript is served from memory while its commit
    waits in the agent's pipe; the spool is kept. The agent dies: a new one writes the
    transcript, and only then is the spool deleted."""
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "2.0", engine="null")
    try:
        broker.wait_workers(1)
        async with websockets.connect(broker.ws) as ws:
            await ws.send(start_message())
            reply = Reply([json.loads(await ws.recv())])
            job_id = reply.messages[0]["job_id"]
            for packet in packets(tone(1.0)):
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
            wait_for(lambda: broker.job(job_id)["status"] == "transcribing", 10, "upload durable")
            agent = disk_agent_pid(broker)
            os.kill(agent, signal.SIGSTOP)  # the transcript's commit (2 s on) waits in its pipe
            reply = await asyncio.wait_for(read_all(ws, reply), 10)
        assert reply.last["type"] == "final" and "1.0 s of audio" in reply.last["text"]
        assert broker.job(job_id)["status"] == "done"
        from_memory = broker.get(f"/v1/jobs/{job_id}/transcript", format="srt")
        assert from_memory.status_code == 200 and "1.0 s of audio" in from_memory.text
        job_dir = broker.data_dir / "jobs" / job_id
        assert {p.name for p in job_dir.iterdir()} == {"spool.pcm"}, "kept until it is durable"
        os.kill(agent, signal.SIGKILL)
        stored = lambda: (job_dir / "transcript.json").exists()  # noqa: E731
        await asyncio.to_thread(wait_for, stored, 10, "the next agent to store the transcript")
        gone = lambda: not (job_dir / "spool.pcm").exists()  # noqa: E731
        await asyncio.to_thread(wait_for, gone, 10, "the spool to be deleted")
        assert "storing its transcript again" in broker.process.output()
        assert broker.job(job_id)["status"] == "done"
        assert broker.get(f"/v1/jobs/{job_id}/transcript", format="srt").text == from_memory.text
    finally:
        worker.process.stop()
        broker.process.stop()


def test_a_stalled_broker_shows_in_its_event_loop_lag(strict: Broker) -> None:
    """The loop-lag histogram records what every stream would have waited: the broker
    stopped for 0.8 s (what a starved CPU or a long callback does) wakes its 100 ms
    timer 0.7–0.8 s late."""
    name = "whisperfarm_broker_event_loop_lag_seconds_bucket"

    def late_wakeups() -> float:
        """Samples between 0.5 and 1 s late."""
        return strict.metric(name, {"le": "1.0"}) - strict.metric(name, {"le": "0.5"})

    wait_for(lambda: strict.metric(name, {"le": "+Inf"}) >= 5, 10, "loop-lag samples")
    before = late_wakeups()
    os.kill(strict.process.popen.pid, signal.SIGSTOP)
    try:
        time.sleep(0.8)
    finally:
        os.kill(strict.process.popen.pid, signal.SIGCONT)
    wait_for(lambda: late_wakeups() > before, 10, "the late wake-up in the histogram")
