"""The main page: upload files, see the farm, follow every job live."""

from __future__ import annotations

from nicegui import ui

from gui.components import farm_panel, job_table, upload_panel
from gui.services import Services


def content(services: Services) -> None:
    with ui.row().classes("w-full gap-5 items-stretch"):
        upload_panel.create(services)
        farm_panel.create(services)
    job_table.create(services)
