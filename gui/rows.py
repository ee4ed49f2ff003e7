"""The job table's rows, built from state: broker jobs, uploads in flight, rejected rows.

Pure functions from `GuiState` + `RejectedStore` to plain dicts the table renders, so the
table's content is tested without a browser and the page only pushes the list.
"""

from __future__ import annotations

from typing import Any

from gui.rejected import Rejected, RejectedStore
from gui.state import GuiState, Upload

STATUS: dict[str, tuple[str, str]] = {
    "queued": ("Queued", "grey-7"),
    "streaming": ("Streaming", "blue-7"),
    "transcribing": ("Transcribing", "indigo-6"),
    "interrupted": ("Interrupted", "orange-8"),
    "done": ("Done", "positive"),
    "failed": ("Failed", "negative"),
}
PHASES: dict[str, str] = {
    "checking": "Checking",
    "connecting": "Connecting",
    "uploading": "Uploading",
    "transcribing": "Transcribing",
    "reconnecting": "Reconnecting",
}
REJECTED = ("Rejected", "deep-orange-8")


def build_rows(state: GuiState, store: RejectedStore) -> list[dict[str, Any]]:
    """Every row, newest first."""
    rows = [_job_row(job, state) for job in state.jobs.values()]
    rows += [_upload_row(u) for u in state.uploads.values() if not _shown(u, state)]
    rows += [_rejected_row(r) for r in store.rows.values()]
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows


def _shown(upload: Upload, state: GuiState) -> bool:
    """An accepted upload is shown by its broker job's row (once the broker told us)."""
    return upload.job_id is not None and upload.job_id in state.jobs


def _base(key: str, name: str, created: float) -> dict[str, Any]:
    return {
        "key": key, "job_id": "", "name": name, "status": "", "label": "", "color": "grey-7",
        "progress": None, "progress_label": "", "detail": "", "preview": "", "duration": "",
        "language": "", "worker": "", "created": created, "open": False, "retry": False,
        "dismiss": False,
    }  # fmt: skip


def _job_row(job: dict[str, Any], state: GuiState) -> dict[str, Any]:
    job_id = str(job["id"])
    status = str(job.get("status", ""))
    label, color = STATUS.get(status, (status.title() or "Unknown", "grey-7"))
    row = _base(job_id, str(job.get("name") or "stream"), _float(job.get("created_at")))
    seconds = _float(job.get("duration")) or _float(job.get("duration_hint"))
    row.update(
        job_id=job_id, status=status, label=label, color=color, open=True,
        duration=format_duration(seconds) if seconds else "",
        language=str(job.get("language") or ""), worker=str(job.get("worker") or ""),
        preview=state.previews.get(job_id, "") if status == "done" else "",
        detail=str(job.get("error") or "") if status in ("failed", "interrupted") else "",
    )  # fmt: skip
    upload = state.upload_for_job(job_id)
    if upload is not None and status not in ("done", "failed"):
        _add_progress(row, upload)
    return row


def _upload_row(upload: Upload) -> dict[str, Any]:
    row = _base(upload.key, upload.name, upload.created_at)
    row.update(status=upload.phase, label=PHASES[upload.phase], color="grey-7")
    _add_progress(row, upload)
    return row


def _add_progress(row: dict[str, Any], upload: Upload) -> None:
    progress = upload.progress
    if upload.note:
        row["detail"] = upload.note
    if upload.phase == "transcribing" or progress is None:
        return
    row["progress"] = round(progress, 3)
    row["progress_label"] = f"Uploaded {progress:.0%}"


def _rejected_row(rejected: Rejected) -> dict[str, Any]:
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


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
