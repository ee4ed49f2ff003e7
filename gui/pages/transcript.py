"""One job: its state, its transcript with timestamped segments, copy and downloads.

The page draws at once and loads from the broker right after; it reloads by itself when
the job's state changes (a running job's page turns into its transcript when it is done),
and a broker that is down is a notice with a retry, never an error page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from pathlib import PurePath
from typing import Any

from nicegui import background_tasks, ui

from gui import languages
from gui.broker_api import BrokerUnavailable, TranscriptUnavailable
from gui.components.speaker_turns import speaker_turns, speakers_of
from gui.identity import person
from gui.rows import STATUS, format_duration, format_timestamp
from gui.services import Services
from gui.theme import watch
from whisperfarm.jobs import ACTIVE_STATUSES, Job, JobStatus
from whisperfarm.protocol import Word
from whisperfarm.transcripts import FORMATS, MEDIA_TYPES, Transcript


@dataclass
class Loaded:
    job: Job | None = None
    transcript: Transcript | None = None
    problem: str = ""
    """Why the job or its transcript could not be loaded (broker down, missing file)."""


def content(services: Services, job_id: str) -> None:
    who = person(services.settings)  # read while the page's request is at hand
    with ui.row().classes("w-full items-center"):
        ui.button("All jobs", icon="arrow_back", on_click=lambda: ui.navigate.to("/")).props(
            "flat no-caps"
        ).mark("back")
    body = ui.column().classes("w-full gap-4")
    with body:
        ui.spinner(size="lg").classes("self-center")

    def status() -> Any:
        """What makes the page worth reloading: the job's state, the broker coming back."""
        job = services.state.jobs.get(job_id)
        return job.status if job else None, services.state.connection.up

    seen = [status()]

    async def load() -> None:
        loaded = await _load(services, job_id, who)
        if body.is_deleted:
            return
        body.clear()
        with body:
            _render(services, job_id, loaded, who, reload=load)

    def on_change() -> None:
        """Reload when this job's state moves (it just finished) or the broker is back."""
        if status() != seen[0]:
            seen[0] = status()
            background_tasks.create(load(), name=f"reload job {job_id}")

    watch(services.state, on_change)
    ui.timer(0, load, once=True)


async def _load(services: Services, job_id: str, who: str | None) -> Loaded:
    loaded = Loaded()
    try:
        loaded.job = await services.api.job(job_id, who)
    except BrokerUnavailable as exc:
        known = services.state.jobs.get(job_id)
        loaded.job = known if known is not None and who in (None, known.person) else None
        loaded.problem = f"The broker is unreachable ({exc.reason})."
        return loaded
    if loaded.job is None or loaded.job.status is not JobStatus.DONE:
        return loaded
    try:
        data = await services.api.transcript(job_id, "json", who)
        loaded.transcript = Transcript.model_validate_json(data)
    except BrokerUnavailable as exc:
        loaded.problem = f"The broker is unreachable ({exc.reason})."
    except TranscriptUnavailable as exc:
        loaded.problem = f"The transcript is not available: {exc.detail}."
    except ValueError:  # pydantic's ValidationError is one
        loaded.problem = "The broker sent something that is not a transcript."
    return loaded


def _render(services: Services, job_id: str, loaded: Loaded, who: str | None, reload: Any) -> None:
    job = loaded.job
    if job is None:
        text = loaded.problem or f"The broker has no job {job_id}."
        _notice("search_off", "No such job", text, retry=reload if loaded.problem else None)
        return
    _summary(job)
    if loaded.problem:
        _notice("cloud_off", "Cannot load everything", loaded.problem, color="text-negative",
                retry=reload)  # fmt: skip
    if job.status is JobStatus.FAILED:
        _notice("error", "This job failed", job.error or "No reason was given.",
                color="text-negative")  # fmt: skip
    elif job.status is JobStatus.INTERRUPTED:
        reason = job.error or "The upload was cut before it ended."
        _notice("pause_circle", "Upload interrupted", reason, color="text-warning")
    elif job.status in ACTIVE_STATUSES:
        with ui.row().classes("items-center gap-3").mark("job-pending"):
            ui.spinner(size="md")
            ui.label(f"This job is {job.status}. Its transcript appears here when it is done.")
    if loaded.transcript is not None:
        _transcript(services, job, loaded.transcript, who)


def _summary(job: Job) -> None:
    label, color = STATUS[job.status]
    with ui.card().classes("w-full gap-2"):
        with ui.row().classes("w-full items-center gap-3"):
            ui.icon("audio_file", size="32px").classes("text-primary")
            ui.label(job.name or "stream").classes("text-2xl font-semibold").mark("job-name")
            ui.badge(label, color=color).classes("text-sm px-2 py-1").mark("job-status")
        with ui.row().classes("gap-x-8 gap-y-1 text-sm"):
            seconds = job.duration or job.duration_hint
            _fact("Length", format_duration(seconds) if seconds else "–")
            _fact("Language", languages.label(job.language) or "auto-detect")
            _fact("Task", job.task.capitalize())
            _fact("Worker", job.worker or "–")
            _fact("Submitted", _when(job.created_at))
            if job.finished_at:
                _fact("Finished", _when(job.finished_at))
        ui.label(f"Job {job.id}").classes("text-xs text-gray-400")


