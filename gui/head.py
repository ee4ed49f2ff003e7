"""What every page sets before its content: colours, its title and its language.

Apart from the frame (`theme`) because the sign-in page has no header but the same head,
and `theme` reaches the sign-in module through the state it renders.
"""

from __future__ import annotations

from nicegui import ui

from gui.i18n import language, mark_page

PRIMARY = "#4f46e5"


def set_up(title: str) -> None:
    """Colours, `<title>`, and `<html lang>` with Quasar's words in the reader's language."""
    ui.colors(primary=PRIMARY, secondary="#0ea5e9", accent="#9333ea", positive="#16a34a",
              negative="#dc2626", warning="#d97706")  # fmt: skip
    mark_page(language())
    ui.page_title(f"{title} · whisperfarm")
