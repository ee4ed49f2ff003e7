"""The languages Whisper knows, for the language picker ("auto" lets the model detect it).

Names are shown in the reader's language (Babel's CLDR names: `German (de)`, `Немецкий
(de)`); a language CLDR does not name keeps Whisper's English name.
"""

from __future__ import annotations

from gui.i18n import DEFAULT, Lang, locale, text
from whisperfarm.languages import NAMES

__all__ = ["AUTO", "NAMES"]

AUTO = "auto"


def name(code: str, lang: Lang = DEFAULT) -> str:
    """`code`'s name in `lang`, capitalised (CLDR writes Russian names in lower case)."""
    own = locale(lang).languages.get(code) if lang != DEFAULT else None
    named = own or NAMES.get(code, code)
    return named[:1].upper() + named[1:]


def options(lang: Lang = DEFAULT) -> dict[str, str]:
    """Picker options: auto-detect first, then every language by its name in `lang`."""
    by_name = sorted(((code, name(code, lang)) for code in NAMES), key=lambda item: item[1])
    return {AUTO: text(lang, "languages.auto"), **{c: f"{n} ({c})" for c, n in by_name}}


def label(code: str | None, lang: Lang = DEFAULT) -> str:
    """How a job's language is shown: `English (en)`, or the code if unknown."""
    if not code:
        return ""
    return f"{name(code, lang)} ({code})" if code in NAMES else code


def to_request(choice: str | None) -> str | None:
    """The picker's value as the `start` message's `language` (None: detect)."""
    return None if not choice or choice == AUTO or choice not in NAMES else choice
