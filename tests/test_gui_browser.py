"""The GUI in real headless Chromium, as a process, against a real broker and worker.

Playwright drives Debian's `/usr/bin/chromium` (Playwright's own browser downloads are not
used). Screenshots land in the test's tmp dir and in `test-output/` for a person to look
at. Without Chromium these tests are skipped, or fail when CI=true.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from gui.i18n import catalogue, plural
from tests.farm import Broker, start_broker, start_worker, wait_for
from tests.gui_conftest import GuiProcess, chromium_page, save_screenshot, start_gui, wav_bytes
from tests.speech import SENTENCES, synthesize, word_error_rate
from tests.wsclient import start_message

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAX_WER = 0.15


@pytest.fixture
def locale() -> str:
    """The browser's language (its `Accept-Language`); a test parametrizes it to change it."""
    return "en-US"


@pytest.fixture
def page(locale: str) -> Iterator[Any]:
    """A fresh Chromium page (1400×900); the test fails if the page logs a JS error."""
    with chromium_page(locale) as fresh:
        yield fresh


def job_row(page: Any, name: str) -> Any:
    """The table row whose file name is `name`."""
    name_cell = page.locator("[data-testid=cell-name]", has_text=name)
    return page.locator("[data-testid=jobs] tbody tr").filter(has=name_cell)


@pytest.mark.model
def test_three_files_at_once_are_transcribed_shown_and_downloadable(
    tmp_path: Path, page: Any
) -> None:
    from playwright.sync_api import expect

    spoken = dict(zip(["garden.wav", "weather.mp3", "door.m4a"], SENTENCES, strict=False))
    files = [synthesize(text, tmp_path / "audio" / name) for name, text in spoken.items()]
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="faster-whisper", model="tiny.en", slots=3)
    gui = start_gui(tmp_path, broker.http)
    try:
        broker.wait_workers(1)
        page.goto(gui.url)
        expect(page.get_by_test_id("farm-workers")).to_have_text("1")
        page.locator("[data-testid=upload] input[type=file]").set_input_files(files)

        for name, reference in spoken.items():
            row = job_row(page, name)
            expect(row.get_by_test_id("cell-status")).to_contain_text("Done", timeout=120_000)
            preview = row.get_by_test_id("cell-preview")
            expect(preview).not_to_have_text("", timeout=30_000)
            text = preview.inner_text()
            assert word_error_rate(reference, text) <= MAX_WER, (name, text)
        assert {j["name"] for j in broker.jobs()} == set(spoken)
        shot = save_screenshot(page, tmp_path, "gui-three-files.png")
        assert shot.stat().st_size > 10_000

        page.get_by_role("link", name="garden.wav").click()
        expect(page.get_by_test_id("transcript-text")).to_be_visible()
        expect(page.get_by_test_id("segments")).to_contain_text("0:00.0")
        with page.expect_download() as download_info:
            page.get_by_test_id("download-txt").click()
        download = download_info.value
        assert download.suggested_filename == "garden.txt"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        assert word_error_rate(spoken["garden.wav"], saved.read_text()) <= MAX_WER
        save_screenshot(page, tmp_path, "gui-transcript.png")
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()


@dataclass
class FullFarm:
    """A broker with `slots` stream slots, all held by other clients until `holds` closes."""

    broker: Broker
    gui: GuiProcess
    holds: contextlib.ExitStack


@contextlib.contextmanager
def full_farm(tmp_path: Path, slots: int) -> Iterator[FullFarm]:
    """A full farm (a null worker) and a GUI on it; everything stops at the end, including
    a GUI the test started again (`farm.gui`)."""
    broker = start_broker(tmp_path, "--max-active", str(slots))
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    farm = FullFarm(broker, start_gui(tmp_path, broker.http), contextlib.ExitStack())
    try:
        broker.wait_workers(1)
        for n in range(1, slots + 1):
            hold = farm.holds.enter_context(connect(broker.ws))
            hold.send(start_message(name=f"held-{n}.wav"))
            assert '"accepted"' in str(hold.recv(timeout=10))
        yield farm
    finally:
        farm.holds.close()
        farm.gui.process.stop()
        worker.process.stop()
        broker.process.stop()


