"""The `/live` page in real headless Chromium with a fake microphone playing a recording.

Chromium plays a WAV file as its microphone (`--use-file-for-fake-audio-capture`); the
page captures it through its worklet, streams it through the GUI to a real broker and
tiny.en, and shows the words while the recording plays. Without the fake device or
without the permission, the page must say so.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from gui.i18n import Lang, catalogue
from gui.pages.live import ERROR_KINDS
from tests.farm import Broker, start_broker, start_worker, tiny_farm
from tests.gui_conftest import (
    CHROMIUM_ARGS,
    require_chromium,
    save_screenshot,
    start_gui,
    then_silence,
)
from tests.speech import FIXTURE_DIR, normalize_text, word_error_rate
from tests.tcp_cut import tcp_cut
from tests.wsclient import start_message

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JFK = FIXTURE_DIR / "jfk.wav"
DASHWOOD = FIXTURE_DIR / "sense_and_sensibility_01_austen_64kb-0870.wav"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
LIVE_MAX_WER = 0.25
"""As for the CLI's live mode: words committed from a second of audio can be a little off."""
MID_SENTENCE = """() => ["committed", "partial"].every(
    (part) => document.querySelector(`[data-live=${part}]`).textContent.trim() !== "")"""
"""Some words committed, and a partial tail after them."""
FAKE_MIC = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
ROOT = Path(__file__).parent.parent
SHOT = ROOT / "docs" / "live-page.png"
"""The README's picture: rewritten only with WHISPERFARM_DOCS_SHOTS=1."""


Browser = Callable[..., Any]
"""`browser(*chromium_args, **context_options)`: a new Chromium's browser context."""


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Launches Chromiums (one per fake microphone); their pages may log no JS error."""
    executable = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    errors: list[str] = []
    with sync_playwright() as playwright, contextlib.ExitStack() as close:

        def launch(*extra_args: str, **context_options: Any) -> Any:
            chromium = playwright.chromium.launch(
                executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args], headless=True
            )
            close.callback(chromium.close)
            context = chromium.new_context(viewport={"width": 1200, "height": 800},
                                           **context_options)  # fmt: skip
            context.set_default_timeout(30_000)
            context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
            return context

        yield launch
    assert errors == [], "the page logged errors in the browser"


Microphone = Callable[..., Any]
"""`microphone(wav, **context_options)`: a new Chromium's browser context whose
microphone plays `wav` once, then digital silence."""


@pytest.fixture
def microphone(browser: Browser, tmp_path: Path) -> Microphone:
    def playing(wav: Path, **context_options: Any) -> Any:
        recording = then_silence(wav, tmp_path / f"{wav.stem}-then-silence.wav")
        return browser(*FAKE_MIC, f"--use-file-for-fake-audio-capture={recording}%noloop",
                       permissions=["microphone"], **context_options)  # fmt: skip

    return playing


def open_live(context: Any, url: str, start: str = "Start") -> Any:
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(f"{url}/live")
    expect(page.get_by_role("button", name=start)).to_be_visible()
    return page


def start_and_wait_for_words(page: Any) -> Any:
    """Press Start and wait until the page is mid-sentence; returns the state line."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Start").click()
    status = page.get_by_test_id("live-status")
    expect(status).to_have_text("Listening")
    page.wait_for_function(MID_SENTENCE, timeout=60_000)
    return status


def wait_for_the_whole_sentence(page: Any, timeout_s: float = 90.0) -> str:
    """Waits until the committed words end with the recording's last word and match it.

    Waits on the WER bound rather than on exact words: tiny.en may drop a short word of
    a tail it decodes alone ("for country"), which the bound allows and an exact match
    would wait out. The words up to the last "country" are checked, since the decoder
    may add one after it ("… for your country, ask"); reaching the first "country" is not
    enough: the sentence says it twice, and the bound fails a sentence cut there.
    """
    committed = page.get_by_test_id("live-committed")
    deadline = time.monotonic() + timeout_s
    while True:
        spoken: str = committed.inner_text()
        if word_error_rate(JFK_TEXT, _through_last(spoken, "country")) < LIVE_MAX_WER:
            return spoken
        assert time.monotonic() < deadline, f"the sentence was not committed: {spoken!r}"
        page.wait_for_timeout(250)


def _through_last(text: str, word: str) -> str:
    """`text`'s normalized words up to and including the last `word` (none: empty)."""
    words = normalize_text(text).split()
    if word not in words:
        return ""
    return " ".join(words[: len(words) - words[::-1].index(word)])


def stop_after_the_last_words(page: Any) -> None:
    """Once the recording's last words are committed, Stop; the whole sentence is there."""
    from playwright.sync_api import expect

    wait_for_the_whole_sentence(page)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("live-job-link")).to_be_visible(timeout=60_000)
    spoken = page.get_by_test_id("live-committed").inner_text()
    assert word_error_rate(JFK_TEXT, spoken) < LIVE_MAX_WER, spoken


