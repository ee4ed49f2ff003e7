"""The live transcript box: committed text, then the partial tail, lighter, after it.

The page's script (`static/live.js`) writes into these spans as messages arrive, so a
word costs no server round trip; Python builds them once and never touches them again
(a re-render would wipe what the script wrote). The box scrolls itself to the newest
words unless the reader has scrolled up.
"""

from __future__ import annotations

import json

from nicegui import ui

from gui.i18n import t

PLACEHOLDER = "[data-live=committed]:empty + [data-live=partial]:empty::before"
"""The hint in an empty box: drawn by CSS, so it is never part of the transcript's text."""


def create() -> None:
    hint = json.dumps(t("live.placeholder"), ensure_ascii=False)  # a valid CSS string too
    ui.add_css(f"{PLACEHOLDER} {{ content: {hint}; color: #94a3b8; font-style: normal; }}")
    with (
        ui.element("div")
        .classes(
            "w-full h-72 overflow-y-auto rounded-lg border border-slate-200 dark:border-slate-700"
            " bg-white dark:bg-slate-800 p-4 text-lg leading-relaxed whitespace-pre-wrap"
        )
        .props("data-live=scroll data-testid=live-text aria-live=polite role=log")
    ):
        ui.element("span").props("data-live=committed data-testid=live-committed")
        ui.element("span").classes("text-slate-400 dark:text-slate-500 italic").props(
            "data-live=partial data-testid=live-partial"
        )


def meters() -> None:
    """Elapsed time and the input level, both drawn by the script."""
    with ui.row().classes("items-center gap-3"):
        ui.icon("timer", size="20px").classes("text-slate-500").tooltip(t("live.elapsed"))
        ui.label("0:00").classes("font-mono tabular-nums w-12").props(
            "data-live=elapsed data-testid=live-elapsed"
        )
        with (
            ui.element("div")
            .classes("w-40 h-2 rounded bg-slate-200 dark:bg-slate-700 overflow-hidden")
            .props(
                f'data-testid=live-level role=meter aria-label="{t("live.level")}" '
                "aria-valuemin=0 aria-valuemax=100 aria-valuenow=0"
            )
            .tooltip(t("live.level"))
        ):
            ui.element("div").classes("h-full bg-positive transition-[width] duration-75").props(
                'data-live=level style="width:0%"'
            )
