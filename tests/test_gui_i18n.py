"""The GUI's catalogues: the same keys in every language, and every key the code names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gui import i18n

GUI = Path(i18n.__file__).parent
USED = re.compile(r"""\b(?:t|words|text\(\w+,)\s*\(?\s*["']([a-z0-9_]+(?:\.[a-z0-9_]+)+)["']""")
"""A catalogue key as the code names it: `t("page.key")`, a translator's `words("…")`."""


def used_keys() -> set[str]:
    return {key for path in GUI.rglob("*.py") for key in USED.findall(path.read_text())}


def test_every_language_has_the_same_keys() -> None:
    keys = {lang: set(i18n.catalogue(lang)) for lang in i18n.LANGUAGES}
    english = keys["en"]
    for lang, own in keys.items():
        assert own == english, f"{lang}: missing {english - own}, extra {own - english}"


def test_every_key_the_code_uses_is_in_the_catalogues() -> None:
    used = used_keys()
    assert used, "the pattern finds the code's keys"
    missing = used - set(i18n.catalogue("en"))
    assert not missing, f"keys used but not in the catalogues: {sorted(missing)}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ru-RU,ru;q=0.9,en-US;q=0.8", "ru"),
        ("en-GB,en;q=0.9", "en"),
        ("de-DE,de;q=0.9,ru;q=0.8", "ru"),
        ("de-DE,fr;q=0.9", "en"),
        ("en;q=0.5,ru;q=0.9", "ru"),
        ("", "en"),
        ("ru;q=abc,en", "en"),
    ],
)
def test_the_browser_language_is_the_first_supported_one_by_weight(
    header: str, expected: str
) -> None:
    assert i18n.from_accept_language(header) == expected
