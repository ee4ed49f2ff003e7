"""Rejected rows: uploads the farm never took, kept by the GUI across restarts.

A rejection is not a job (the broker has no record of it), so the GUI is the only one
who can remember it. Each row is kept in `rejected.json` under the data dir, written
atomically, and a retryable row keeps its file under `uploads/<key>/` until it is
retried to completion or dismissed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from whisperfarm.files import write_atomic

log = logging.getLogger(__name__)

Kind = Literal["overloaded", "unreachable", "unreadable", "failed"]
_ENGLISH_PREFIXES = {"unreachable": "Broker unreachable: ", "unreadable": "Unreadable: "}
"""What rows saved before the GUI spoke two languages put before the farm's own words."""


class Rejected(BaseModel):
    key: str
    name: str
    kind: Kind
    """What went wrong: the row reads `rejected.<kind>` in the viewer's language."""
    reason: str
    """The farm's, the network's or the decoder's own words, shown inside that text."""
    created_at: float = Field(default_factory=time.time)
    file: str | None = None
    """Path of the kept file relative to the data dir; None: nothing to retry with."""
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    retry_after: float | None = None
    person: str | None = None
    """Whose upload it was (only they see the row)."""
    diarize: bool = False
    """Speaker labels were asked for (a retry asks again)."""

    @model_validator(mode="after")
    def _without_english(self) -> Rejected:
        """A row saved in English (`Unreadable: …`) keeps only the words after the prefix."""
        prefix = _ENGLISH_PREFIXES.get(self.kind, "")
        if prefix and self.reason.startswith(prefix):
            self.reason = self.reason.removeprefix(prefix)
        return self

    @property
    def retryable(self) -> bool:
        return self.file is not None and self.kind != "unreadable"


_rows = TypeAdapter(list[Rejected])


class RejectedStore:
    """The rejected rows and the upload files they keep, under one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.uploads_dir = data_dir / "uploads"
        self._path = data_dir / "rejected.json"
        self.rows: dict[str, Rejected] = {}

    def load(self) -> None:
        """Read the saved rows; a damaged file is set aside, never fatal."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        if not self._path.exists():
            return
        try:
            rows = _rows.validate_json(self._path.read_bytes())
        except (OSError, ValidationError) as exc:
            aside = self._path.with_suffix(f".damaged-{int(time.time())}")
            log.warning("rejected rows unreadable (%s); moved to %s", exc, aside.name)
            self._path.replace(aside)
            return
        self.rows = {r.key: r for r in rows}
        for row in self.rows.values():
            if row.file is not None and not (self.data_dir / row.file).is_file():
                row.file = None  # the kept file is gone: the row stays, without a retry

    def upload_dir(self, key: str) -> Path:
        return self.uploads_dir / key

    def remove_orphans(self, active: set[str]) -> None:
        """Delete upload dirs that no row and no running upload refers to (after a crash)."""
        keep = active | {k for k, r in self.rows.items() if r.file is not None}
        for path in self.uploads_dir.iterdir() if self.uploads_dir.exists() else []:
            if path.is_dir() and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def add(self, row: Rejected) -> None:
        self.rows[row.key] = row
        self._save()

    def take(self, key: str) -> Rejected | None:
        """Remove a row to retry it (its file stays)."""
        row = self.rows.pop(key, None)
        if row is not None:
            self._save()
        return row

    def dismiss(self, key: str) -> bool:
        """Remove a row and its kept file."""
        row = self.rows.pop(key, None)
        if row is None:
            return False
        self._save()
        self.discard_files(key)
        return True

    def discard_files(self, key: str) -> None:
        shutil.rmtree(self.upload_dir(key), ignore_errors=True)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.data_dir))

    def _save(self) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        rows = sorted(self.rows.values(), key=lambda r: r.created_at)
        data = json.dumps([r.model_dump(mode="json") for r in rows], indent=1)
        try:
            write_atomic(self._path, data)
        except OSError:
            log.error("could not save the rejected rows to %s", self._path, exc_info=True)
