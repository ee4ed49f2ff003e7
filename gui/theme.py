"""The shared page frame: colours, header, broker banner, dark mode, error notices.

Every page is `with theme.frame(services, "Title"): module.content(services)`, so the
header, the broker-down banner and the error handling are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nicegui import app, ui

from gui import head
from gui.components import language_switch
from gui.i18n import Translator, language, mark_page, t, translator
from gui.services import Services
from gui.state import GuiState


def watch(state: GuiState, update: Callable[[], None]) -> None:
    """Call `update` now and after every state change, for as long as this page lives."""
    client = ui.context.client

    def guarded() -> None:
        if not client.is_deleted:
            with client:
                update()

    unsubscribe = state.subscribe(guarded)
    client.on_delete(unsubscribe)
    update()


def _on_error(words: Translator) -> Callable[[], None]:
    """The notice for an exception in a handler (raised later, outside the page's request)."""
    return lambda: ui.notify(words("error.notify"), type="negative", timeout=8000)


@contextmanager
def frame(services: Services, title: str) -> Iterator[None]:
    """Header, banner and a centred content column; the page's content goes inside."""
    head.set_up(title)
    ui.on_exception(_on_error(translator()))
    ui.query("body").classes("bg-slate-50 dark:bg-slate-900")
    _banner(services, _header())
    with ui.column().classes("w-full max-w-screen-xl mx-auto px-4 py-5 gap-5"):
        yield


def _header() -> ui.chip:
    prefs = app.storage.user
    prefs.setdefault("dark", False)
    dark = ui.dark_mode().bind_value(prefs, "dark")
    with ui.header(elevated=True).classes("items-center gap-3 px-6 py-2 bg-primary"):
        with ui.link(target="/").classes("flex items-center gap-2 text-white no-underline"):
            ui.icon("graphic_eq", size="28px")
            ui.label("whisperfarm").classes("text-xl font-semibold tracking-tight")
        ui.label(t("header.tagline")).classes("text-sm text-indigo-100 max-sm:hidden")
        ui.space()
        with ui.link(target="/live").classes("flex items-center gap-1 text-white no-underline"):
            ui.icon("mic", size="22px")
            ui.label(t("live.nav"))
        language_switch.create()
        status = ui.chip(icon="circle").props("dense square text-color=white").mark("broker-status")
        ui.button(on_click=lambda: dark.set_value(not dark.value)).props(
            "flat round color=white"
        ).bind_icon_from(dark, "value", lambda on: "light_mode" if on else "dark_mode").tooltip(
            t("header.dark_mode")
        ).mark("dark-toggle")

    return status


def _banner(services: Services, status: ui.chip) -> None:
    """The broker-down banner and the header's status chip, always updated together."""
    connection = services.state.connection
    words = translator()
    with (
        ui.row()
        .classes("w-full items-center gap-3 px-6 py-3 bg-red-700 text-white no-wrap")
        .mark("broker-banner")
        .props('role=alert data-testid="broker-banner"') as banner
    ):
        ui.icon("cloud_off", size="24px")
        text = ui.label().classes("grow")
        ui.button(t("banner.retry"), on_click=services.feed.refresh).props(
            "flat dense color=white no-caps"
        )

    def update() -> None:
        banner.set_visibility(connection.down)
        text.text = (
            words("banner.broker_down", broker=connection.broker, reason=connection.reason)
            if connection.down
            else ""
        )
        if connection.up:
            status.text, color = words("header.broker_online"), "green-7"
        elif connection.down:
            status.text, color = words("header.broker_offline"), "red-7"
        else:
            status.text, color = words("header.connecting"), "grey-7"
        status.props(f"color={color}")

    watch(services.state, update)


def error_page(exception: Exception) -> None:
    """`app.on_page_exception`: a page that failed to build says so, without a traceback."""
    mark_page(language())
    with ui.column().classes("w-full items-center gap-3 py-24"):
        ui.icon("error_outline", size="64px").classes("text-negative")
        ui.label(t("error.title")).classes("text-2xl")
        ui.label(t("error.text"))
        ui.link(t("error.back"), "/")
