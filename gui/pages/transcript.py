"""One job: its state, its transcript with timestamped segments, copy and downloads.

The page draws at once and loads from the broker right after; it reloads by itself when
the job's state changes (a running job's page turns into its transcript when it is done),
and a broker that is down is a notice with a retry, never an error page.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import PurePath
from typing import Any

from nicegui import background_tasks, ui

from gui import languages
from gui.broker_api import BrokerUnavailable, TranscriptUnavailable
from gui.components.speaker_turns import speaker_turns, speakers_of
from gui.i18n import Lang, Translator, language, number, translator, when
from gui.identity import person
from gui.rows import STATUS_COLORS, format_duration, format_timestamp, status_label
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
    # Read while the page's request is at hand: the page loads after it.
    who, lang, words = person(services.settings), language(), translator()
    with ui.row().classes("w-full items-center"):
        back = ui.button(words("transcript.back"), icon="arrow_back")
        back.on_click(lambda: ui.navigate.to("/"))
        back.props("flat no-caps").mark("back")
    body = ui.column().classes("w-full gap-4")
    with body:
        ui.spinner(size="lg").classes("self-center")

    def status() -> Any:
        """What makes the page worth reloading: the job's state, the broker coming back."""
        job = services.state.jobs.get(job_id)
        return job.status if job else None, services.state.connection.up

    seen = [status()]

    async def load() -> None:
        loaded = await _load(services, job_id, who, words)
        if body.is_deleted:
            return
        body.clear()
        with body:
            _render(services, job_id, loaded, _Reader(who, lang, words), reload=load)

    def on_change() -> None:
        """Reload when this job's state moves (it just finished) or the broker is back."""
        if status() != seen[0]:
            seen[0] = status()
            background_tasks.create(load(), name=f"reload job {job_id}")

    watch(services.state, on_change)
    ui.timer(0, load, once=True)


@dataclass(frozen=True)
class _Reader:
    """Who reads the page (their jobs only) and in which language."""

    who: str | None
    lang: Lang
    words: Translator


async def _load(services: Services, job_id: str, who: str | None, words: Translator) -> Loaded:
    loaded = Loaded()
    try:
        loaded.job = await services.api.job(job_id, who)
    except BrokerUnavailable as exc:
        known = services.state.jobs.get(job_id)
        loaded.job = known if known is not None and who in (None, known.person) else None
        loaded.problem = words("transcript.unreachable", reason=exc.reason)
        return loaded
    if loaded.job is None or loaded.job.status is not JobStatus.DONE:
        return loaded
    try:
        data = await services.api.transcript(job_id, "json", who)
        loaded.transcript = Transcript.model_validate_json(data)
    except BrokerUnavailable as exc:
        loaded.problem = words("transcript.unreachable", reason=exc.reason)
    except TranscriptUnavailable as exc:
        loaded.problem = words("transcript.unavailable", detail=exc.detail)
    except ValueError:  # pydantic's ValidationError is one
        loaded.problem = words("transcript.invalid")
    return loaded


def _render(services: Services, job_id: str, loaded: Loaded, reader: _Reader, reload: Any) -> None:
    job, words = loaded.job, reader.words
    if job is None:
        text = loaded.problem or words("transcript.no_job", job_id=job_id)
        _notice("search_off", words("transcript.no_such_job"), text,
                retry=reload if loaded.problem else None, words=words)  # fmt: skip
        return
    _summary(job, reader)
    if loaded.problem:
        _notice("cloud_off", words("transcript.incomplete"), loaded.problem,
                color="text-negative", retry=reload, words=words)  # fmt: skip
    if job.status is JobStatus.FAILED:
        _notice("error", words("transcript.failed"), job.error or words("transcript.no_reason"),
                color="text-negative")  # fmt: skip
    elif job.status is JobStatus.INTERRUPTED:
        reason = job.error or words("transcript.cut")
        _notice("pause_circle", words("transcript.interrupted"), reason, color="text-warning")
    elif job.status in ACTIVE_STATUSES:
        with ui.row().classes("items-center gap-3").mark("job-pending"):
            ui.spinner(size="md")
            status = status_label(reader.lang, job.status).lower()
            ui.label(words("transcript.pending", status=status))
    if loaded.transcript is not None:
        _transcript(services, job, loaded.transcript, reader)


