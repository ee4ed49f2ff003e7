"""The job table's rows, built from state: broker jobs, uploads in flight, rejected rows.

Pure functions from `GuiState` + `RejectedStore` to plain dicts the table renders, so the
table's content is tested without a browser, and `changed_rows` says which rows the page
has to send again. Rows are built for one reader, in their language (`lang`).
"""

from __future__ import annotations

from typing import Any

from gui.i18n import DEFAULT, Lang, percent, text
from gui.rejected import Rejected, RejectedStore
from gui.state import GuiState, Upload
from whisperfarm.jobs import FINISHED_STATUSES, Job, JobStatus

Row = dict[str, Any]
STATUS_COLORS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "grey-7",
    JobStatus.STREAMING: "blue-7",
    JobStatus.TRANSCRIBING: "indigo-6",
    JobStatus.INTERRUPTED: "orange-8",
    JobStatus.DONE: "positive",
    JobStatus.FAILED: "negative",
}
REJECTED_COLOR = "deep-orange-8"


def status_label(lang: Lang, status: JobStatus) -> str:
    """`Done`, `Готово`: a job's status as the reader says it (`status.<value>`)."""
    return text(lang, f"status.{status.value}")


def build_rows(
    state: GuiState, store: RejectedStore, person: str | None = None, lang: Lang = DEFAULT
) -> list[Row]:
    """Every row `person` may see (None: every row), newest first, in `lang`."""
    rows = [_job_row(job, state, lang) for job in state.jobs.values() if _theirs(job, person)]
    rows += [
        _upload_row(u, lang)
        for u in state.uploads.values()
        if not _shown(u, state) and _theirs(u, person)
    ]
    rows += [_rejected_row(r, lang) for r in store.rows.values() if _theirs(r, person)]
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


def _job_row(job: Job, state: GuiState, lang: Lang) -> Row:
    label, color = status_label(lang, job.status), STATUS_COLORS[job.status]
    row = _base(job.id, job.name or text(lang, "jobs.stream"), job.created_at)
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
        _add_progress(row, upload, lang)
    return row


def changed_rows(shown: list[Row], rows: list[Row]) -> tuple[list[Row], list[str]]:
    """What turns the `shown` rows into `rows`: the rows new or different, the keys gone."""
    before = {row["key"]: row for row in shown}
    changed = [row for row in rows if before.get(row["key"]) != row]
    keys = {row["key"] for row in rows}
    return changed, [key for key in before if key not in keys]


def _upload_row(upload: Upload, lang: Lang) -> Row:
    row = _base(upload.key, upload.name, upload.created_at)
    row.update(status=upload.phase, label=text(lang, f"phase.{upload.phase}"), color="grey-7")
    _add_progress(row, upload, lang)
    return row


def _add_progress(row: Row, upload: Upload, lang: Lang) -> None:
    progress = upload.progress
    if upload.attempt is not None:
        attempt, retries = upload.attempt
        row["detail"] = text(
            lang, "row.reconnecting", reason=upload.note, attempt=attempt, retries=retries
        )
    if upload.phase == "transcribing" or progress is None:
        return
    row["progress"] = round(progress, 3)
    row["progress_label"] = text(lang, "row.uploaded", percent=percent(lang, round(progress, 2)))


def _rejected_row(rejected: Rejected, lang: Lang) -> Row:
    row = _base(rejected.key, rejected.name, rejected.created_at)
    row.update(
        status="rejected", label=text(lang, "status.rejected"), color=REJECTED_COLOR,
        detail=text(lang, f"rejected.{rejected.kind}", detail=rejected.reason),
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