@pytest.fixture(scope="module")
def tiny_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    for broker, _ in tiny_farm(tmp_path_factory.mktemp("farm"), slots=2):
        yield broker


@pytest.mark.model
def test_words_show_while_the_recording_plays_and_stop_keeps_the_job(
    tmp_path: Path, tiny_broker: Broker, microphone: Microphone
) -> None:
    from playwright.sync_api import expect

    gui = start_gui(tmp_path, tiny_broker.http)
    try:
        context = microphone(JFK)
        page = context.new_page()
        page.goto(gui.url)
        page.get_by_role("link", name="Live").click()
        expect(page.get_by_role("button", name="Start")).to_be_visible()
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        expect(page.get_by_test_id("live-status")).to_have_text("Listening")
        # Mid-sentence: a partial tail shows after the words committed so far.
        page.wait_for_function(MID_SENTENCE, timeout=60_000)
        expect(page.get_by_test_id("live-elapsed")).not_to_have_text("0:00")
        save_screenshot(page, tmp_path, "live-page.png")
        if os.environ.get("WHISPERFARM_DOCS_SHOTS") == "1":
            page.screenshot(path=str(SHOT))
        # The sentence's last words, committed once the recording falls silent.
        wait_for_the_whole_sentence(page, timeout_s=60)
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_role("button", name="Start")).to_be_enabled(timeout=60_000)

        link = page.get_by_test_id("live-job-link")
        job_id = link.get_attribute("href").removeprefix("/jobs/")
        job = tiny_broker.wait_job(job_id, {"done"})
        assert job["live"] and job["name"].startswith("mic-")
        spoken = page.get_by_test_id("live-committed").inner_text()
        assert word_error_rate(JFK_TEXT, spoken) < LIVE_MAX_WER, spoken

        page.goto(gui.url)
        row = page.locator("[data-testid=jobs] tbody tr").filter(has_text=job["name"])
        expect(row.get_by_test_id("cell-status")).to_contain_text("Done")
        expect(row.get_by_test_id("cell-preview")).to_contain_text("country")
        row.get_by_role("link", name=job["name"]).click()
        expect(page.get_by_test_id("transcript-text")).to_contain_text("country")
        with page.expect_download() as download:
            page.get_by_test_id("download-srt").click()
        assert download.value.suggested_filename == f"{job['name']}.srt"
    finally:
        gui.process.stop()


@pytest.mark.model
def test_two_pages_live_at_once_each_see_only_their_own_words(
    tmp_path: Path, tiny_broker: Broker, microphone: Microphone
) -> None:
    from playwright.sync_api import expect

    gui = start_gui(tmp_path, tiny_broker.http)
    try:
        kennedy, austen = microphone(JFK), microphone(DASHWOOD)
        pages = [open_live(kennedy, gui.url), open_live(austen, gui.url)]
        for page in pages:
            page.get_by_role("button", name="Start").click()
        expect(pages[0].get_by_test_id("live-text")).to_contain_text("country", timeout=90_000)
        expect(pages[1].get_by_test_id("live-text")).to_contain_text("consider", timeout=90_000)
        for page in pages:
            page.get_by_role("button", name="Stop").click()
        for page in pages:
            expect(page.get_by_test_id("live-job-link")).to_be_visible(timeout=60_000)
        kennedy_text = pages[0].get_by_test_id("live-text").inner_text()
        austen_text = pages[1].get_by_test_id("live-text").inner_text()
        assert "consider" not in kennedy_text and "country" not in austen_text
    finally:
        gui.process.stop()


def test_a_refused_microphone_is_explained_and_nothing_is_streamed(
    tmp_path: Path, browser: Browser
) -> None:
    from playwright.sync_api import expect

    broker = start_broker(tmp_path)
    gui = start_gui(tmp_path, broker.http)
    try:
        context = browser("--use-fake-device-for-media-stream")  # no permission
        page = open_live(context, gui.url)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_test_id("live-message")).to_have_text(
            catalogue("en")["live.error.permission"]
        )
        expect(page.get_by_role("button", name="Start")).to_be_enabled()
        assert broker.jobs() == []
    finally:
        gui.process.stop()
        broker.process.stop()


