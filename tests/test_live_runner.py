"""`LiveRunner`'s messages in order, with an engine the test holds mid-decode (no model)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.scripted_voice import ScriptedVoice
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE
from workers.engines import DecodeRequest, DecodeResult
from workers.live import LiveOptions, LiveState
from workers.live_runner import LiveLoad, LiveRunner

SECOND = SAMPLE_RATE * 2


class _Held:
    """An engine whose decodes wait until the test lets them go; they hear nothing."""

    name, model, device = "held", "none", "cpu"

    def __init__(self) -> None:
        self.decoding = threading.Event()
        self.go = threading.Event()

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.decoding.set()
        self.go.wait(10)
        return [DecodeResult([], "en") for _ in requests]


async def test_an_utterance_heard_while_the_last_one_closes_is_told_after_that_close_began() -> (
    None
):
    spec = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True)
    state = LiveState(spec, LiveOptions())
    state._vad = ScriptedVoice((0.2, 1.0), (1.2, 2.0))  # type: ignore[assignment]
    engine = _Held()
    sent: list[dict[str, Any]] = []

    async def send(message: Message) -> None:
        if message.command is Command.PARTIAL:
            sent.append(message.body)

    runner = LiveRunner("job", state, engine, ThreadPoolExecutor(1), send, LiveLoad(500, 1))  # type: ignore[arg-type]
    runner.start(lambda _: None)
    runner.feed(bytes(SECOND))
    await runner.heard()
    assert [p["speech_from"] for p in sent] == [0.2], "told on arrival, before any decode"
    runner.commit()
    await asyncio.to_thread(engine.decoding.wait, 5)  # the commit's closing step decodes
    assert sent[1]["closing_at"] == 1.0, "the close is told as it begins"
    runner.feed(bytes(SECOND))  # the next utterance begins, at 1.2 s
    await runner.heard()
    assert sent[2]["speech_from"] == 1.2, "told during that close, after its start"
    engine.go.set()
    async with asyncio.timeout(10):
        while len(sent) < 4:
            await asyncio.sleep(0.01)
    assert sent[3]["closed"] and sent[3]["end"] == 1.0
    runner.end()
    assert runner.task is not None
    await runner.task
    assert [p["speech_from"] for p in sent if p.get("speech_from")] == [0.2, 1.2], "once each"
    assert all(p["text"] == "" for p in sent), "they repeat the partial the client has"


def test_live_streams_step_at_the_multiple_of_the_step_that_their_passes_keep_up_with() -> None:
    load = LiveLoad(250, passes=2)
    paces = {}
    for streams in (1, 2, 3, 4, 6, 10):
        load.streams = streams
        paces[streams] = load.step_ms()
    assert paces == {1: 250, 2: 500, 3: 500, 4: 750, 6: 1000, 10: 1500}
    one_pass = LiveLoad(250, passes=1)
    one_pass.streams = 3
    assert one_pass.step_ms() == 1000, "at most 3.5 steps a second on one pass"
    faster_pass = LiveLoad(250, passes=1, pass_steps=12)  # --live-pass-steps, a GPU's
    faster_pass.streams = 3
    assert faster_pass.step_ms() == 250
