"""A worker's live streams, driven by a fake broker: commit, clear, a new attempt that goes
on after what was committed, both engines, and the live load in heartbeats.

The worker steps a live stream every `--live-step-ms` of new audio; here a long step (10 s)
keeps it from stepping on its own, so what a test sees follows from what it sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.speech import FIXTURE_DIR, fixture_clips, word_error_rate
from tests.worker_support import WorkerRig, final_body, read_wav, worker_rig
from whisperfarm.packets import AudioFormat
from whisperfarm.wire import Command, Message

pytestmark = [pytest.mark.model, pytest.mark.slow]

JFK = FIXTURE_DIR / "jfk.wav"
AUSTEN = FIXTURE_DIR / "sense_and_sensibility_01_austen_64kb-0920.wav"
REFERENCE = {path.name: text for path, text in fixture_clips()}
FIRST_WORDS = 16_000 * 2 * 2  # JFK's first two seconds: "And so my fellow Americans"


@pytest.fixture(scope="module")
def slow_steps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerRig]:
    yield from worker_rig(
        tmp_path_factory.mktemp("worker"),
        "--engine", "faster-whisper", "--model", "tiny.en", "--slots", "4",
        "--live-step-ms", "10000",
    )  # fmt: skip


def pcm_of(path: Path) -> tuple[bytes, AudioFormat]:
    return read_wav(path)


def send(rig: WorkerRig, command: Command, job_id: str) -> None:
    rig.broker.send(Message(command, job_id, {"attempt": 1}))


def results(rig: WorkerRig, job_id: str, command: Command) -> list[dict[str, Any]]:
    return [m.body for m in rig.broker.results_for(job_id) if m.command is command]


def test_commit_ends_the_utterance_at_once(slow_steps: WorkerRig) -> None:
    pcm, audio = pcm_of(JFK)
    slow_steps.broker.assign("commit", audio, live=True, vad=False)
    slow_steps.broker.packets("commit", pcm[:FIRST_WORDS], audio)
    time.sleep(1.0)
    assert not results(slow_steps, "commit", Command.SEGMENT)  # no step of its own yet
    send(slow_steps, Command.COMMIT, "commit")
    _, segment = slow_steps.broker.expect(Command.SEGMENT, "commit", timeout=30)
    assert "fellow" in segment.body["text"].lower()
    send(slow_steps, Command.END, "commit")
    _, final = slow_steps.broker.expect(Command.FINAL, "commit", timeout=60)
    body = final_body(final)
    segments = results(slow_steps, "commit", Command.SEGMENT)
    assert [s["text"] for s in body["segments"]] == [s["text"] for s in segments]
    assert body["segments"][0]["id"] == 0


def test_clear_forgets_the_audio_not_committed(slow_steps: WorkerRig) -> None:
    jfk, audio = pcm_of(JFK)
    austen, _ = pcm_of(AUSTEN)
    slow_steps.broker.assign("clear", audio, live=True)
    slow_steps.broker.packets("clear", jfk[:FIRST_WORDS], audio)
    send(slow_steps, Command.CLEAR, "clear")
    slow_steps.broker.packets("clear", austen, audio)
    send(slow_steps, Command.END, "clear")
    _, final = slow_steps.broker.expect(Command.FINAL, "clear", timeout=60)
    text = final_body(final)["text"]
    assert "fellow" not in text.lower()
    assert word_error_rate(REFERENCE[AUSTEN.name], text) < 0.3, text


def test_an_utterance_that_begins_is_told_before_any_step_decodes_it(
    slow_steps: WorkerRig,
) -> None:
    """A second of silence, then JFK's first 0.6 s (his voice begins 0.33 s in): no step
    of its own yet, but the voice activity says where the utterance began."""
    pcm, audio = pcm_of(JFK)
    slow_steps.broker.assign("onset", audio, live=True)
    slow_steps.broker.packets("onset", bytes(16_000 * 2) + pcm[: round(0.6 * 16_000) * 2], audio)
    _, told = slow_steps.broker.expect(
        Command.PARTIAL, "onset", where=lambda m: m.body.get("speech_from") is not None
    )
    assert 1.2 <= told.body["speech_from"] <= 1.45, told.body
    assert told.body["text"] == "" and not results(slow_steps, "onset", Command.SEGMENT)
    send(slow_steps, Command.END, "onset")
    slow_steps.broker.expect(Command.FINAL, "onset", timeout=60)
    told_again = [p for p in results(slow_steps, "onset", Command.PARTIAL) if p.get("speech_from")]
    assert len(told_again) == 1, "once per utterance"


def test_a_new_attempt_goes_on_after_the_committed_text(slow_steps: WorkerRig) -> None:
    """ASSIGN's `resume_at`: the replayed audio before it is skipped, ids go on."""
    pcm, audio = pcm_of(JFK)
    slow_steps.broker.assign(
        "again", audio, live=True, resume_at=5.2, first_segment_id=7,
        prompt="And so my fellow Americans, ask not",
    )  # fmt: skip
    slow_steps.broker.packets("again", pcm, audio)
    send(slow_steps, Command.END, "again")
    _, final = slow_steps.broker.expect(Command.FINAL, "again", timeout=60)
    body = final_body(final)
    assert [s["id"] for s in body["segments"]] == list(range(7, 7 + len(body["segments"])))
    assert all(s["start"] >= 5.2 for s in body["segments"])
    assert "fellow" not in body["text"].lower()
    after = "what your country can do for you, ask what you can do for your country."
    assert word_error_rate(after, body["text"]) <= 0.15, body["text"]


def test_live_load_is_in_the_heartbeats(slow_steps: WorkerRig) -> None:
    pcm, audio = pcm_of(JFK)
    slow_steps.broker.assign("load", audio, live=True)
    slow_steps.broker.packets("load", pcm, audio)
    send(slow_steps, Command.COMMIT, "load")
    slow_steps.broker.expect(Command.SEGMENT, "load", timeout=60)
    _, beat = slow_steps.broker.expect(
        Command.HEARTBEAT,
        timeout=10,
        where=lambda m: m.body.get("live") == 1 and "live_step_seconds" in m.body,
    )
    assert beat.body["live_step_seconds"] > 0
    send(slow_steps, Command.END, "load")
    slow_steps.broker.expect(Command.FINAL, "load", timeout=60)
    _, idle = slow_steps.broker.expect(
        Command.HEARTBEAT, timeout=10, where=lambda m: "live" not in m.body
    )
    assert idle.body["busy"] == 0


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_both_engines_decode_live(tmp_path: Path, engine: str) -> None:
    """The same stream, paced at twice real time: partials, then segments, then a final
    that is exactly the segments."""
    pcm, audio = pcm_of(JFK)
    rig_args = ("--engine", engine, "--model", "tiny.en", "--slots", "2", "--live-step-ms", "700")
    for rig in worker_rig(tmp_path, *rig_args):
        rig.broker.assign("both", audio, live=True)
        for start in range(0, len(pcm), 2 * 16_000):  # one second of audio every 0.5 s
            rig.broker.packets("both", pcm[start : start + 2 * 16_000], audio)
            time.sleep(0.5)
        send(rig, Command.END, "both")
        _, final = rig.broker.expect(Command.FINAL, "both", timeout=120)
        body = final_body(final)
        partials = [p for p in results(rig, "both", Command.PARTIAL) if p["text"]]
        segments = results(rig, "both", Command.SEGMENT)
        assert partials and segments
        assert [s["text"] for s in body["segments"]] == [s["text"] for s in segments]
        assert word_error_rate(REFERENCE[JFK.name], body["text"]) < 0.3, body["text"]
