"""Uploads faster than the disk: the broker stops reading them, loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.disk import Disk
from tests.disk_support import agent_stopped
from tests.farm import start_broker, start_worker
from tests.wsclient import stream_pcm, tone


@pytest.fixture
async def disk() -> AsyncIterator[Disk]:
    disk = Disk(max_backlog=1000)
    await disk.start()
    yield disk
    await disk.close()


async def test_the_backlog_counts_appends_until_they_are_written(
    tmp_path: Path, disk: Disk
) -> None:
    handle, _ = await disk.open_spool(tmp_path / "spool.pcm")
    with agent_stopped(disk):  # the agent is busy: appends wait for it
        for _ in range(3):
            disk.append(handle, b"x" * 600)
        assert disk.backlog == 1800 and disk.congested()
        drained = asyncio.Event()
        disk.call_when_drained(drained.set)
        await asyncio.sleep(0.05)
        assert not drained.is_set(), "nothing has been written yet"
    await asyncio.wait_for(drained.wait(), 5)
    assert disk.backlog <= 500 and not disk.congested()
    await asyncio.wait_for(disk.drained(), 5)  # not congested: returns at once
    await disk.barrier()
    assert (tmp_path / "spool.pcm").read_bytes() == b"x" * 1800 and disk.backlog == 0


async def test_an_append_that_went_over_counts_even_once_written(
    tmp_path: Path, disk: Disk
) -> None:
    """The loop looks after the flush, and the agent may have written it by then: the
    upload whose append went over is still slowed down, once."""
    handle, _ = await disk.open_spool(tmp_path / "spool.pcm")
    disk.append(handle, b"x" * 2000)
    await disk.barrier()
    assert disk.backlog == 0
    assert disk.congested(), "it went over since the last look"
    assert not disk.congested()


async def test_a_failed_append_still_leaves_the_backlog(tmp_path: Path, disk: Disk) -> None:
    (tmp_path / "spool.pcm").symlink_to("/dev/full")  # every write: ENOSPC
    handle, _ = await disk.open_spool(tmp_path / "spool.pcm")
    disk.append(handle, b"x" * 2000)
    await disk.barrier()
    assert disk.backlog == 0, "a write that failed is not waited for again"
    assert isinstance(disk.spool_error(handle), OSError)


async def test_uploads_over_the_disk_backlog_pause_and_lose_nothing(tmp_path: Path) -> None:
    """With a backlog limit smaller than one flush, every flush congests the disk: each
    unpaced upload is paused again and again, and still every frame gets transcribed."""
    broker = start_broker(tmp_path, "--max-disk-backlog-mb", "0.01")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    try:
        broker.wait_workers(1)
        replies = await asyncio.wait_for(
            asyncio.gather(stream_pcm(broker.ws, tone(20.0)), stream_pcm(broker.ws, tone(12.0))),
            60,
        )
        texts = [reply.last.get("text", str(reply.last)) for reply in replies]
        assert "20.0 s of audio" in texts[0] and "12.0 s of audio" in texts[1], texts
        assert replies[0].of("ack")[-1]["frames"] == 320_000
        pauses = broker.metric("whisperfarm_broker_upload_pauses_total")
        assert pauses is not None and pauses >= 2, "every flush (32 kB) goes over: held"
        assert broker.metric("whisperfarm_broker_disk_backlog_bytes") == 0
        assert broker.metric("whisperfarm_broker_packets_received_total") == 320 + 192
    finally:
        worker.process.stop()
        broker.process.stop()
