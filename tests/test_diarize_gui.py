"""Speaker turns on the GUI's transcript page, in real headless Chromium: a two-voice
espeak-ng dialogue streamed with `diarize`, shown as turns coloured by speaker; a rename
shows at once and is still there after a reload (kept per browser)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gui.components.speaker_turns import colour
from tests.dialogue import espeak_dialogue
from tests.farm import start_broker, start_worker
from tests.gui_conftest import chromium_page, save_screenshot, start_gui
from tests.wsclient import stream_pcm

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page() as fresh:
        yield fresh


def test_transcript_page_colours_turns_by_speaker_and_keeps_a_rename(
    tmp_path: Path, page: Any
) -> None:
    from playwright.sync_api import expect

    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="faster-whisper", model="tiny.en")
    gui = None
    try:
        broker.wait_workers(1, timeout=180)
        pcm, _ = espeak_dialogue("AB", 4)
        stream = stream_pcm(broker.ws, pcm.astype("<i2").tobytes(), name="talk.wav", diarize=True)
        with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
            reply = thread.submit(asyncio.run, stream).result()
        job_id = reply.of("final")[0]["job_id"]
        # A plain broker token: a shared-view GUI shows jobs other clients streamed.
        gui = start_gui(tmp_path, broker.http, "--broker-token", "shared-view")
        page.goto(f"{gui.url}/jobs/{job_id}")
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
        if gui is not None:
            gui.process.stop()
        worker.process.stop()
        broker.process.stop()


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
