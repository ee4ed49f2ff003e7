"""The farm at a glance (`/v1/farm`): workers, streams in use, queue."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from gui.i18n import Lang, Translator, language, number, translator
from gui.services import Services
from gui.theme import watch
from whisperfarm.farm_view import FarmView, WorkerView


def create(services: Services) -> None:
    state = services.state
    shown: list[Any] = [None]
    words, lang = translator(), language()

    with ui.card().classes("grow basis-[22rem] gap-3").mark("farm-panel"):
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("hub", size="26px").classes("text-primary")
            ui.label(words("farm.title")).classes("text-lg font-semibold")
        body = ui.column().classes("w-full gap-3")

    def update() -> None:
        farm, connection = state.farm, state.connection
        signature = (farm, connection.up, connection.down)
        if signature == shown[0]:
            return
        shown[0] = signature
        body.clear()
        with body:
            _render(farm, words, lang, stale=not connection.up)

    watch(state, update)


def _render(farm: FarmView, words: Translator, lang: Lang, stale: bool) -> None:
    streams = farm.streams
    with ui.row().classes("w-full gap-3 no-wrap"):
        _stat(words("farm.workers"), number(lang, len(farm.workers)), "farm-workers")
        in_use = f"{number(lang, streams.active)} / {number(lang, streams.limit)}"
        _stat(words("farm.streams"), in_use, "farm-streams")
        _stat(words("farm.queue"), number(lang, farm.queue), "farm-queue")
    load = streams.active / streams.limit if streams.limit else 0.0
    ui.linear_progress(value=load, show_value=False, size="6px").props(
        f"rounded color={'negative' if load >= 1 else 'primary'}"
    ).tooltip(words("farm.streams_in_use"))
    if stale:
        ui.label(words("farm.stale")).classes("text-sm text-negative")
    if not farm.workers:
        ui.label(words("farm.no_workers")).classes("text-sm text-gray-500").mark("farm-no-workers")
        return
    with ui.column().classes("w-full gap-1"):
        for worker in farm.workers:
            _worker(worker, words)


def _stat(title: str, value: str, marker: str) -> None:
    with ui.column().classes(
        "grow items-center gap-0 rounded-lg py-2 bg-indigo-50 dark:bg-slate-800"
    ):
        ui.label(value).classes("text-2xl font-semibold").mark(marker).props(
            f'data-testid="{marker}"'
        )
        ui.label(title).classes("text-xs uppercase tracking-wide text-gray-500")


def _worker(worker: WorkerView, words: Translator) -> None:
    busy = worker.busy
    with ui.row().classes("w-full items-center gap-2 no-wrap text-sm").mark("farm-worker"):
        ui.icon("memory", size="18px").classes("text-gray-500")
        ui.label(worker.name).classes("font-medium")
        ui.label(f"{worker.engine} {worker.model} · {worker.device}").classes(
            "text-gray-500 truncate"
        )
        ui.space()
        busy_text = words("farm.busy", busy=busy, slots=worker.slots)
        ui.badge(busy_text, color="primary" if busy else "grey-6").props("outline")