def test_third_stream_is_refused_as_overloaded_then_retried(tmp_path: Path, page: Any) -> None:
    from playwright.sync_api import expect

    upload = tmp_path / "third.wav"
    upload.write_bytes(wav_bytes(2.0))
    # Two streams hold both slots: the GUI's upload is the third.
    with full_farm(tmp_path, slots=2) as farm:
        broker = farm.broker
        page.goto(farm.gui.url)
        expect(page.get_by_test_id("farm-streams")).to_have_text("2 / 2")
        page.locator("[data-testid=upload] input[type=file]").set_input_files([upload])

        row = job_row(page, "third.wav")
        expect(row.get_by_test_id("cell-detail")).to_have_text("Server overloaded, try later")
        expect(row.get_by_test_id("retry")).to_be_visible()
        save_screenshot(page, tmp_path, "gui-overloaded.png")

        # The rejected row is the GUI's own: it survives a restart of the GUI.
        farm.gui.process.stop()
        farm.gui = start_gui(tmp_path, broker.http)
        page.goto(farm.gui.url)
        row = job_row(page, "third.wav")
        expect(row.get_by_test_id("cell-detail")).to_have_text("Server overloaded, try later")
        # Jobs other clients streamed are theirs: with sign-in off this browser is its own person.
        expect(job_row(page, "held-1.wav")).to_have_count(0)

        farm.holds.close()  # the held jobs become interrupted and free their slots
        wait_for(lambda: broker.farm()["streams"]["active"] == 0, 30, "free slots")
        row.get_by_test_id("retry").click()
        expect(job_row(page, "third.wav").get_by_test_id("cell-status")).to_contain_text("Done")
        expect(page.locator("[data-testid=retry]")).to_have_count(0)
        expect(page.get_by_test_id("farm-streams")).to_have_text("0 / 2")

        broker.process.stop()  # and when the broker goes away, the page says so
        expect(page.get_by_test_id("broker-banner")).to_contain_text("is unreachable")
        save_screenshot(page, tmp_path, "gui-broker-down.png")


@pytest.mark.parametrize("locale", ["ru-RU"])
def test_a_russian_browser_reads_the_gui_in_russian_and_the_switch_turns_it_english(
    tmp_path: Path, page: Any
) -> None:
    """Russian from the browser's language, down to the overloaded row; the header's switch
    shows the same page in English, and the choice stays with the browser."""
    from playwright.sync_api import expect

    ru, en = catalogue("ru"), catalogue("en")
    upload = tmp_path / "busy.wav"
    upload.write_bytes(wav_bytes(1.0))
    with full_farm(tmp_path, slots=1) as farm:
        page.goto(farm.gui.url)
        html, jobs = page.locator("html"), page.get_by_test_id("jobs")
        expect(html).to_have_attribute("lang", "ru")
        assert page.evaluate("Quasar.Lang.props.isoName") == "ru", "Quasar's own words in Russian"
        expect(page.get_by_text(ru["upload.title"])).to_be_visible()
        expect(jobs.locator("thead")).to_contain_text(ru["column.name"])
        expect(page.get_by_test_id("farm-streams")).to_have_text("1 / 1")
        page.locator("[data-testid=upload] input[type=file]").set_input_files([upload])
        expect(page.get_by_text(plural("ru", "upload.started", 1))).to_be_visible()

        row = job_row(page, "busy.wav")
        detail = row.get_by_test_id("cell-detail")
        expect(detail).to_have_text("Сервер перегружен, попробуйте позже")
        expect(row.get_by_test_id("cell-status")).to_contain_text(ru["status.rejected"])
        expect(row.get_by_test_id("retry")).to_contain_text(ru["jobs.retry"])
        save_screenshot(page, tmp_path, "gui-overloaded-ru.png")

        page.get_by_test_id("language-switch").get_by_text("EN", exact=True).click()
        expect(html).to_have_attribute("lang", "en-US")
        expect(detail).to_have_text("Server overloaded, try later")
        expect(page.get_by_text(en["upload.title"])).to_be_visible()
        expect(jobs.locator("thead")).to_contain_text(en["column.name"])
        page.reload()  # the choice is this browser's, over its Accept-Language
        expect(row.get_by_test_id("cell-status")).to_contain_text(en["status.rejected"])
        assert page.evaluate("Quasar.Lang.props.isoName") == "en-US"
