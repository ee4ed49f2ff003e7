"""The upload card: language, task and speaker-label pickers, and a drop zone for up to
10 files."""

from __future__ import annotations

import asyncio
from typing import Literal, cast

from nicegui import app, events, ui

from gui import languages
from gui.i18n import Lang, language, plural, t, text, translator
from gui.identity import person
from gui.services import Services

TASKS = ("transcribe", "translate")
"""The task toggle's values; each one reads `task.<value>`."""


def create(services: Services) -> None:
    limit = services.settings.max_files
    prefs = app.storage.user
    lang, words = language(), translator()
    options = languages.options(lang)
    if prefs.get("language") not in options:
        prefs["language"] = languages.AUTO
    if prefs.get("task") not in TASKS:
        prefs["task"] = "transcribe"

    who = person(services.settings)

    async def on_upload(e: events.MultiUploadEventArguments) -> None:
        files, extra = e.files[:limit], e.files[limit:]
        spoken = languages.to_request(prefs.get("language"))
        task = cast(Literal["transcribe", "translate"], prefs.get("task", "transcribe"))
        diarize = bool(prefs.get("diarize", False))
        results = await asyncio.gather(
            *(services.uploader.submit(f.name, f.save, spoken, task, who, diarize) for f in files)
        )
        e.sender.run_method("reset")
        refused = [r for r in results if r is not None]
        for r in refused:
            message = words(f"upload.refused.{r.kind}", name=r.name, detail=r.detail)
            ui.notify(message, type="negative", timeout=10_000)
        if started := len(files) - len(refused):
            ui.notify(plural(lang, "upload.started", started), type="positive")
        if extra:
            _too_many(lang, limit, len(extra))

    with ui.card().classes("grow basis-[36rem] gap-3").mark("upload-card"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("upload_file", size="26px").classes("text-primary")
            ui.label(t("upload.title")).classes("text-lg font-semibold")
        ui.label(t("upload.hint", limit=limit)).classes("text-sm text-gray-500 dark:text-gray-400")
        with ui.row().classes("w-full items-center gap-4"):
            ui.select(options, label=t("upload.language"), with_input=True).bind_value(
                prefs, "language"
            ).props("dense outlined options-dense").classes("w-64").mark("language")
            tasks = {task: t(f"task.{task}") for task in TASKS}
            ui.toggle(tasks).bind_value(prefs, "task").props("no-caps rounded").mark("task")
            ui.checkbox(t("upload.diarize")).bind_value(prefs, "diarize").props(
                'data-testid="diarize"'
            ).tooltip(t("upload.diarize_hint")).mark("diarize")
        ui.upload(
            multiple=True,
            auto_upload=True,
            max_files=limit,
            label=t("upload.drop", limit=limit),
            on_multi_upload=on_upload,
            on_rejected=lambda: _too_many(lang, limit, None),
        ).props('flat bordered color=primary data-testid="upload"').classes("w-full").mark("upload")


def _too_many(lang: Lang, limit: int, extra: int | None) -> None:
    """Quasar refuses files past `max_files` (`extra` unknown); a drop's surplus is counted."""
    message = (
        plural(lang, "upload.too_many", extra, limit=limit)
        if extra
        else text(lang, "upload.too_many_rest", limit=limit)
    )
    ui.notify(message, type="warning")
