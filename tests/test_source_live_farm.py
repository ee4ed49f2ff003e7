"""`whisperfarm-source --realtime` against a real broker and worker with tiny.en, on a terminal.

The CLI runs in a pseudo-terminal, as a person would start it, and what it writes there is
read back as events: partial tails (dimmed, rewritten in place), committed lines, notes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import ROOT, Broker, start_broker, start_worker
from tests.speech import FIXTURE_DIR, fixture_clips, word_error_rate

pytestmark = [pytest.mark.model, pytest.mark.slow]

JFK = FIXTURE_DIR / "jfk.wav"
JFK_SECONDS = 11.0
PROG = "whisperfarm-source: "
EVENT = re.compile(
    r"\x1b\[2m(?P<partial>.*?)\x1b\[0m|\x1b\[[0-9;]*[A-Za-z]|(?P<line>[^\r\n\x1b]+)\r\n"
)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("farm")
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="faster-whisper", model="tiny.en", slots=2)
    broker.wait_workers(1, timeout=180)
    yield broker
    worker.process.stop()
    broker.process.stop()


def run_on_a_terminal(*args: str | Path, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal for stdin, stdout and stderr; (exit, all it wrote)."""
    leader, follower = pty.openpty()
    cli = subprocess.Popen(
        [sys.executable, "-m", "source", *map(str, args)],
        cwd=ROOT, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    written = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the CLI exited and closed the terminal
                break
            written += chunk
        elif cli.poll() is not None:
            break
    os.close(leader)
    return cli.wait(timeout=10), written.decode()


def events(written: str) -> list[tuple[str, str]]:
    """("partial" | "line" | "note", text) in the order the terminal showed them."""
    found = []
    for match in EVENT.finditer(written):
        if match["partial"] is not None:
            found.append(("partial", match["partial"]))
        elif match["line"] is None:
            continue  # the cursor moving: erase the line, back to its start
        elif match["line"].startswith(PROG):
            found.append(("note", match["line"].removeprefix(PROG)))
        else:
            found.append(("line", match["line"]))
    return found


def words_on_screen(shown: list[tuple[str, str]]) -> Iterator[int]:
    """At each partial: the words of the committed lines so far plus those of the partial."""
    committed = 0
    for kind, text in shown:
        if kind == "line":
            committed += len(text.split())
        elif kind == "partial":
            yield committed + len(text.split())


def test_realtime_shows_the_words_growing_as_the_file_plays(farm: Broker, tmp_path: Path) -> None:
    began = time.monotonic()
    code, written = run_on_a_terminal("--realtime", JFK, "--url", farm.ws, "--out", tmp_path)
    took = time.monotonic() - began
    assert code == 0, written
    assert took >= JFK_SECONDS  # played at real time, not uploaded at once
    shown = events(written)
    kinds = [kind for kind, _ in shown]
    assert kinds.index("partial") < kinds.index("line"), shown
    playing = shown[: next(i for i, (k, t) in enumerate(shown) if "ended" in t and k == "note")]
    counts = list(words_on_screen(playing))
    growth = [n for i, n in enumerate(counts) if n > max(counts[:i], default=0)]
    assert len(growth) >= 3, shown  # the text grew step by step while the file played
    saved = json.loads((tmp_path / "jfk.json").read_text())
    lines = [text for kind, text in shown if kind == "line"]
    assert lines == [s["text"].strip() for s in saved["segments"] if s["text"].strip()]
    reference = dict((path.name, text) for path, text in fixture_clips())[JFK.name]
    text = (tmp_path / "jfk.txt").read_text()
    assert word_error_rate(reference, text) < 0.25, text
    assert saved["name"] == "jfk.wav" and saved["text"].strip() == text.strip()
