"""The GUI's catalogues: the same keys in every language, and every key the code names.

Also: no page module shows an English literal of its own, the words that rows and pages
pick by a value (`status.<status>`, `rejected.<kind>`…) exist for every value, counts take
each language's plural forms, and a page is served in the browser's language.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from string import Formatter
from typing import get_args

import pytest

from gui import i18n, languages, rows
from gui.components import job_table, upload_panel
from gui.i18n import Lang, catalogue, plural, text
from gui.pages.live import ERROR_KINDS
from gui.rejected import Kind, Rejected, RejectedStore
from gui.state import GuiState, Phase, Upload
from tests.farm import Broker
from tests.gui_conftest import gui_settings, simulate
from whisperfarm.jobs import JobStatus

GUI = Path(i18n.__file__).parent
USED = re.compile(
    r"""\b(?:t|words|(?:text|plural)\(\w+,)\s*\(?\s*["']([a-z0-9_]+(?:\.[a-z0-9_]+)+)["']"""
)
"""A catalogue key as the code names it: `t("page.key")`, `words("…")`, `text(lang, "…")`."""
BRAND = "whisperfarm"
SHOWN_BY = {"label", "button", "notify", "tooltip", "link", "badge", "chip", "input", "select",
            "toggle", "upload", "page_title", "set_text", "markdown", "html"}  # fmt: skip
"""Calls whose first argument is text a reader sees."""
SHOWN_AS = {"label", "placeholder", "text", "title", "message"}
"""Keyword arguments (and table column keys) that are text a reader sees."""


def used_keys() -> set[str]:
    return {key for path in GUI.rglob("*.py") for key in USED.findall(path.read_text())}


def fields(entry: i18n.Entry) -> set[str]:
    """The `{name}` fields of a text, or of all a plural's texts."""
    texts = [entry] if isinstance(entry, str) else list(entry.values())
    return {name for t in texts for _, name, _, _ in Formatter().parse(t) if name}


def test_every_language_has_the_same_keys_and_fields() -> None:
    english = catalogue("en")
    for lang in i18n.LANGUAGES:
        own = catalogue(lang)
        assert set(own) == set(english), (
            f"{lang}: missing {set(english) - set(own)}, extra {set(own) - set(english)}"
        )
        for key, entry in own.items():
            assert fields(entry) == fields(english[key]), (lang, key)
            assert isinstance(entry, str) == isinstance(english[key], str), (lang, key)


def test_a_count_s_texts_cover_the_language_s_plural_forms() -> None:
    for lang in i18n.LANGUAGES:
        forms = set(i18n.locale(lang).plural_form.tags) | {"other"}
        for key, entry in catalogue(lang).items():
            if not isinstance(entry, str):
                assert set(entry) == forms, (lang, key, forms)
                assert all("{count}" in t for t in entry.values()), (lang, key)


def test_every_key_the_code_uses_is_in_the_catalogues() -> None:
    used = used_keys()
    assert used, "the pattern finds the code's keys"
    missing = used - set(catalogue("en"))
    assert not missing, f"keys used but not in the catalogues: {sorted(missing)}"


def test_every_key_picked_by_a_value_is_in_the_catalogues() -> None:
    """Keys built from a value (`status.done`) are not found by the pattern above."""
    picked = {
        *(f"status.{s.value}" for s in JobStatus),
        *(f"phase.{p}" for p in get_args(Phase)),
        *(f"rejected.{k}" for k in get_args(Kind)),
        *(f"task.{task}" for task in upload_panel.TASKS),
        *(f"upload.refused.{kind}" for kind in ("unreadable", "unstored")),
        *(f"column.{c['name']}" for c in job_table.COLUMNS if c["name"] != "actions"),
        *(f"jobs.{word}" for word in ("open", "retry", "dismiss")),
        *(f"live.error.{kind}" for kind in ERROR_KINDS),
    }
    assert not picked - set(catalogue("en")), sorted(picked - set(catalogue("en")))


def _english_literal(node: ast.expr) -> str | None:
    """The node's own English (a literal or an f-string's literal parts), less the brand."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        own = node.value
    elif isinstance(node, ast.JoinedStr):
        own = "".join(
            p.value for p in node.values if isinstance(p, ast.Constant) and isinstance(p.value, str)
        )
    else:
        return None
    return own if re.search(r"[A-Za-z]{2,}", own.replace(BRAND, "")) else None


def shown_literals(source: str) -> list[str]:
    """Literal text `source` hands to the page: `ui.label("…")`, `label="…"`, `{"label": …}`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in SHOWN_BY and node.args:
                candidates.append(node.args[0])
            candidates += [k.value for k in node.keywords if k.arg in SHOWN_AS]
        elif isinstance(node, ast.Dict):
            candidates += [
                v for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value in SHOWN_AS
            ]  # fmt: skip
        found += [f"line {c.lineno}: {text}" for c in candidates if (text := _english_literal(c))]
    return found


def test_the_check_for_literals_finds_them() -> None:
    sample = 'ui.label("Jobs")\nui.input(placeholder=f"Filter {n}")\nx = {"label": "File"}\n'
    assert len(shown_literals(sample)) == 3
    assert shown_literals('ui.label(t("jobs.title"))\nui.label("whisperfarm")\n') == []


@pytest.mark.parametrize(
    "module", sorted(p.relative_to(GUI).as_posix() for p in GUI.rglob("*.py")), ids=str
)
def test_no_module_shows_english_of_its_own(module: str) -> None:
    assert shown_literals((GUI / module).read_text()) == []


@pytest.mark.parametrize(
    ("lang", "counts"),
    [
        ("en", {1: "Uploading 1 file", 2: "Uploading 2 files", 21: "Uploading 21 files"}),
        ("ru", {1: "загружается 1 файл", 3: "загружаются 3 файла", 5: "загружаются 5 файлов",
                21: "загружается 21 файл", 1000: "загружаются 1\xa0000 файлов"}),
    ],
)  # fmt: skip
def test_counts_take_the_language_s_plural_forms(lang: Lang, counts: dict[int, str]) -> None:
    for count, expected in counts.items():
        assert expected in plural(lang, "upload.started", count)
    with pytest.raises(TypeError):
        text(lang, "upload.started")
    with pytest.raises(TypeError):
        plural(lang, "jobs.title", 2)


def test_rows_are_in_the_reader_s_language(tmp_path: Path) -> None:
    """The same state, read in Russian and in English: a rejected row keeps its kind and
    the farm's words, so each reader sees it in their own language."""
    state, store = GuiState("http://b"), RejectedStore(tmp_path)
    store.add(Rejected(key="r", name="busy.wav", kind="overloaded", reason="farm is full"))
    # A row saved before the GUI spoke Russian had its English text in `reason`.
    store.add(Rejected(key="u", name="bad.mp3", kind="unreadable",
                       reason="Unreadable: no audio stream"))  # fmt: skip
    state.uploads["p"] = Upload("p", "up.wav", tmp_path / "up.wav", None, "transcribe",
                                phase="reconnecting", frames_sent=1, expected_frames=4,
                                note="connection lost", attempt=(2, 5))  # fmt: skip
    reloaded = RejectedStore(tmp_path)
    reloaded.load()
    by_lang = {lang: {r["key"]: r for r in rows.build_rows(state, reloaded, lang=lang)}
               for lang in ("en", "ru")}  # fmt: skip
    ru, en = by_lang["ru"], by_lang["en"]
    assert (ru["r"]["label"], ru["r"]["detail"]) == (
        "Отклонено", "Сервер перегружен, попробуйте позже"
    )  # fmt: skip
    assert (en["r"]["label"], en["r"]["detail"]) == ("Rejected", "Server overloaded, try later")
    assert ru["u"]["detail"] == "Не читается: no audio stream"
    assert en["u"]["detail"] == "Unreadable: no audio stream"
    assert (ru["p"]["label"], ru["p"]["progress_label"]) == ("Переподключение", "Загружено 25\xa0%")
    assert ru["p"]["detail"] == "connection lost; переподключение (2/5)"
    assert en["p"]["progress_label"] == "Uploaded 25%"


def test_language_names_follow_the_reader() -> None:
    assert languages.label("de", "ru") == "Немецкий (de)"
    assert languages.label("de") == "German (de)"
    assert languages.options("ru")[languages.AUTO] == "Определить автоматически"
    assert languages.label("xx", "ru") == "xx"


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


async def test_a_russian_browser_gets_russian_pages_and_the_switch_changes_them(
    tmp_path: Path, broker: Broker
) -> None:
    async with simulate(gui_settings(tmp_path, broker.http, login_tokens="alpha-123")) as gui:
        user = gui.user
        user.http_client.headers["Accept-Language"] = "ru-RU,ru;q=0.9,en;q=0.5"
        await user.open("/login")
        await user.should_see(catalogue("ru")["login.title"])
        (switch,) = user.find(marker="language-switch").elements
        with user:  # the sign-in card's switch
            switch.set_value("en")
        await user.should_see(catalogue("en")["login.title"], retries=50)
        await user.open("/login")  # kept for this browser, over its Accept-Language
        await user.should_see(catalogue("en")["login.submit"])
        (switch,) = user.find(marker="language-switch").elements
        with user:
            switch.set_value("ru")
        await user.should_see(catalogue("ru")["login.title"], retries=50)
        user.find(marker="login-token").type("alpha-123")
        user.find(marker="login-submit").click()
        await user.should_see("Распознать файлы", retries=50)
        await user.should_see("Задания")
        await user.should_not_see("Transcribe files")
        await user.open("/jobs/no-such-job")
        await user.should_see("Нет такого задания", retries=50)
