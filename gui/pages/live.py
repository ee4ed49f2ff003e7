"""`/live`: talk into the browser's microphone and read the words as they are spoken.

The capture and the text run in the page's script (`static/live.js`); this module owns
what the reader decides and is told: Start/Stop, the language, the state line and the
messages, each through `t()`. Start checks the sign-in again and issues a one-use
ticket for the page's socket (`gui/live/page_socket.py`); the script reports each change
of state back as the `whisperfarm_live` event.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from nicegui import app, events, ui

from gui import languages
from gui.components import live_text
from gui.i18n import language, t
from gui.identity import person
from gui.live.tickets import LiveGrant
from gui.pages import login
from gui.services import Services

Phase = Literal["idle", "starting", "live", "stopping"]
STATIC = "/static"
ERROR_KINDS = (
    "permission", "no_device", "insecure", "overloaded", "broker_down", "failed",
    "unauthorized", "bad_request", "disconnected",
)  # fmt: skip
"""What the script or the socket may report; each has a `live.error.<kind>` message."""
PREF = "live_language"


class _LivePanel:
    """The button, the state line and the message of one open page."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.phase: Phase = "idle"
        prefs = app.storage.user
        choices = {**languages.options(language()), languages.AUTO: t("live.language_auto")}
        if prefs.get(PREF) not in choices:
            prefs[PREF] = languages.AUTO
        with ui.row().classes("w-full items-center gap-4"):
            self.button = ui.button(on_click=self.toggle).props("unelevated no-caps size=lg")
            self.button.mark("live-toggle")
            self.language = (
                ui.select(choices, label=t("live.language"), with_input=True)
                .bind_value(prefs, PREF)
                .props("dense outlined options-dense")
                .classes("w-64")
                .mark("live-language")
            )
            live_text.meters()
            self.status = (
                ui.label()
                .classes("text-sm text-slate-500")
                .props("data-testid=live-status role=status")
            )
        with ui.row().classes("w-full items-center gap-3 no-wrap") as self.message_row:
            ui.icon("error_outline", size="24px").classes("text-negative")
            self.message = ui.label().classes("grow").props("role=alert data-testid=live-message")
            self.retry = ui.button(t("live.retry"), on_click=self.toggle).props(
                "flat dense no-caps color=negative data-testid=live-retry"
            )
        self.message_row.set_visibility(False)
        live_text.create()
        with ui.row().classes("items-center gap-2") as self.saved_row:
            ui.icon("task_alt", size="20px").classes("text-positive")
            ui.label(t("live.saved"))
            self.job_link = ui.link(t("live.open_transcript"), "/").props(
                "data-testid=live-job-link"
            )
        self.saved_row.set_visibility(False)
        self._show("idle")

    def _show(self, phase: Phase, status: str = "") -> None:
        self.phase = phase
        recording = phase in ("starting", "live", "stopping")
        self.button.set_text(t("live.stop") if recording else t("live.start"))
        self.button.props(f"icon={'stop' if recording else 'mic'} "
                          f"color={'negative' if recording else 'primary'}")  # fmt: skip
        self.button.set_enabled(phase != "stopping")
        self.language.set_enabled(not recording)
        self.status.set_text(status)

    async def toggle(self) -> None:
        if self.phase in ("starting", "live"):
            ui.run_javascript("whisperfarmLive.stop()")
            return
        if self.phase != "idle":
            return
        if not login.logged_in(self._services.settings):
            ui.navigate.to("/login?next=/live")
            return
        self.message_row.set_visibility(False)
        self.saved_row.set_visibility(False)
        grant = LiveGrant(
            language=languages.to_request(self.language.value),
            person=person(self._services.settings),
        )
        config = {
            "ticket": self._services.live.tickets.issue(grant),
            "rate": self._services.settings.live_sample_rate,
            "worklet": f"{STATIC}/live-worklet.js",
        }
        self._show("starting", t("live.status.starting"))
        ui.run_javascript(f"whisperfarmLive.start({json.dumps(config)})")

    def on_state(self, e: events.GenericEventArguments) -> None:
        report: dict[str, Any] = e.args if isinstance(e.args, dict) else {}
        state = report.get("state")
        if state == "live":
            self._show("live", t("live.status.live"))
        elif state == "reconnecting":
            self._show(self.phase, t("live.status.reconnecting"))
        elif state == "stopping":
            self._show("stopping", t("live.status.stopping"))
        elif state == "done":
            self._show("idle")
            if job_id := report.get("job_id"):
                self.job_link.props(f"href=/jobs/{job_id}")
                self.saved_row.set_visibility(True)
        elif state == "error":
            self._show("idle")
            self._error(str(report.get("kind")), str(report.get("detail") or ""))

    def _error(self, kind: str, detail: str) -> None:
        kind = kind if kind in ERROR_KINDS else "failed"
        self.message.set_text(t(f"live.error.{kind}", detail=detail))
        self.retry.set_visibility(kind in ("overloaded", "broker_down", "disconnected"))
        self.message_row.set_visibility(True)


def content(services: Services) -> None:
    ui.add_head_html(f'<script src="{STATIC}/live.js"></script>')
    with ui.card().classes("w-full gap-4").mark("live-card"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("mic", size="26px").classes("text-primary")
            ui.label(t("live.title")).classes("text-lg font-semibold")
        ui.label(t("live.hint")).classes("text-sm text-gray-500 dark:text-gray-400")
        panel = _LivePanel(services)
    ui.on("whisperfarm_live", panel.on_state)
