"""The broker's spool writer and group commit: packets gathered, flushed, made durable."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from broker.disk import Disk
from broker.durability import GroupSync
from broker.jobs import Job
from broker.run import StreamRun
from broker.spool import FLUSH_INTERVAL_S, JobFiles, SpoolWriter
from tests.farm import Broker, wait_for
from tests.wsclient import packets, start_message, tone
from whisperfarm.packets import PacketValidator


@pytest.fixture
def disk() -> Iterator[Disk]:
    disk = Disk()
    yield disk
    disk.close()


def test_packets_wait_in_memory_until_a_flush_writes_them_in_one_go(
    tmp_path: Path, disk: Disk
) -> None:
    files = JobFiles(tmp_path, "job")
    spool = SpoolWriter(files, disk)
    spool.append(b"a" * 2000, 1.0)
    spool.append(b"b" * 2000, 2.0)
    assert (spool.size, spool.written, spool.pending, spool.pending_packets) == (4000, 0, 4000, 2)
    assert spool.pending_since == 1.0, "the age of the oldest pending packet decides a flush"
    due = 1.0 + FLUSH_INTERVAL_S
    assert not spool.flush_due(due - 0.01) and spool.flush_due(due), "due after FLUSH_INTERVAL_S"
    assert files.spool_size() == 0
    assert spool.flush() == b"a" * 2000 + b"b" * 2000
    assert (spool.size, spool.written, spool.pending, spool.pending_packets) == (4000, 4000, 0, 0)
    assert disk.submit(files.spool_size).result() == 4000, "in the file once the disk gets to it"
    assert spool.flush() == b"", "nothing pending: nothing to forward"
    assert not spool.flush_due(99.0)
    spool.append(b"c" * 64_000, 100.0)
    assert spool.flush_due(100.0), "a flush's worth is due at once"


def test_close_writes_what_is_pending(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    spool = SpoolWriter(files, disk)
    spool.append(b"x" * 10, 0.0)
    closed = spool.close()
    assert closed is not None
    closed.result()
    assert files.spool_path.read_bytes() == b"x" * 10


def test_a_resumed_spool_keeps_only_the_bytes_asked_for(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    files.dir.mkdir(parents=True)
    files.spool_path.write_bytes(b"y" * 2500)
    spool = SpoolWriter(files, disk, keep_bytes=2000)
    assert (spool.written, spool.size) == (2000, 2000)
    spool.append(b"z", 0.0)
    spool.close()
    disk.close()
    assert files.spool_path.read_bytes() == b"y" * 2000 + b"z"


def test_a_failed_write_is_raised_and_nothing_is_appended_after_it(
    tmp_path: Path, disk: Disk
) -> None:
    files = JobFiles(tmp_path, "job")
    files.dir.mkdir(parents=True)
    files.spool_path.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    spool = SpoolWriter(files, disk)
    spool.append(b"a", 0.0)
    spool.flush()
    disk.submit(lambda: None).result()
    assert isinstance(spool.error, OSError) and spool.error.errno == errno.ENOSPC
    spool.append(b"b", 0.0)
    with pytest.raises(OSError):
        spool.flush()


def test_a_detached_spool_still_counts_the_writes_on_their_way_to_disk(
    tmp_path: Path, disk: Disk
) -> None:
    """After `end` the spool is detached while its last writes wait for the disk thread;
    a replay must still see them (going by the file's size, it ended short)."""
    job = Job(id="job", name="t.wav", created_at=0.0, updated_at=0.0,
              sample_rate=16_000, channels=1, format="s16le")  # fmt: skip
    files = JobFiles(tmp_path, job.id)
    audio = job.audio_format()
    run = StreamRun(job, files, audio, PacketValidator(audio), SpoolWriter(files, disk))
    disk_free = threading.Event()
    disk.submit(disk_free.wait)  # the disk thread is busy: writes queue behind this
    assert run.spool is not None
    run.spool.append(b"a" * 2000, 0.0)
    run.spool.flush()
    spool = run.take_spool()
    assert spool is not None and run.spool is None
    assert files.spool_size() == 0, "the write has not landed"
    assert run.written_bytes() == run.received_bytes() == 2000
    disk_free.set()
    spool.close(sync=False).result()  # type: ignore[union-attr]
    assert files.spool_size() == run.written_bytes() == 2000


async def test_many_waiters_share_a_few_file_system_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: Disk
) -> None:
    calls: list[float] = []
    real_sync = os.sync

    def counted_sync() -> None:
        calls.append(0)
        real_sync()

    monkeypatch.setattr(os, "sync", counted_sync)
    group = GroupSync(disk)
    spools = [SpoolWriter(JobFiles(tmp_path, f"job{i}"), disk) for i in range(100)]
    for i, spool in enumerate(spools):
        spool.append(b"p" * i, 0.0)
        spool.flush()
        spool.append(b"not flushed", 0.0)
    durable = await asyncio.gather(*(group.durable(s) for s in spools))
    assert durable == list(range(100)), "each waiter learns what it had written, not pending"
    assert 1 <= len(calls) <= 2, f"{len(calls)} syncs for 100 waiters"
    await group.sync()
    assert len(calls) <= 3, "a later caller gets a round of its own"


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
