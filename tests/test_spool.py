"""The broker's spool writer and group commit: packets gathered, flushed, made durable."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import signal
from pathlib import Path

import pytest
import websockets

from broker.disk import Disk
from broker.disk.agent import LOCK_NAME
from broker.disk.wire import FrameReader, Op, frame
from broker.durability import GroupSync
from broker.farm import Farm
from broker.run import StreamRun
from broker.settings import BrokerSettings
from broker.spool import FLUSH_INTERVAL_S, JobFiles, SpoolWriter
from tests.disk_support import agent_stopped
from tests.farm import Broker, wait_for
from tests.wsclient import packets, start_message, tone
from whisperfarm.errors import Interrupted
from whisperfarm.jobs import Job
from whisperfarm.packets import PacketValidator
from whisperfarm.protocol import Start


async def test_packets_wait_in_memory_until_a_flush_writes_them_in_one_go(
    tmp_path: Path, disk: Disk
) -> None:
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    assert files.spool_path.exists(), "the agent created the job's directory and spool"
    spool.append(b"a" * 2000, 1.0)
    spool.append(b"b" * 2000, 2.0)
    assert (spool.size, spool.written, spool.pending, spool.pending_packets) == (4000, 0, 4000, 2)
    assert spool.pending_since == 1.0, "the age of the oldest pending packet decides a flush"
    due = 1.0 + FLUSH_INTERVAL_S
    assert not spool.flush_due(due - 0.01) and spool.flush_due(due), "due after FLUSH_INTERVAL_S"
    assert files.spool_size() == 0
    assert spool.flush() == b"a" * 2000 + b"b" * 2000
    assert (spool.size, spool.written, spool.pending, spool.pending_packets) == (4000, 4000, 0, 0)
    await disk.barrier()
    assert files.spool_size() == 4000, "in the file once the agent gets to it"
    assert spool.flush() == b"", "nothing pending: nothing to forward"
    assert not spool.flush_due(99.0)
    spool.append(b"c" * 64_000, 100.0)
    assert spool.flush_due(100.0), "a flush's worth is due at once"


async def test_a_read_queued_after_appends_sees_them(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    with agent_stopped(disk):
        spool.append(b"0123456789", 0.0)
        spool.flush()
        reading = asyncio.ensure_future(disk.read(files.spool_path, 2, 5))
        await asyncio.sleep(0.05)
        assert not reading.done()
    assert await reading == b"23456"


async def test_close_writes_what_is_pending(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    spool.append(b"x" * 10, 0.0)
    closed = spool.close()
    assert closed is not None
    await closed
    assert files.spool_path.read_bytes() == b"x" * 10
    assert spool.close() is None, "closed once"


async def test_a_resumed_spool_keeps_only_the_bytes_asked_for(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    files.dir.mkdir(parents=True)
    files.spool_path.write_bytes(b"y" * 2500)
    spool = await SpoolWriter.open(files, disk, keep_bytes=2000)
    assert (spool.written, spool.size) == (2000, 2000)
    spool.append(b"z", 0.0)
    spool.close()
    await disk.close()  # the agent finishes what was queued before it exits
    assert files.spool_path.read_bytes() == b"y" * 2000 + b"z"


async def test_a_failed_write_is_raised_and_nothing_is_appended_after_it(
    tmp_path: Path, disk: Disk
) -> None:
    files = JobFiles(tmp_path, "job")
    files.dir.mkdir(parents=True)
    files.spool_path.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    spool = await SpoolWriter.open(files, disk)
    spool.append(b"a", 0.0)
    spool.flush()
    await disk.barrier()
    assert isinstance(spool.error, OSError) and spool.error.errno == errno.ENOSPC
    spool.append(b"b", 0.0)
    with pytest.raises(OSError):
        spool.flush()


async def test_a_detached_spool_still_counts_the_writes_on_their_way_to_disk(
    tmp_path: Path, disk: Disk
) -> None:
    """After `end` the spool is detached while its last writes wait for the agent; a
    replay must still see them (going by the file's size, it ended short)."""
    job = Job(id="job", name="t.wav", created_at=0.0, updated_at=0.0,
              sample_rate=16_000, channels=1, format="s16le")  # fmt: skip
    files = JobFiles(tmp_path, job.id)
    audio = job.audio_format()
    run = StreamRun(job, files, audio, PacketValidator(audio), await SpoolWriter.open(files, disk))
    with agent_stopped(disk):
        assert run.spool is not None
        run.spool.append(b"a" * 2000, 0.0)
        run.spool.flush()
        spool = run.take_spool()
        assert spool is not None and run.spool is None
        assert files.spool_size() == 0, "the write has not landed"
        assert run.written_bytes() == run.received_bytes() == 2000
        closed = spool.close(sync=False)
    assert closed is not None
    await closed
    assert files.spool_size() == run.written_bytes() == 2000


async def test_a_transcript_commit_creates_its_directory_and_replaces_the_file(
    tmp_path: Path, disk: Disk
) -> None:
    path = tmp_path / "jobs" / "job" / "transcript.json"
    await disk.commit(path, b"first")
    await disk.commit(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["transcript.json"], "no temp file left"
    below_a_file = path / "x"
    with pytest.raises(FileExistsError) as failed:  # its directory is a file
        await disk.commit(below_a_file, b"")
    assert failed.value.filename == str(below_a_file), "the agent's error, as an OSError"


async def test_a_killed_agent_fails_its_spools_and_a_new_one_takes_over(
    tmp_path: Path, disk: Disk
) -> None:
    """Nothing waits forever on a dead agent: a barrier has nothing more to wait for (the
    dead agent has done all it will), open spools fail (their streams get "cannot store
    audio" and may resume), and the next request starts a new agent."""
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    first = disk.agent_pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # the append and the barrier wait in the pipe
    spool.append(b"a" * 100, 0.0)
    spool.flush()
    waiting = asyncio.ensure_future(disk.barrier())
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(waiting, 5)  # passed, not failed
    assert isinstance(spool.error, OSError) and "disk agent exited" in str(spool.error)
    assert disk.backlog == 0, "nothing is on its way to disk any more"
    disk.discard(files.spool_path)  # with no agent running: a new one deletes it
    spool.append(b"b", 0.0)
    with pytest.raises(OSError, match="disk agent"):
        spool.flush()
    again = await SpoolWriter.open(JobFiles(tmp_path, "next"), disk)
    assert disk.agent_pid not in (None, first)
    again.append(b"c" * 10, 0.0)
    again.flush()
    await disk.barrier()
    assert JobFiles(tmp_path, "next").spool_size() == 10
    assert disk.backlog == 0, "the new agent counts its bytes from 0: the backlog must not"
    await asyncio.to_thread(wait_for, lambda: not files.spool_path.exists(), 5.0, "the discard")


async def test_many_waiters_share_a_few_file_system_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: Disk
) -> None:
    calls: list[float] = []
    real_sync = disk.sync

    async def counted_sync() -> None:
        calls.append(0)
        await real_sync()

    monkeypatch.setattr(disk, "sync", counted_sync)
    group = GroupSync(disk)
    spools = [await SpoolWriter.open(JobFiles(tmp_path, f"job{i}"), disk) for i in range(100)]
    for i, spool in enumerate(spools):
        spool.append(b"p" * i, 0.0)
        spool.flush()
        spool.append(b"not flushed", 0.0)
    durable = await asyncio.gather(*(group.durable(s) for s in spools))
    assert durable == list(range(100)), "each waiter learns what it had written, not pending"
    assert 1 <= len(calls) <= 2, f"{len(calls)} syncs for 100 waiters"
    await group.sync()
    assert len(calls) <= 3, "a later caller gets a round of its own"
    assert [JobFiles(tmp_path, f"job{i}").spool_size() for i in range(100)] == list(range(100))


def test_frames_are_split_however_the_pipe_cuts_them() -> None:
    stream = frame(Op.OK, 7, b"abc") + frame(Op.LANDED, 2**40) + frame(Op.APPEND, 1, b"x" * 5000)
    for cut in (3, 4096, len(stream)):  # inside headers; whole frames and a part; all
        reader = FrameReader()
        got = [f for i in range(0, len(stream), cut) for f in reader.feed(stream[i : i + cut])]
        assert got == [(Op.OK, 7, b"abc"), (Op.LANDED, 2**40, b""), (Op.APPEND, 1, b"x" * 5000)]


async def test_a_paused_stream_is_spooled_within_the_flush_interval(broker: Broker) -> None:
    """Fewer packets than an ack's worth, then silence: the timer writes them anyway."""
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        for packet in packets(tone(0.25)):  # 4 packets, an ack comes every 16
            await ws.send(packet)
        spool = broker.data_dir / "jobs" / job_id / "spool.pcm"
        await asyncio.to_thread(
            wait_for, lambda: spool.stat().st_size == 8000, 5.0, "the timer's flush"
        )
        assert broker.metric("whisperfarm_broker_packets_received_total") == 4


async def test_an_agent_waits_until_its_predecessor_on_the_data_dir_is_done(
    tmp_path: Path,
) -> None:
    """A killed broker's agent may still be writing what it was handed: a new broker's
    agent serves nobody (so nothing reads a spool's size) until that one has exited."""
    predecessor = os.open(tmp_path / LOCK_NAME, os.O_CREAT | os.O_RDWR)
    fcntl.flock(predecessor, fcntl.LOCK_EX)  # as a running agent holds it
    disk = Disk(tmp_path)
    starting = asyncio.ensure_future(disk.start())
    try:
        await asyncio.sleep(0.5)
        assert not starting.done(), "served while the predecessor still ran"
        os.close(predecessor)  # the predecessor exits
        await asyncio.wait_for(starting, 10)
    finally:
        await disk.close()


async def test_an_end_after_a_flush_the_exiting_agent_refused_is_interrupted_every_time(
    tmp_path: Path,
) -> None:
    """A flush the exiting agent refused drops its packets: the spool keeps the error, so
    anything that flushes after it (an `end`, the flush timer) is interrupted too, and
    never ends the upload without them (the worker would transcribe it short)."""
    farm = Farm(BrokerSettings(data_dir=tmp_path / "data", zmq="tcp://127.0.0.1:*"))
    await farm.start()
    try:
        upload = await farm.open(Start(sample_rate=16_000))
        for packet in packets(tone(0.25)):  # pending: under an ack's worth, before the timer
            upload.feed(packet)
        agent = farm._disk._agent
        assert agent is not None
        agent.stdin.close()  # the agent's cue to exit: appends are refused from now on
        with pytest.raises(Interrupted):
            upload.end()
        intake = farm._lifecycle.intake
        run = farm._lifecycle.runs[upload.job_id]
        with pytest.raises(Interrupted):
            intake.pass_on(run)
        assert not run.ended
    finally:
        await farm.stop()
