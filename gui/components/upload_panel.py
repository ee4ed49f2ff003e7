"""The upload card: language, task and speaker-label pickers, and a drop zone for up to
10 files."""

from __future__ import annotations

import asyncio
from typing import Literal, cast

from nicegui import app, events, ui

from gui import languages
from gui.identity import person
from gui.services import Services

TASKS = {"transcribe": "Transcribe", "translate": "Translate to English"}


def create(services: Services) -> None:
    limit = services.settings.max_files
    prefs = app.storage.user
    if prefs.get("language") not in languages.options():
        prefs["language"] = languages.AUTO
    if prefs.get("task") not in TASKS:
        prefs["task"] = "transcribe"

    who = person(services.settings)

    async def on_upload(e: events.MultiUploadEventArguments) -> None:
        files, extra = e.files[:limit], e.files[limit:]
        language = languages.to_request(prefs.get("language"))
        task = cast(Literal["transcribe", "translate"], prefs.get("task", "transcribe"))
        diarize = bool(prefs.get("diarize", False))
        results = await asyncio.gather(
            *(services.uploader.submit(f.name, f.save, language, task, who, diarize) for f in files)
        )
        e.sender.run_method("reset")
        refused = [r for r in results if r is not None]
        for r in refused:
            ui.notify(f"{r.name} refused: {r.reason}", type="negative", timeout=10_000)
        if started := len(files) - len(refused):
            ui.notify(f"Uploading {_files(started)} to the farm", type="positive")
        if extra:
            _too_many(limit, len(extra))

    with ui.card().classes("grow basis-[36rem] gap-3").mark("upload-card"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("upload_file", size="26px").classes("text-primary")
            ui.label("Transcribe files").classes("text-lg font-semibold")
        ui.label(
            f"Drop up to {limit} audio or video files at once: anything ffmpeg reads "
            "(wav, mp3, m4a, flac, ogg, opus, mp4, webm…)."
        ).classes("text-sm text-gray-500 dark:text-gray-400")
        with ui.row().classes("w-full items-center gap-4"):
            ui.select(languages.options(), label="Language", with_input=True).bind_value(
                prefs, "language"
            ).props("dense outlined options-dense").classes("w-64").mark("language")
            ui.toggle(TASKS).bind_value(prefs, "task").props("no-caps rounded").mark("task")
            ui.checkbox("Speaker labels").bind_value(prefs, "diarize").props(
                'data-testid="diarize"'
            ).tooltip("Label who speaks when (S1, S2…)").mark("diarize")
        ui.upload(
            multiple=True,
            auto_upload=True,
            max_files=limit,
            label=f"Drop files here or press + (up to {limit})",
            on_multi_upload=on_upload,
            on_rejected=lambda: _too_many(limit, None),
        ).props('flat bordered color=primary data-testid="upload"').classes("w-full").mark("upload")


def _too_many(limit: int, extra: int | None) -> None:
    left = f"{_files(extra)} were" if extra else "the rest were"
    ui.notify(f"At most {limit} files at once: {left} not uploaded.", type="warning")


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
