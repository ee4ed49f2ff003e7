"""The lead-in with the real tiny.en engine: its words never show as the utterance's.

An utterance's opening steps decode the speech before it first (`LiveOptions.lead_in_ms`)
and drop the decode's copy of its words. Whether tiny.en then hears the first words sooner
depends on the audio (it does on the benches' speech: `bench/RESULTS.md`); what must hold
whatever it hears is that the lead-in's words are dropped from the partial, and that the
committed text is the speech's. The committed recordings (JFK, three readers' sentences),
one after another with a second of silence between, are streamed packet by packet, a step
whenever the state wants one (250 ms: a stream alone).
"""

from __future__ import annotations

import pytest

from tests.speech import fixture_clips, normalize_text, word_error_rate
from tests.worker_support import read_wav
from whisperfarm.packets import BYTES_PER_SAMPLE, FRAMES_PER_PACKET
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE
from workers.engines import Engine
from workers.live import LiveOptions, LiveState

pytestmark = [pytest.mark.model, pytest.mark.slow]

PACKET = BYTES_PER_SAMPLE["s16le"] * FRAMES_PER_PACKET
STEP_MS = 250
GAP = bytes(SAMPLE_RATE * 2)  # 1 s of silence between the recordings, as in the benches


def test_the_lead_in_s_words_are_dropped_and_the_committed_text_is_the_speech_s(
    tiny_en_engine: Engine,
) -> None:
    clips = fixture_clips()
    pcm = GAP.join(read_wav(path)[0] for path, _ in clips)
    live = LiveState(AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True), LiveOptions())
    shown = []  # (the lead-in's words, the partial) of each step that decoded a lead-in

    def step(final: bool) -> None:
        planned = live.next_step(final)
        result = (
            None if planned.request is None else tiny_en_engine.transcribe([planned.request])[0]
        )
        live.apply(planned, result)
        if planned.lead_in.words:
            lead = normalize_text("".join(w.word for w in planned.lead_in.words)).split()
            shown.append((lead, normalize_text(live.partial.text).split()))

    for at in range(0, len(pcm), PACKET):
        live.feed(pcm[at : at + PACKET])
        if live.wants_step(STEP_MS):
            step(final=False)
    live.end()
    step(final=True)

    # Every utterance after the first had a lead-in (JFK's speech holds more than one).
    assert len({tuple(lead) for lead, _ in shown}) >= len(clips) - 1
    assert any(partial for _, partial in shown)
    # A partial that starts as its lead-in does, or with its last word, kept some of it
    # (no utterance here begins as the speech before it does, or with the word ending it).
    leaked = [
        (lead, partial)
        for lead, partial in shown
        if partial and (partial[:2] == lead[:2] or partial[0] == lead[-1])
    ]
    assert not leaked
    text = " ".join(segment.text.strip() for segment in live.segments)
    assert word_error_rate(" ".join(reference for _, reference in clips), text) <= 0.1, text
