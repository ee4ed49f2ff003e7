"""The job table's rows, built from state: broker jobs, uploads in flight, rejected rows.

Pure functions from `GuiState` + `RejectedStore` to plain dicts the table renders, so the
table's content is tested without a browser, and `changed_rows` says which rows the page
has to send again.
"""

from __future__ import annotations

from typing import Any

from gui.rejected import Rejected, RejectedStore
from gui.state import GuiState, Upload
from whisperfarm.jobs import FINISHED_STATUSES, Job, JobStatus

Row = dict[str, Any]
STATUS: dict[JobStatus, tuple[str, str]] = {
    JobStatus.QUEUED: ("Queued", "grey-7"),
    JobStatus.STREAMING: ("Streaming", "blue-7"),
    JobStatus.TRANSCRIBING: ("Transcribing", "indigo-6"),
    JobStatus.INTERRUPTED: ("Interrupted", "orange-8"),
    JobStatus.DONE: ("Done", "positive"),
    JobStatus.FAILED: ("Failed", "negative"),
}
PHASES: dict[str, str] = {
    "checking": "Checking",
    "connecting": "Connecting",
    "uploading": "Uploading",
    "transcribing": "Transcribing",
    "reconnecting": "Reconnecting",
}
REJECTED = ("Rejected", "deep-orange-8")


def build_rows(state: GuiState, store: RejectedStore, person: str | None = None) -> list[Row]:
    """Every row `person` may see (None: every row), newest first."""
    rows = [_job_row(job, state) for job in state.jobs.values() if _theirs(job, person)]
    rows += [
        _upload_row(u)
        for u in state.uploads.values()
        if not _shown(u, state) and _theirs(u, person)
    ]
    rows += [_rejected_row(r) for r in store.rows.values() if _theirs(r, person)]
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows


def _theirs(item: Job | Upload | Rejected, person: str | None) -> bool:
    """The GUI follows every job; each person is shown only their own."""
    return person is None or item.person == person


def _shown(upload: Upload, state: GuiState) -> bool:
    """An accepted upload is shown by its broker job's row (once the broker told us)."""
    return upload.job_id is not None and upload.job_id in state.jobs


def _base(key: str, name: str, created: float) -> Row:
    return {
        "key": key, "job_id": "", "name": name, "status": "", "label": "", "color": "grey-7",
        "progress": None, "progress_label": "", "detail": "", "preview": "", "duration": "",
        "language": "", "worker": "", "created": created, "open": False, "retry": False,
        "dismiss": False,
    }  # fmt: skip


def _job_row(job: Job, state: GuiState) -> Row:
    label, color = STATUS[job.status]
    row = _base(job.id, job.name or "stream", job.created_at)
    seconds = job.duration or job.duration_hint
    failed = job.status in (JobStatus.FAILED, JobStatus.INTERRUPTED)
    row.update(
        job_id=job.id, status=job.status.value, label=label, color=color, open=True,
        duration=format_duration(seconds) if seconds else "",
        language=job.language or "", worker=job.worker or "",
        preview=(job.preview or "") if job.status is JobStatus.DONE else "",
        detail=(job.error or "") if failed else "",
    )  # fmt: skip
    upload = state.upload_for_job(job.id)
    if upload is not None and job.status not in FINISHED_STATUSES:
        _add_progress(row, upload)
    return row


def changed_rows(shown: list[Row], rows: list[Row]) -> tuple[list[Row], list[str]]:
    """What turns the `shown` rows into `rows`: the rows new or different, the keys gone."""
    before = {row["key"]: row for row in shown}
    changed = [row for row in rows if before.get(row["key"]) != row]
    keys = {row["key"] for row in rows}
    return changed, [key for key in before if key not in keys]


def _upload_row(upload: Upload) -> Row:
    row = _base(upload.key, upload.name, upload.created_at)
    row.update(status=upload.phase, label=PHASES[upload.phase], color="grey-7")
    _add_progress(row, upload)
    return row


def _add_progress(row: Row, upload: Upload) -> None:
    progress = upload.progress
    if upload.note:
        row["detail"] = upload.note
    if upload.phase == "transcribing" or progress is None:
        return
    row["progress"] = round(progress, 3)
    row["progress_label"] = f"Uploaded {progress:.0%}"


def _rejected_row(rejected: Rejected) -> Row:
    row = _base(rejected.key, rejected.name, rejected.created_at)
    row.update(
        status="rejected", label=REJECTED[0], color=REJECTED[1], detail=rejected.reason,
        retry=rejected.retryable, dismiss=True,
    )  # fmt: skip
    return row


def format_duration(seconds: float) -> str:
    """`0:07`, `12:03`, `1:02:03`."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_timestamp(seconds: float) -> str:
    """Segment times: `0:03.2`, `1:02:03.5`."""
    tenths = round(seconds * 10)
    whole, tenth = divmod(tenths, 10)
    return f"{format_duration(whole)}.{tenth}"
