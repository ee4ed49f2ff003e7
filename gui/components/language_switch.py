"""The EN | RU switch (header, sign-in card): the reader's choice, kept for their browser."""

from __future__ import annotations

from typing import Any

from nicegui import events, ui

from gui.i18n import LANGUAGES, Lang, choose, language, t


def create(color: str = "white") -> ui.toggle:
    """A toggle showing this page's language; choosing another reloads the page in it."""

    def chosen(e: events.ValueChangeEventArguments[Any]) -> None:
        if e.value in LANGUAGES and e.value != current:
            choose(e.value)

    current: Lang = language()
    switch = ui.toggle({code: code.upper() for code in LANGUAGES}, value=current, on_change=chosen)
    switch.props(
        f"dense flat no-caps color={color} toggle-color={color} "
        f"toggle-text-color={'primary' if color == 'white' else 'white'} "
        f'aria-label="{t("header.language")}" data-testid="language-switch"'
    ).tooltip(t("header.language")).mark("language-switch")
    return switch