def _transcript(services: Services, job: Job, transcript: Transcript, who: str | None) -> None:
    text = transcript.text
    job_id, stem = job.id, PurePath(job.name or "transcript").stem

    async def download(fmt: str) -> None:
        try:
            data = await services.api.transcript(job_id, fmt, who)
        except BrokerUnavailable as exc:
            ui.notify(f"Download failed: the broker is unreachable ({exc.reason})", type="negative")
            return
        except TranscriptUnavailable as exc:
            ui.notify(f"Download failed: {exc.detail}", type="negative")
            return
        ui.download.content(data, f"{stem or 'transcript'}.{fmt}", MEDIA_TYPES[fmt])

    def copy() -> None:
        ui.clipboard.write(text)
        ui.notify("Transcript copied to the clipboard", type="positive", timeout=1500)

    with ui.card().classes("w-full gap-3").mark("transcript-card"):
        with ui.row().classes("w-full items-center gap-2"):
            ui.label("Transcript").classes("text-lg font-semibold")
            ui.space()
            ui.button("Copy", icon="content_copy", on_click=copy).props(
                'outline no-caps data-testid="copy"'
            ).mark("copy")
            for fmt in FORMATS:
                ui.button(fmt.upper(), icon="download", on_click=lambda f=fmt: download(f)).props(
                    f'unelevated no-caps data-testid="download-{fmt}"'
                ).mark(f"download-{fmt}")
        ui.label(text or "(no speech found)").classes(
            "text-base leading-relaxed whitespace-pre-wrap"
        ).props('data-testid="transcript-text"').mark("transcript-text")
    if speakers_of(transcript):
        speaker_turns(job.id, transcript)
    with ui.card().classes("w-full gap-2"):
        ui.label(f"Segments ({len(transcript.segments)})").classes("text-lg font-semibold")
        labelled = bool(speakers_of(transcript))
        rows = [
            {"id": s.id, "start": format_timestamp(s.start), "end": format_timestamp(s.end),
             **({"speaker": s.speaker or ""} if labelled else {}), "text": s.text}
            for s in transcript.segments
        ]  # fmt: skip
        speaker_column = {
            "name": "speaker",
            "label": "Speaker",
            "field": "speaker",
            "align": "left",
        }
        ui.table(
            columns=[
                {"name": "start", "label": "From", "field": "start", "align": "left"},
                {"name": "end", "label": "To", "field": "end", "align": "left"},
                *([speaker_column] if labelled else []),
                {"name": "text", "label": "Text", "field": "text", "align": "left"},
            ],
            rows=rows,
            row_key="id",
            pagination={"rowsPerPage": 50},
        ).classes("w-full").props('flat dense wrap-cells data-testid="segments"').mark("segments")
    if any(s.words for s in transcript.segments):
        _words(transcript)


def _words(transcript: Transcript) -> None:
    """Every word, its time shown when the pointer rests on it (one element per segment:
    a long transcript has thousands of words)."""
    with ui.card().classes("w-full gap-2").mark("words"):
        ui.label("Words (hover a word for its time)").classes("text-lg font-semibold")
        for segment in transcript.segments:
            spans = " ".join(_word_span(w) for w in segment.words or [])
            ui.html(f"<p>{spans}</p>").classes("leading-relaxed").mark(f"words-{segment.id}")


def _word_span(word: Word) -> str:
    when = f"{format_timestamp(word.start)} – {format_timestamp(word.end)}"
    title = f"{when} · p {word.probability:.2f}"
    return f'<span class="wf-word" title="{title}">{escape(word.word.strip())}</span>'


def _fact(name: str, value: str) -> None:
    with ui.column().classes("gap-0"):
        ui.label(name).classes("text-xs uppercase tracking-wide text-gray-500")
        ui.label(value)


def _notice(
    icon: str, title: str, text: str, color: str = "text-gray-500", retry: Any = None
) -> None:
    with ui.card().classes("w-full").mark("notice"), ui.row().classes("w-full items-center gap-3"):
        ui.icon(icon, size="32px").classes(color)
        with ui.column().classes("gap-0 grow"):
            ui.label(title).classes("text-lg font-semibold")
            ui.label(text).classes("text-sm").mark("notice-text")
        if retry is not None:
            ui.button("Try again", icon="refresh", on_click=retry).props("no-caps outline")


def _when(value: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
