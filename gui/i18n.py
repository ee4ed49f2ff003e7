"""The GUI's words in the reader's language: one catalogue per language, `t(key)` to use it.

Catalogues are `gui/locales/<lang>.json` (key → text with `{name}` fields). A page reads
the language once per request: the browser's choice kept in its session (the header's
switch), else the first supported language in its `Accept-Language`, else English. Text
made outside a page (a background task's notice) takes the language explicitly (`text`).
A key missing from a catalogue is a bug, not a fallback: `tests/test_gui_i18n.py` checks
that every key the code uses is in every catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Literal, cast, get_args

from nicegui import app, ui

Lang = Literal["en", "ru"]
LANGUAGES: dict[Lang, str] = {"en": "English", "ru": "Русский"}
"""Supported languages and their names in themselves (the switch's labels)."""
DEFAULT: Lang = "en"
SESSION_KEY = "lang"
LOCALES = Path(__file__).with_name("locales")


@cache
def catalogue(lang: Lang) -> dict[str, str]:
    """`lang`'s catalogue, read once."""
    loaded = json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))
    return cast(dict[str, str], loaded)


def text(lang: Lang, key: str, **fields: object) -> str:
    """`key`'s text in `lang`, its `{name}` fields filled in."""
    template = catalogue(lang)[key]
    return template.format(**fields) if fields else template


def from_accept_language(header: str) -> Lang:
    """The first supported language in an `Accept-Language` header, by its q weights."""
    weighted: list[tuple[float, int, str]] = []
    for order, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        weighted.append((-quality, order, tag.strip().lower().split("-")[0]))
    for _, _, primary in sorted(weighted):
        if primary in get_args(Lang):
            return cast(Lang, primary)
    return DEFAULT


def language() -> Lang:
    """This page's language: the session's choice, else the browser's."""
    chosen = app.storage.user.get(SESSION_KEY)
    if chosen in get_args(Lang):
        return cast(Lang, chosen)
    request = ui.context.client.request
    return from_accept_language(request.headers.get("accept-language", "") if request else "")


def choose(lang: Lang) -> None:
    """Keep `lang` for this browser and show the page again in it."""
    app.storage.user[SESSION_KEY] = lang
    ui.navigate.reload()


def t(key: str, **fields: object) -> str:
    """`key`'s text in this page's language (while the page is built or handles an event)."""
    return text(language(), key, **fields)


def translator() -> Callable[..., str]:
    """`t` bound to this page's language, for code that runs later outside its request
    (a state listener, a background task): `app.storage.user` is not readable there."""
    return partial(text, language())
