"""Word timestamps where people meet them: the CLI's saved JSON and the GUI's transcript page.

One real tiny.en worker for the module; the words come from the engine, not from a fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui

from tests.farm import ROOT, Broker, start_broker, start_worker
from tests.gui_conftest import gui_settings, simulate
from tests.worker_support import read_wav
from tests.wsclient import stream_pcm

pytestmark = [pytest.mark.model, pytest.mark.timeout(240)]
JFK = Path(__file__).parent / "fixtures" / "audio" / "jfk.wav"
PATIENCE = 300
"""`should_see` retries (the page loads the job from a real broker)."""


@pytest.fixture(scope="module")
def model_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("farm")
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="faster-whisper", model="tiny.en")
    broker.wait_workers(1, timeout=180)
    yield broker
    worker.process.stop()
    broker.process.stop()


def test_the_cli_saves_each_words_times_when_asked(model_broker: Broker, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "source", "--url", model_broker.ws, "--out", str(tmp_path),
         "--quiet", "--word-timestamps", str(JFK)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    segments = json.loads((tmp_path / "jfk.json").read_text())["segments"]
    words = [w for s in segments for w in s["words"]]
    assert "country." in [w["word"].strip() for w in words]
    assert all(0 <= w["start"] <= w["end"] <= 11.1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


async def test_the_transcript_page_shows_a_words_time_on_hover(
    model_broker: Broker, tmp_path: Path
) -> None:
    pcm, audio = read_wav(JFK)
    reply = await stream_pcm(
        model_broker.ws, pcm, sample_rate=audio.sample_rate, name="jfk.wav", word_timestamps=True
    )
    job_id = reply.of("final")[0]["job_id"]
    # A plain (not `service:`) broker token: a shared-view GUI, which shows jobs other clients
    # streamed, as this one was.
    shared_view = gui_settings(tmp_path, model_broker.http, broker_token="shared-view")
    async with simulate(shared_view) as gui:
        user = gui.user
        await user.open(f"/jobs/{job_id}")
        await user.should_see(marker="words", retries=PATIENCE)
        first: Any = next(iter(user.find(marker="words-0").elements))
        assert isinstance(first, ui.html)
        titled = re.findall(r'title="([^"]+)">([^<]+)</span>', first.content)
        assert ("And" in [w for _, w in titled]) and len(titled) >= 5
        assert all(re.fullmatch(r"0:\d\d\.\d – 0:\d\d\.\d · p [01]\.\d\d", t) for t, _ in titled)
