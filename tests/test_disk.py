"""Reads through the disk agent: a file's size after the work queued before it, whole
files beside the ordered queue, transcripts loaded without a read on the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from broker.disk import Disk
from broker.spool import JobFiles, SpoolWriter
from broker.transcript_store import TranscriptStore
from tests.disk_support import agent_stopped
from whisperfarm.protocol import SegmentData
from whisperfarm.transcripts import Transcript


async def test_a_files_size_counts_the_appends_queued_before_it(tmp_path: Path, disk: Disk) -> None:
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    with agent_stopped(disk):
        spool.append(b"a" * 4000, 0.0)
        spool.flush()
        asking = asyncio.ensure_future(disk.size(files.spool_path))
        await asyncio.sleep(0.05)
        assert not asking.done()
    assert await asking == 4000
    assert await disk.size(tmp_path / "none") is None


async def test_a_whole_file_read_does_not_wait_behind_the_ordered_queue(
    tmp_path: Path, disk: Disk
) -> None:
    """A FIFO holds the ordered thread: opening it to read waits for a writer."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    held = asyncio.ensure_future(disk.read(fifo, 0, 1))
    path = tmp_path / "transcript.json"
    await disk.commit(path, b"{}")
    assert await asyncio.wait_for(disk.read_file(path), 5) == b"{}"
    assert await asyncio.wait_for(disk.read_file(tmp_path / "none"), 5) is None
    asking = asyncio.ensure_future(disk.size(path))
    await asyncio.sleep(0.05)
    assert not asking.done(), "a size waits for the ordered work before it"
    os.close(await asyncio.to_thread(os.open, fifo, os.O_WRONLY))
    with pytest.raises(OSError):  # a pipe cannot seek
        await held
    assert await asking == 2


async def test_a_question_asked_of_an_agent_that_dies_is_answered_by_the_next(
    tmp_path: Path, disk: Disk
) -> None:
    """The dead agent did all it ever will (here: not the append it was sent)."""
    files = JobFiles(tmp_path, "job")
    spool = await SpoolWriter.open(files, disk)
    first = disk.agent_pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)
    spool.append(b"a" * 100, 0.0)
    spool.flush()
    asking = asyncio.ensure_future(disk.size(files.spool_path))
    reading = asyncio.ensure_future(disk.read_file(files.spool_path))
    os.kill(first, signal.SIGKILL)
    assert await asyncio.wait_for(asking, 5) == 0
    assert await asyncio.wait_for(reading, 5) == b""
    assert disk.agent_pid not in (None, first)


async def test_a_transcript_loads_from_memory_until_durable_then_from_its_file(
    tmp_path: Path, disk: Disk
) -> None:
    store = TranscriptStore(disk, tmp_path)
    segment = SegmentData(id=0, start=0.0, end=1.0, text="hello")
    transcript = Transcript(job_id="job", text="hello", segments=[segment], duration=1.0)
    stored: asyncio.Future[OSError | None] = asyncio.get_running_loop().create_future()
    with agent_stopped(disk):
        store.store(transcript, transcript.model_dump_json().encode(), stored.set_result)
        assert await store.load("job") is transcript, "served while the agent writes it"
    assert await asyncio.wait_for(stored, 5) is None
    loaded = await store.load("job")
    assert loaded == transcript and loaded is not transcript, "read back from its file"
    assert await store.load("other") is None
    await disk.commit(JobFiles(tmp_path, "other").transcript_path, b"not json")
    with pytest.raises(ValueError):
        await store.load("other")
