"""The job store writes a turn's saves together and checkpoints off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import jobstore
from broker.jobstore import SqliteJobStore
from whisperfarm.jobs import Job, JobStatus


def _job(**fields: object) -> Job:
    now = time.time()
    return Job.model_validate(
        {"id": uuid.uuid4().hex, "name": "x", "created_at": now, "updated_at": now,
         "sample_rate": 16_000, "channels": 1, "format": "s16le", **fields}
    )  # fmt: skip


def _on_disk(path: Path) -> dict[str, str]:
    """What another connection reads: the committed rows only."""
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT id, status FROM jobs").fetchall())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteJobStore]:
    store = SqliteJobStore(path)
    yield store
    store.close()


async def test_saves_of_one_turn_are_committed_together_at_its_end(
    store: SqliteJobStore, path: Path
) -> None:
    job = _job()
    store.save(job)
    job.status = JobStatus.STREAMING
    store.save(job)
    assert _on_disk(path) == {}, "nothing is written during the turn"
    await asyncio.sleep(0)
    assert _on_disk(path) == {job.id: "streaming"}, "the turn's last state, once"


async def test_a_read_sees_saves_not_committed_yet(store: SqliteJobStore) -> None:
    job = _job()
    store.save(job)
    got = store.get(job.id)
    assert got is not None and got.id == job.id
    assert [j.id for j in store.list(statuses=[JobStatus.QUEUED])] == [job.id]


def test_outside_a_loop_a_save_is_written_at_once(store: SqliteJobStore, path: Path) -> None:
    job = _job()
    store.save(job)
    assert _on_disk(path) == {job.id: "queued"}


async def test_close_writes_what_is_pending(path: Path) -> None:
    store = SqliteJobStore(path)
    job = _job()
    store.save(job)
    store.close()
    assert _on_disk(path) == {job.id: "queued"}


async def test_a_failed_commit_keeps_the_saves_for_the_next_one(
    store: SqliteJobStore, path: Path
) -> None:
    job = _job()
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("BEGIN EXCLUSIVE")  # the file is locked: the commit cannot happen
        store._db.execute("PRAGMA busy_timeout=0")
        store.save(job)
        with pytest.raises(sqlite3.OperationalError):
            store.flush()
        other.execute("ROLLBACK")
    store.flush()
    assert _on_disk(path) == {job.id: "queued"}


def test_the_log_is_checkpointed_by_a_thread_not_by_the_saves(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint ran inside a save, on the loop, with two fsyncs; it is
    off, so the database file grows only when the checkpoint thread folds the log in."""
    monkeypatch.setattr(jobstore, "CHECKPOINT_INTERVAL_S", 3600.0)
    idle = SqliteJobStore(path)
    for _ in range(3000):  # ~3 log pages a save: far past SQLite's 1000-page checkpoint
        idle.save(_job(error="x" * 200))
    assert path.stat().st_size <= 64 * 1024, "no checkpoint inside the saves"
    idle.close()
    closed_size = path.stat().st_size
    assert closed_size > 64 * 1024, "closing folds the log in"

    monkeypatch.setattr(jobstore, "CHECKPOINT_INTERVAL_S", 0.05)
    busy = SqliteJobStore(path)
    try:
        for _ in range(3000):
            busy.save(_job(error="x" * 200))
        deadline = time.monotonic() + 10
        while path.stat().st_size <= closed_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > closed_size, "the thread checkpointed the new rows"
    finally:
        busy.close()


def test_a_database_from_before_owners_and_people_opens(path: Path) -> None:
    """An old data dir: no `owner` column, jobs saved without `owner` or `person`."""
    old = _job()
    data = old.model_dump_json(exclude={"owner", "person"})
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL, data TEXT NOT NULL)"
        )
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                   (old.id, old.status.value, old.created_at, old.updated_at, data))  # fmt: skip
    store = SqliteJobStore(path)
    try:
        loaded = store.get(old.id)
        assert loaded is not None and loaded.owner is None and loaded.person is None
        mine = _job(owner="person:alice", person="alice")
        store.save(mine)
        assert [j.id for j in store.list(owner="person:alice")] == [mine.id]
        assert {j.id for j in store.list()} == {old.id, mine.id}
        store.flush()
        with sqlite3.connect(path) as db:
            rows = dict(db.execute("SELECT id, person FROM jobs").fetchall())
        assert rows == {old.id: None, mine.id: "alice"}  # the column added, then filled
    finally:
        store.close()
