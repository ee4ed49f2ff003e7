"""`LiveState` with the real tiny.en engine under varied step schedules: no word is lost.

When a live stream steps depends on the worker's load (a busy worker steps each stream less
often, and packets arrive meanwhile), so the decodes a stream gets differ from run to run.
Here JFK is fed packet by packet, a step is taken whenever the state wants one at a step
size drawn at random, and a random number of packets arrives during each decode. Schedules
like these lost "my fellow Americans, ask not" (a word squeezed to no time) and "ask what
you" (a first word timed from the decode's start); seeds 6 and 43 are two of them.
"""

from __future__ import annotations

import random

import pytest

from tests.speech import FIXTURE_DIR, fixture_clips, word_error_rate
from tests.worker_support import read_wav
from whisperfarm.packets import BYTES_PER_SAMPLE, FRAMES_PER_PACKET
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE
from workers.engines import Engine
from workers.live import LiveOptions, LiveState

pytestmark = [pytest.mark.model, pytest.mark.slow]

JFK = FIXTURE_DIR / "jfk.wav"
PACKET = BYTES_PER_SAMPLE["s16le"] * FRAMES_PER_PACKET
STEP_MS = (500, 500, 1000, 1500)
PACKETS_DURING_A_DECODE = (0, 2, 4, 8, 16)


def live_text(engine: Engine, pcm: bytes, seed: int) -> str:
    """The committed text of `pcm` streamed live under the schedule `seed` draws."""
    schedule = random.Random(seed)
    live = LiveState(AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True), LiveOptions())

    def step(final: bool) -> None:
        planned = live.next_step(final)
        result = None if planned.request is None else engine.transcribe([planned.request])[0]
        live.apply(planned, result)

    arriving = 0
    for at in range(0, len(pcm), PACKET):
        live.feed(pcm[at : at + PACKET])
        if arriving:
            arriving -= 1
        elif live.wants_step(schedule.choice(STEP_MS)):
            step(final=False)
            arriving = schedule.choice(PACKETS_DURING_A_DECODE)
    live.end()
    step(final=True)
    return " ".join(segment.text.strip() for segment in live.segments)


@pytest.mark.parametrize("seed", [6, 43, 1, 2])
def test_no_step_schedule_loses_words(tiny_en_engine: Engine, seed: int) -> None:
    pcm, _ = read_wav(JFK)
    reference = {path.name: text for path, text in fixture_clips()}[JFK.name]
    text = live_text(tiny_en_engine, pcm, seed)
    assert word_error_rate(reference, text) <= 0.1, text
