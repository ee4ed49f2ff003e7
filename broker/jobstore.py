"""Job store: a small interface with the embedded SQLite implementation.

Kept behind `JobStore` so that a PostgreSQL store can stand in when several brokers
share one farm. The record is stored as JSON next to the few columns queries need,
so adding a field to `Job` needs no migration.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from whisperfarm.jobs import Job, JobStatus

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
"""How often the checkpoint thread folds the write-ahead log into the database file."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,
    person TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""


class JobStore(Protocol):
    def save(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def list(
        self,
        limit: int = 500,
        statuses: Iterable[JobStatus] | None = None,
        owner: str | None = None,
    ) -> list[Job]: ...
    def close(self) -> None: ...


class SqliteJobStore:
    """SQLite in WAL mode: one writer (the broker's event loop), readers see every save.

    The event loop is every stream's, and a job is saved four or five times in its life,
    so two things are kept from making the loop wait on the disk:

    - a transaction per save, each a write to the log: the saves of one turn of the
      loop are written together, in one transaction, at the end of the turn (`save`
      returns at once; every read writes what is pending first, so a read never misses
      a save);
    - SQLite's automatic checkpoint, which every thousand pages of log copies them into
      the database and fsyncs both, inside whichever save crossed the line: a thread of
      its own does it with its own connection, once a second (`PASSIVE`: it never
      blocks the writer).

    Commits are not fsynced (`synchronous=NORMAL`): a power cut may lose the last
    saves, never corrupt the file; a finished job's durable record is its transcript.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for column in ("owner", "person"):  # a data dir from before API tokens, or people
            if column not in columns:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")
        self._pending: dict[str, Job] = {}
        self._flush_scheduled = False
        self._checkpointer = _Checkpointer(path)
        self.is_open = True

    def save(self, job: Job) -> None:
        """Store `job` as it is at the end of this turn of the loop (now, outside a loop)."""
        self._pending[job.id] = job
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._scheduled_flush)

    def flush(self) -> None:
        """Write every pending save in one transaction."""
        if not self._pending:
            return
        jobs, self._pending = list(self._pending.values()), {}
        rows = [
            (
                j.id,
                j.status.value,
                j.created_at,
                j.updated_at,
                j.owner,
                j.person,
                j.model_dump_json(),
            )
            for j in jobs
        ]
        try:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_UPSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except BaseException:
            for job in jobs:  # kept for the next flush, unless saved again meanwhile
                self._pending.setdefault(job.id, job)
            raise

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self.is_open:
            return
        try:
            self.flush()
        except sqlite3.Error as exc:
            log.error("could not save %d jobs (kept for the next try): %s", len(self._pending), exc)

    def get(self, job_id: str) -> Job | None:
        self.flush()
        row = self._db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def list(
        self,
        limit: int = 500,
        statuses: Iterable[JobStatus] | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        """Newest first; only `statuses` and only `owner`'s jobs when given."""
        self.flush()
        where, args = [], []
        if statuses is not None:
            wanted = [s.value for s in statuses]
            where.append(f"status IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT data FROM jobs {clause} ORDER BY created_at DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [Job.model_validate_json(r[0]) for r in rows]

    def close(self) -> None:
        if self.is_open:
            self._checkpointer.stop()
            self.flush()
            self._db.close()  # the last connection to close checkpoints what is left
            self.is_open = False


_UPSERT = (
    "INSERT INTO jobs (id, status, created_at, updated_at, owner, person, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
    " updated_at=excluded.updated_at, data=excluded.data"
)


class _Checkpointer(threading.Thread):
    """Folds the write-ahead log into the database file every `CHECKPOINT_INTERVAL_S`,
    off the event loop (see `SqliteJobStore`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="jobstore-checkpoint", daemon=True)
        self._path = path
        self._stopping = threading.Event()
        self.start()

    def run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. disk full: the log grows until it passes
                    log.warning("job store checkpoint failed: %s", exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)