def test_no_input_device_is_explained(tmp_path: Path, browser: Browser) -> None:
    from playwright.sync_api import expect

    broker = start_broker(tmp_path)
    gui = start_gui(tmp_path, broker.http)
    try:
        context = browser("--use-fake-ui-for-media-stream", permissions=["microphone"])
        page = open_live(context, gui.url)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_test_id("live-message")).to_have_text(
            catalogue("en")["live.error.no_device"]
        )
        assert broker.jobs() == []
    finally:
        gui.process.stop()
        broker.process.stop()


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("ru-RU", "ru")])
def test_a_full_farm_says_server_overloaded_and_retry_goes_live_once_a_slot_frees(
    tmp_path: Path, microphone: Microphone, locale: str, lang: Lang
) -> None:
    """In the reader's language: "Server overloaded, try later" / "Сервер перегружен…"."""
    from playwright.sync_api import expect

    words = catalogue(lang)
    broker = start_broker(tmp_path, "--max-active", "1")
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    gui = start_gui(tmp_path, broker.http)
    try:
        broker.wait_workers(1)
        context = microphone(JFK, locale=locale)
        start = words["live.start"]
        assert isinstance(start, str)  # not a plural entry
        page = open_live(context, gui.url, start)
        with connect(broker.ws) as hold:
            hold.send(start_message(name="held.wav"))
            assert '"accepted"' in str(hold.recv(timeout=10))
            page.get_by_role("button", name=words["live.start"]).click()
            expect(page.get_by_test_id("live-message")).to_have_text(words["live.error.overloaded"])
            save_screenshot(page, tmp_path, f"live-overloaded-{locale}.png")
        retry = page.get_by_test_id("live-retry")
        expect(retry).to_have_text(words["live.retry"])
        broker.wait_job(broker.jobs()[0]["id"], {"interrupted"})
        retry.click()
        expect(page.get_by_test_id("live-status")).to_have_text(words["live.status.live"])
        expect(page.get_by_test_id("live-message")).to_be_hidden()
        page.get_by_role("button", name=words["live.stop"]).click()
        expect(page.get_by_test_id("live-job-link")).to_be_visible()
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()


def test_a_broker_that_is_down_is_explained_with_retry(
    tmp_path: Path, microphone: Microphone
) -> None:
    from playwright.sync_api import expect

    gui = start_gui(tmp_path, "http://127.0.0.1:9")
    try:
        context = microphone(JFK)
        page = open_live(context, gui.url)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_test_id("live-message")).to_have_text(
            catalogue("en")["live.error.broker_down"]
        )
        expect(page.get_by_test_id("live-retry")).to_be_visible()
        expect(page.get_by_role("button", name="Start")).to_be_enabled()
    finally:
        gui.process.stop()


def test_every_error_the_page_can_show_has_its_message_in_every_language() -> None:
    for lang in ("en", "ru"):
        for kind in ERROR_KINDS:
            assert catalogue(lang)[f"live.error.{kind}"], (lang, kind)
    assert catalogue("ru")["live.error.overloaded"] == "Сервер перегружен, попробуйте позже"


@pytest.mark.model
def test_a_short_network_drop_loses_no_words(
    tmp_path: Path, tiny_broker: Broker, microphone: Microphone
) -> None:

    gui = start_gui(tmp_path, tiny_broker.http)
    try:
        with tcp_cut(int(gui.url.rsplit(":", 1)[1])) as network:
            context = microphone(JFK)
            page = open_live(context, f"http://127.0.0.1:{network.port}")
            start_and_wait_for_words(page)
            network.cut(4.0)  # a third of the sentence: lost, it would break the WER bound
            stop_after_the_last_words(page)
            assert page.evaluate("whisperfarmLive.reconnects()") >= 1
    finally:
        gui.process.stop()


def test_the_device_rate_setting_streams_at_the_microphone_s_own_rate(
    tmp_path: Path, microphone: Microphone
) -> None:
    from playwright.sync_api import expect

    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    gui = start_gui(tmp_path, broker.http, "--live-sample-rate", "0")
    try:
        broker.wait_workers(1)
        page = open_live(microphone(JFK), gui.url)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_test_id("live-status")).to_have_text("Listening")
        device_rate = page.evaluate("whisperfarmLive.rate()")
        page.get_by_role("button", name="Stop").click()
        link = page.get_by_test_id("live-job-link")
        expect(link).to_be_visible()
        job_id = link.get_attribute("href").split("/")[-1]
        assert device_rate != 16_000
        assert broker.wait_job(job_id, {"done"})["sample_rate"] == device_rate
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()


@pytest.mark.model
def test_a_broker_connection_drop_shows_reconnecting_and_loses_no_words(
    tmp_path: Path, tiny_broker: Broker, microphone: Microphone
) -> None:
    from playwright.sync_api import expect

    with tcp_cut(int(tiny_broker.http.rsplit(":", 1)[1])) as network:
        gui = start_gui(tmp_path, f"http://127.0.0.1:{network.port}")
        try:
            page = open_live(microphone(JFK), gui.url)
            status = start_and_wait_for_words(page)
            network.cut(1.5)  # the GUI's connection to the broker drops
            expect(status).to_have_text(catalogue("en")["live.status.reconnecting"])
            expect(status).to_have_text("Listening", timeout=60_000)
            stop_after_the_last_words(page)
        finally:
            gui.process.stop()
