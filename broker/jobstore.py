"""Job store: a small interface with the embedded SQLite implementation.

Kept behind `JobStore` so that a PostgreSQL store can stand in when several brokers
share one farm. The record is stored as JSON next to the few columns queries need,
so adding a field to `Job` needs no migration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from broker.jobs import Job, JobStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,
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
    """SQLite in WAL mode: one writer (the broker's event loop), durable on commit."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "owner" not in columns:  # a data dir from before API tokens
            self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
        self.is_open = True

    def save(self, job: Job) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, status, created_at, updated_at, owner, data)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
            " updated_at=excluded.updated_at, data=excluded.data",
            (
                job.id,
                job.status.value,
                job.created_at,
                job.updated_at,
                job.owner,
                job.model_dump_json(),
            ),
        )

    def get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def list(
        self,
        limit: int = 500,
        statuses: Iterable[JobStatus] | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        """Newest first; only `statuses` and only `owner`'s jobs when given."""
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
            self._db.close()
            self.is_open = False
