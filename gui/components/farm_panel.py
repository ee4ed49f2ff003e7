"""The farm at a glance (`/v1/farm`): workers, streams in use, queue."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from gui.services import Services
from gui.theme import watch
from whisperfarm.farm_view import FarmView, WorkerView


def create(services: Services) -> None:
    state = services.state
    shown: list[Any] = [None]

    with ui.card().classes("grow basis-[22rem] gap-3").mark("farm-panel"):
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("hub", size="26px").classes("text-primary")
            ui.label("Farm").classes("text-lg font-semibold")
        body = ui.column().classes("w-full gap-3")

    def update() -> None:
        farm, connection = state.farm, state.connection
        signature = (farm, connection.up, connection.down)
        if signature == shown[0]:
            return
        shown[0] = signature
        body.clear()
        with body:
            _render(farm, stale=not connection.up)

    watch(state, update)


def _render(farm: FarmView, stale: bool) -> None:
    with ui.row().classes("w-full gap-3 no-wrap"):
        _stat("Workers", str(len(farm.workers)), "farm-workers")
        _stat("Streams", f"{farm.streams.active} / {farm.streams.limit}", "farm-streams")
        _stat("Queue", str(farm.queue), "farm-queue")
    streams = farm.streams
    load = streams.active / streams.limit if streams.limit else 0.0
    ui.linear_progress(value=load, show_value=False, size="6px").props(
        f"rounded color={'negative' if load >= 1 else 'primary'}"
    ).tooltip("Streams in use")
    if stale:
        ui.label("Last known state: the broker is not answering.").classes("text-sm text-negative")
    if not farm.workers:
        ui.label("No worker connected: uploads wait in the queue.").classes(
            "text-sm text-gray-500"
        ).mark("farm-no-workers")
        return
    with ui.column().classes("w-full gap-1"):
        for worker in farm.workers:
            _worker(worker)


def _stat(title: str, value: str, marker: str) -> None:
    with ui.column().classes(
        "grow items-center gap-0 rounded-lg py-2 bg-indigo-50 dark:bg-slate-800"
    ):
        ui.label(value).classes("text-2xl font-semibold").mark(marker).props(
            f'data-testid="{marker}"'
        )
        ui.label(title).classes("text-xs uppercase tracking-wide text-gray-500")


def _worker(worker: WorkerView) -> None:
    busy = worker.busy
    with ui.row().classes("w-full items-center gap-2 no-wrap text-sm").mark("farm-worker"):
        ui.icon("memory", size="18px").classes("text-gray-500")
        ui.label(worker.name).classes("font-medium")
        ui.label(f"{worker.engine} {worker.model} · {worker.device}").classes(
            "text-gray-500 truncate"
        )
        ui.space()
        ui.badge(f"{busy}/{worker.slots} busy", color="primary" if busy else "grey-6").props(
            "outline"
        )
