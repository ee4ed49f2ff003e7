"""Speaker labels in the GUI, in real headless Chromium: a two-voice espeak-ng dialogue
uploaded with the "Speaker labels" box ticked, shown as turns coloured by speaker; a rename
shows at once and is still there after a reload (kept per browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gui.components.speaker_turns import colour
from tests.dialogue import espeak_dialogue, write_wav
from tests.farm import start_broker, start_worker
from tests.gui_conftest import chromium_page, save_screenshot, start_gui

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page() as fresh:
        yield fresh


def test_an_upload_with_speaker_labels_shows_turns_coloured_by_speaker_and_keeps_a_rename(
    tmp_path: Path, page: Any
) -> None:
    from playwright.sync_api import expect

    pcm, _ = espeak_dialogue("AB", 4)
    talk = write_wav(tmp_path / "talk.wav", pcm)
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="faster-whisper", model="tiny.en")
    gui = start_gui(tmp_path, broker.http)
    try:
        broker.wait_workers(1, timeout=180)
        page.goto(gui.url)
        expect(page.get_by_test_id("farm-workers")).to_have_text("1")
        page.get_by_test_id("diarize").click()
        page.locator("[data-testid=upload] input[type=file]").set_input_files([talk])
        row = page.locator("[data-testid=jobs] tbody tr").filter(has_text="talk.wav")
        expect(row.get_by_test_id("cell-status")).to_contain_text("Done", timeout=120_000)
        assert [j["diarize"] for j in broker.jobs()] == [True]
        page.get_by_role("link", name="talk.wav").click()

        turns = page.locator("[data-testid=turn]")
        expect(turns).to_have_count(4)
        speakers = [turns.nth(i).get_attribute("data-speaker") for i in range(4)]
        assert speakers == ["S1", "S2", "S1", "S2"]
        borders = [
            turns.nth(i).evaluate("e => getComputedStyle(e).borderLeftColor") for i in range(4)
        ]
        assert borders[0] == borders[2] != borders[1] == borders[3]
        assert borders[0] == _rgb(colour("S1")) and borders[1] == _rgb(colour("S2"))
        page.get_by_label("S2", exact=True).fill("Bea")
        expect(turns.nth(1).locator("[data-testid=turn-speaker]")).to_have_text("Bea")
        expect(turns.nth(0).locator("[data-testid=turn-speaker]")).to_have_text("S1")
        save_screenshot(page, tmp_path, "diarize-transcript.png")
        page.reload()
        expect(turns.nth(3).locator("[data-testid=turn-speaker]")).to_have_text("Bea")
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
