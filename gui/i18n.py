"""The GUI's words in the reader's language: one catalogue per language, `t(key)` to use it.

Catalogues are `gui/locales/<lang>.json`: key → text with `{name}` fields, or, for a text
that depends on a count, CLDR plural category → text (`plural`; Babel knows that Russian
has one/few/many and English one/other). A page reads the language once per request: the
browser's choice kept in its session (the switch), else the first supported language in
its `Accept-Language`, else English; `mark_page` gives the page that `<html lang>` and
Quasar's words. Text made outside a page's request takes the language explicitly (`text`,
`translator`). Numbers, percentages and dates go through Babel too. A key missing from a
catalogue is a bug, not a fallback: `tests/test_gui_i18n.py` checks that every key the
code uses is in every catalogue, with the same fields.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import Literal, cast, get_args

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent
from nicegui import app, ui
from nicegui.language import Language

Lang = Literal["en", "ru"]
LANGUAGES: dict[Lang, str] = {"en": "English", "ru": "Русский"}
"""Supported languages and their names in themselves."""
DEFAULT: Lang = "en"
SESSION_KEY = "lang"
LOCALES = Path(__file__).with_name("locales")
QUASAR: dict[Lang, Language] = {"en": "en-US", "ru": "ru"}
"""Each language's Quasar language pack (its date picker, table pagination words), which
is also the page's `<html lang>`."""

Translator = Callable[..., str]
"""`t` bound to one language: `words("key", name=value)`."""
Entry = str | dict[str, str]
"""A catalogue's text, or its texts by plural category."""


@cache
def catalogue(lang: Lang) -> dict[str, Entry]:
    """`lang`'s catalogue, read once."""
    loaded = json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))
    return cast(dict[str, Entry], loaded)


def text(lang: Lang, key: str, **fields: object) -> str:
    """`key`'s text in `lang`, its `{name}` fields filled in."""
    template = catalogue(lang)[key]
    if not isinstance(template, str):
        raise TypeError(f"{key} depends on a count: use plural()")
    return template.format(**fields) if fields else template


def plural(lang: Lang, key: str, count: int, **fields: object) -> str:
    """`key`'s text for `count` things in `lang`; `{count}` is the number, written the
    language's way."""
    forms = catalogue(lang)[key]
    if isinstance(forms, str):
        raise TypeError(f"{key} does not depend on a count: use text()")
    category = locale(lang).plural_form(count)
    return forms.get(category, forms["other"]).format(count=number(lang, count), **fields)


@cache
def locale(lang: Lang) -> Locale:
    return Locale.parse(lang)


def number(lang: Lang, value: float) -> str:
    """`1234.5` as `lang` writes it (`1,234.5`, `1 234,5`)."""
    return format_decimal(value, locale=lang)


def percent(lang: Lang, share: float) -> str:
    """`0.25` as `25%` (`25 %` in Russian)."""
    return format_percent(share, locale=lang)


def when(lang: Lang, timestamp: float) -> str:
    """A moment in the GUI's time zone, as `lang` writes a date and time."""
    return format_datetime(datetime.fromtimestamp(timestamp).astimezone(), "medium", locale=lang)


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


def mark_page(lang: Lang) -> None:
    """Set this page's `<html lang>` and Quasar language pack to `lang`.

    NiceGUI takes both from the page's decorator (one language for every visitor), so
    this client gets its own copy of the page object with the reader's language."""
    client = ui.context.client
    own = copy.copy(client.page)
    own.language = QUASAR[lang]
    client.page = own


def choose(lang: Lang) -> None:
    """Keep `lang` for this browser and show the page again in it."""
    app.storage.user[SESSION_KEY] = lang
    ui.navigate.reload()


def t(key: str, **fields: object) -> str:
    """`key`'s text in this page's language (while the page is built or handles an event)."""
    return text(language(), key, **fields)


def translator() -> Translator:
    """`t` bound to this page's language, for code that runs later outside its request
    (a state listener, a background task): `app.storage.user` is not readable there."""
    return partial(text, language())