def _summary(job: Job, reader: _Reader) -> None:
    lang, words = reader.lang, reader.words
    with ui.card().classes("w-full gap-2"):
        with ui.row().classes("w-full items-center gap-3"):
            ui.icon("audio_file", size="32px").classes("text-primary")
            name = job.name or words("jobs.stream")
            ui.label(name).classes("text-2xl font-semibold").mark("job-name")
            ui.badge(status_label(lang, job.status), color=STATUS_COLORS[job.status]).classes(
                "text-sm px-2 py-1"
            ).mark("job-status")
        with ui.row().classes("gap-x-8 gap-y-1 text-sm"):
            seconds = job.duration or job.duration_hint
            _fact(words("transcript.fact.length"), format_duration(seconds) if seconds else "–")
            spoken = languages.label(job.language, lang) or words("transcript.auto")
            _fact(words("transcript.fact.language"), spoken)
            _fact(words("transcript.fact.task"), words(f"task.{job.task}"))
            _fact(words("transcript.fact.worker"), job.worker or "–")
            _fact(words("transcript.fact.submitted"), when(lang, job.created_at))
            if job.finished_at:
                _fact(words("transcript.fact.finished"), when(lang, job.finished_at))
        ui.label(words("transcript.job", job_id=job.id)).classes("text-xs text-gray-400")


def _transcript(services: Services, job: Job, transcript: Transcript, reader: _Reader) -> None:
    text, words = transcript.text, reader.words
    job_id, stem = job.id, PurePath(job.name or "transcript").stem

    async def download(fmt: str) -> None:
        try:
            data = await services.api.transcript(job_id, fmt, reader.who)
        except BrokerUnavailable as exc:
            ui.notify(words("transcript.download_unreachable", reason=exc.reason), type="negative")
            return
        except TranscriptUnavailable as exc:
            ui.notify(words("transcript.download_failed", detail=exc.detail), type="negative")
            return
        ui.download.content(data, f"{stem or 'transcript'}.{fmt}", MEDIA_TYPES[fmt])

    def copy() -> None:
        ui.clipboard.write(text)
        ui.notify(words("transcript.copied"), type="positive", timeout=1500)

    with ui.card().classes("w-full gap-3").mark("transcript-card"):
        with ui.row().classes("w-full items-center gap-2"):
            ui.label(words("transcript.title")).classes("text-lg font-semibold")
            ui.space()
            ui.button(words("transcript.copy"), icon="content_copy", on_click=copy).props(
                'outline no-caps data-testid="copy"'
            ).mark("copy")
            for fmt in FORMATS:
                ui.button(fmt.upper(), icon="download", on_click=lambda f=fmt: download(f)).props(
                    f'unelevated no-caps data-testid="download-{fmt}"'
                ).mark(f"download-{fmt}")
        ui.label(text or words("transcript.no_speech")).classes(
            "text-base leading-relaxed whitespace-pre-wrap"
        ).props('data-testid="transcript-text"').mark("transcript-text")
    if speakers_of(transcript):
        speaker_turns(job.id, transcript, words)
    with ui.card().classes("w-full gap-2"):
        count = number(reader.lang, len(transcript.segments))
        ui.label(words("transcript.segments", count=count)).classes("text-lg font-semibold")
        labelled = bool(speakers_of(transcript))
        rows = [
            {"id": s.id, "start": format_timestamp(s.start), "end": format_timestamp(s.end),
             **({"speaker": s.speaker or ""} if labelled else {}), "text": s.text}
            for s in transcript.segments
        ]  # fmt: skip
        speaker_column = {
            "name": "speaker",
            "label": words("transcript.speaker"),
            "field": "speaker",
            "align": "left",
        }
        ui.table(
            columns=[
                {
                    "name": "start",
                    "label": words("transcript.from"),
                    "field": "start",
                    "align": "left",
                },
                {"name": "end", "label": words("transcript.to"), "field": "end", "align": "left"},
                *([speaker_column] if labelled else []),
                {
                    "name": "text",
                    "label": words("transcript.text"),
                    "field": "text",
                    "align": "left",
                },
            ],
            rows=rows,
            row_key="id",
            pagination={"rowsPerPage": 50},
        ).classes("w-full").props('flat dense wrap-cells data-testid="segments"').mark("segments")
    if any(s.words for s in transcript.segments):
        _words(transcript, words)


def _words(transcript: Transcript, words: Translator) -> None:
    """Every word, its time shown when the pointer rests on it (one element per segment:
    a long transcript has thousands of words)."""
    with ui.card().classes("w-full gap-2").mark("words"):
        ui.label(words("transcript.words")).classes("text-lg font-semibold")
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
    icon: str, title: str, text: str, color: str = "text-gray-500", retry: Any = None,
    words: Translator | None = None,
) -> None:  # fmt: skip
    """A card that says what is wrong; with `retry` (and the `words` to label it), a button."""
    with ui.card().classes("w-full").mark("notice"), ui.row().classes("w-full items-center gap-3"):
        ui.icon(icon, size="32px").classes(color)
        with ui.column().classes("gap-0 grow"):
            ui.label(title).classes("text-lg font-semibold")
            ui.label(text).classes("text-sm").mark("notice-text")
        if retry is not None and words is not None:
            again = ui.button(words("transcript.try_again"), icon="refresh", on_click=retry)
            again.props("no-caps outline")
