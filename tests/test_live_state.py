"""`LiveState`'s policy on scripted decodes (no model): what is committed, when, and what
becomes the partial. The real model's behaviour is in test_live.py / test_worker_live.py."""

from __future__ import annotations

from typing import Any

from tests.scripted_voice import ScriptedVoice
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE
from workers.engines import DecodedSegment, DecodedWord, DecodeResult
from workers.live import LiveOptions, LiveState

SECOND = SAMPLE_RATE * 2  # bytes of one second of 16 kHz s16le
STEP_MS = 500


def state(**spec: Any) -> LiveState:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=False, **spec)
    return LiveState(body, LiveOptions())


def said(*timed: tuple[str, float, float], probability: float = 0.9) -> DecodeResult:
    """One segment of the given words (times from the start of the step's audio)."""
    words = tuple(DecodedWord(f" {w}", s, e, probability) for w, s, e in timed)
    text = "".join(w.word for w in words)
    segment = DecodedSegment(words[0].start, words[-1].end, text, words=words)
    return DecodeResult([segment], "en")


def step(live: LiveState, seconds: float, result: DecodeResult) -> list[str]:
    """Feed `seconds` of audio, run one step with `result` as its decode: committed texts."""
    live.feed(bytes(int(seconds * SECOND)))
    assert live.wants_step(STEP_MS)
    planned = live.next_step(final=False)
    return [s.text for s in live.apply(planned, result)]


def test_words_two_decodes_a_second_apart_agree_on_are_committed() -> None:
    live = state()
    assert step(live, 1.0, said(("ask", 0.1, 0.4), ("not", 0.5, 0.8))) == []
    assert live.partial.text == "ask not"
    # Half a second later: too close to agree with (the partial still follows).
    assert step(live, 0.5, said(("ask", 0.1, 0.4), ("not", 0.5, 0.8), ("what", 1.1, 1.4))) == []
    assert live.partial.text == "ask not what"
    committed = step(
        live,
        0.5,
        said(("ask", 0.1, 0.4), ("not!", 0.5, 0.8), ("why", 1.1, 1.4), ("your", 1.5, 1.9)),
    )
    assert committed == ["ask not!"]  # case and punctuation aside, they agreed up to "not"
    assert live.partial.text == "why your"


def test_an_utterance_s_opening_words_are_not_committed_from_decodes_of_under_1_8_s() -> None:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True)
    live = LiveState(body, LiveOptions())
    live._vad = ScriptedVoice((1.0, 10.0))  # type: ignore[assignment]
    live.feed(bytes(SECOND))  # silence: nothing to decode
    assert live.apply(live.next_step(final=False), None) == []
    misheard = said(("How", 0.3, 0.5), ("do", 0.5, 0.6), ("you", 0.6, 0.7), ("marry", 0.7, 0.9))
    assert step(live, 0.5, misheard) == []  # decodes 0.7 s, from the speech's start less its pad
    # Agreed on, a second apart, but from 1.7 s of the utterance: its start may still change.
    assert step(live, 1.0, misheard) == []
    assert live.partial.text == "How do you marry"
    heard = said(("Had", 0.3, 0.5), ("he", 0.5, 0.6), ("married", 0.6, 0.9), ("a", 1.0, 1.1),
                 ("more", 1.1, 1.4), ("amiable", 1.5, 2.0))  # fmt: skip
    assert step(live, 1.0, heard) == []  # 2.7 s: no opening any more, but a different start
    assert live.partial.text == "Had he married a more amiable"
    assert step(live, 1.0, heard) == ["Had he married a more amiable"]


def test_a_decode_repeating_committed_words_does_not_commit_them_again() -> None:
    live = state()
    step(live, 1.0, said(("so", 0.1, 0.4), ("my", 0.5, 0.7)))
    assert step(live, 1.0, said(("so", 0.1, 0.4), ("my", 0.5, 0.7), ("fellow", 1.2, 1.6))) == [
        "so my"
    ]
    # The buffer still holds "so my"; the decode's copy of them ends a little late.
    again = said(("so", 0.1, 0.4), ("my", 0.5, 0.9), ("fellow", 1.2, 1.6), ("Americans", 1.7, 2.4))
    assert step(live, 1.0, again) == ["fellow"]
    assert live.partial.text == "Americans"
    assert [s.id for s in live.segments] == [0, 1]


def test_invented_words_after_the_speech_are_dropped() -> None:
    live = state()
    made_up = said(("country", 0.2, 0.8), ("Thank", 0.9, 0.9), ("you.", 0.9, 0.9))
    assert step(live, 1.0, made_up) == []
    assert live.partial.text == "country"


def test_a_word_squeezed_to_no_time_mid_speech_is_kept_when_a_pause_commits() -> None:
    # tiny.en gave "my" no time in "And so, my fellow Americans, ask not" (timed words after
    # it): cutting there lost the rest of the utterance that the pause closed.
    live = state()
    live.feed(bytes(4 * SECOND))
    live.ask_commit()
    planned = live.next_step(final=False)
    squeezed = said(("so,", 0.6, 0.9), ("my", 1.3, 1.3), ("fellow", 1.3, 1.6), ("ask", 2.3, 3.7))
    assert [s.text for s in live.apply(planned, squeezed)] == ["so, my fellow ask"]


def test_without_voice_activity_a_commit_keeps_a_last_word_the_decoder_doubts() -> None:
    # The closing step is the last decode of its audio: a doubted word dropped is lost.
    live = state()  # vad: false
    live.feed(bytes(2 * SECOND))
    live.ask_commit()
    planned = live.next_step(final=False)
    doubted = said(("for", 0.2, 0.5), ("your", 0.6, 0.9), ("country", 1.2, 1.7), probability=0.01)
    assert [s.text for s in live.apply(planned, doubted)] == ["for your country"]
    # A step that does not close still holds back a doubted word in its last second: the
    # next step decodes it again.
    step(live, 2.0, said(("ask", 0.2, 0.5), ("not", 1.5, 1.8), probability=0.01))
    assert live.partial.text == "ask"


def test_clear_makes_a_step_in_flight_moot() -> None:
    live = state()
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    live.clear()
    assert live.apply(planned, said(("gone", 0.1, 0.5))) == []
    assert live.partial.text == "" and live.buffered_seconds == 0


def test_commit_and_the_end_commit_everything_decoded() -> None:
    live = state()
    step(live, 1.0, said(("push", 0.1, 0.4)))
    live.feed(bytes(SECOND // 2))
    live.ask_commit()
    assert live.wants_step(STEP_MS)
    planned = live.next_step(final=False)
    assert planned.closes
    committed = live.apply(planned, said(("push", 0.1, 0.4), ("to", 0.5, 0.6), ("talk", 0.7, 1.2)))
    assert [s.text for s in committed] == ["push to talk"]
    assert live.partial.text == "" and live.buffered_seconds == 0


def test_a_new_attempt_skips_what_earlier_ones_committed() -> None:
    live = state(resume_at=2.0, first_segment_id=5)
    live.feed(bytes(3 * SECOND))  # the spool is replayed from its start
    assert live.buffered_seconds == 1.0
    planned = live.next_step(final=True)
    (segment,) = live.apply(planned, said(("after", 0.1, 0.6)))
    assert (segment.id, segment.start, segment.text) == (5, 2.1, "after")


def test_a_pause_closes_the_utterance_even_when_agreement_committed_all_its_words() -> None:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True, vad_pause_ms=1500)
    live = LiveState(body, LiveOptions())
    live._vad = ScriptedVoice((0.2, 0.95))  # type: ignore[assignment]
    words = said(("hello", 0.3, 0.6), ("there", 0.7, 1.0))  # the last word ends past the VAD's
    assert step(live, 1.0, words) == []
    assert step(live, 1.0, words) == ["hello there"] and live.partial.text == ""
    live.feed(bytes(SECOND))
    assert live.wants_step(STEP_MS)
    planned = live.next_step(final=False)
    assert planned.closes and planned.request is None, "the pause closes the utterance"
    assert live.apply(planned, None) == []
    live.feed(bytes(SECOND))
    assert not live.next_step(final=False).closes, "closed once"


def test_a_first_word_timed_from_the_decode_s_start_is_not_taken_for_a_committed_one() -> None:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True, vad_pause_ms=1500)
    live = LiveState(body, LiveOptions())
    live._vad = ScriptedVoice((0.2, 1.6), (2.15, 4.0))  # type: ignore[assignment]
    step(live, 1.0, said(("for", 0.3, 0.6), ("you,", 0.7, 1.0)))
    # "you," is stretched over the pause, to just before the next speech.
    assert step(live, 1.2, said(("for", 0.3, 0.6), ("you,", 0.7, 2.1))) == ["for you,"]
    # The next step starts in that pause; its decode gives "ask" the step's start.
    step(live, 1.0, said(("ask", 0.0, 0.5), ("what", 0.6, 1.0)))
    assert live.partial.text == "ask what"


def test_new_options_wait_for_the_utterance_under_way_to_close() -> None:
    live = state(language="en", prompt="Kennedy.")
    live.feed(bytes(SECOND))
    first = live.next_step(final=False).to_request()
    assert (first.language, first.initial_prompt) == ("en", "Kennedy.")
    live.apply(live.next_step(final=False), said(("ask", 0.1, 0.4)))
    live.retune("de", "Namen.")  # "ask" is under way: its utterance keeps its options
    live.feed(bytes(SECOND))
    assert live.next_step(final=False).to_request().language == "en"
    live.ask_commit()
    closing = live.next_step(final=False)
    assert closing.to_request().language == "en"
    assert [s.text for s in live.apply(closing, said(("ask", 0.1, 0.4), ("not", 0.5, 0.8)))]
    live.feed(bytes(SECOND))
    after = live.next_step(final=False).to_request()
    assert (after.language, after.initial_prompt) == ("de", "Namen.")


def test_new_options_between_utterances_apply_at_once() -> None:
    live = state(language="en")
    live.retune(None, "Dashwood.")
    live.feed(bytes(SECOND))
    request = live.next_step(final=False).to_request()
    assert (request.language, request.initial_prompt) == (None, "Dashwood.")


def test_a_pause_commits_the_last_words_even_when_the_decoder_doubts_them() -> None:
    # A closing step (beam search, nothing to agree with) may give the utterance's last
    # words a low probability: "… can do for your[p 0.00] country". Its audio ends with
    # the speech, so they are real words, not ones made up in a silence after it: dropped,
    # they would be lost with the step's audio.
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True)
    live = LiveState(body, LiveOptions())
    live._vad = ScriptedVoice((0.2, 3.0))  # type: ignore[assignment]
    live.feed(bytes(4 * SECOND))
    assert live.wants_step(STEP_MS)
    planned = live.next_step(final=False)
    assert planned.closes
    words = (
        DecodedWord(" do", 1.6, 1.9, 0.9),
        DecodedWord(" for", 1.9, 2.2, 0.9),
        DecodedWord(" your", 2.2, 2.4, 0.001),
        DecodedWord(" country.", 2.4, 2.95, 0.3),
        DecodedWord(" Do", 2.95, 2.95, 0.8),  # a repeat squeezed to no time: made up
        DecodedWord(" for", 2.95, 2.95, 0.8),
        DecodedWord(" your", 3.0, 3.1, 0.8),
    )
    segment = DecodedSegment(1.6, 3.1, " do for your country. Do for your", words=words)
    invented = said(("Thank", 3.4, 3.6), ("you.", 3.6, 3.8)).segments[0]  # in the pause
    committed = live.apply(planned, DecodeResult([segment, invented], "en"))
    assert " ".join(s.text.strip() for s in committed) == "do for your country."


def test_an_utterance_s_start_is_told_once_as_soon_as_its_voice_activity_lasts() -> None:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=True)
    live = LiveState(body, LiveOptions())
    live._vad = ScriptedVoice((1.0, 2.0), (3.0, 3.1), (4.0, 5.0), (6.0, 7.0))  # type: ignore[assignment]
    live.feed(bytes(int(1.2 * SECOND)))
    assert live.speech_onset() is None, "0.2 s of voice activity: a click or a breath"
    live.feed(bytes(int(0.1 * SECOND)))
    assert live.speech_onset() == 1.0, "told before any step decoded it"
    assert live.speech_onset() is None, "once per utterance"
    live.feed(bytes(int(1.3 * SECOND)))
    closing = live.next_step(final=False)
    assert closing.closes, "the pause after 2.0 s closes the utterance"
    live.apply(closing, said(("hello", 0.2, 0.8)))
    live.feed(bytes(int(1.0 * SECOND)))
    assert live.speech_onset() is None, "the 0.1 s at 3.0 s begins no utterance"
    wordless = live.next_step(final=False)
    assert wordless.closes, "its pause closes it"
    live.apply(wordless, None)
    live.feed(bytes(int(1.4 * SECOND)))
    assert live.speech_onset() == 4.0
    live.feed(bytes(int(1.2 * SECOND)))
    assert live.speech_onset() is None, "no step closed the utterance of 4.0 s yet"
    live.clear()  # at 6.2 s, mid-speech: what follows is a new utterance
    live.feed(bytes(int(0.1 * SECOND)))
    assert live.speech_onset() is None
    live.feed(bytes(int(0.2 * SECOND)))
    assert live.speech_onset() == 6.2


def test_without_voice_activity_no_utterance_start_is_told() -> None:
    live = state()
    live.feed(bytes(2 * SECOND))
    assert live.speech_onset() is None


def closed(live: LiveState, seconds: float, result: DecodeResult) -> list[str]:
    """Feed `seconds` of audio and close the utterance with `result` as the closing decode."""
    live.feed(bytes(int(seconds * SECOND)))
    live.ask_commit()
    planned = live.next_step(final=False)
    assert not planned.lead_in.seconds  # a closing step commits: it decodes no lead-in
    return [s.text for s in live.apply(planned, result)]


def test_an_utterance_s_opening_is_decoded_after_the_words_before_it() -> None:
    live = state()
    assert closed(live, 3.0, said(("ask", 0.2, 0.5), ("not", 1.5, 1.8))) == ["ask not"]
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    # The 3 s of "ask not" (shorter than LEAD_IN_S: all of it), then the new second.
    assert planned.lead_in.seconds == 3.0
    assert len(planned.to_request().source) == 4 * SAMPLE_RATE
    # The decode's copy of the lead-in ends at "not", though its times put "what" (stretched
    # back into the pause) in the lead-in: "what" is the utterance's first word.
    heard = said(("ask", 0.2, 0.5), ("not", 1.5, 2.8), ("what", 2.8, 3.1), ("your", 3.3, 3.7))
    assert live.apply(planned, heard) == []
    assert live.partial.text == "what your"
    assert (live.partial.start, live.partial.end) == (3.0, 3.7)  # stream time: 3 s + 0.7 s
    # From OPENING_S of the utterance on, a step may commit: it decodes the utterance alone.
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    assert not planned.lead_in.seconds
    assert len(planned.to_request().source) == 2 * SAMPLE_RATE


def test_the_lead_in_is_the_last_seconds_of_speech_from_a_gap_between_words() -> None:
    live = state()
    words = [(f"w{n}", n + 0.2, n + 0.7) for n in range(12)]
    closed(live, 12.0, said(*words))
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    # 5 s or more, cut in the gap before a word: the middle of 6.7 … 7.2, of 12 s.
    assert planned.lead_in.seconds == 12.0 - 6.95
    assert [w.word for w in planned.lead_in.words] == [f" w{n}" for n in range(7, 12)]
    assert planned.lead_in.words[0].start == 7.2 - 6.95
    # A short utterance after it adds to it (2 s: the second above and one more), still
    # from a gap: the one at 2.0 s of the 7.05 s. Clear forgets it.
    live.apply(planned, None)
    closed(live, 1.0, said(("ask", 0.2, 0.8)))
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    assert planned.lead_in.seconds == 7.05 - 2.0
    assert [w.word for w in planned.lead_in.words] == [" w9", " w10", " w11", " ask"]
    live.clear()
    live.feed(bytes(SECOND))
    assert not live.next_step(final=False).lead_in.seconds


def test_no_lead_in_when_the_worker_is_set_to_none() -> None:
    body = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, vad=False)
    live = LiveState(body, LiveOptions(lead_in_ms=0))
    closed(live, 3.0, said(("ask", 0.2, 0.5), ("not", 1.5, 1.8)))
    live.feed(bytes(SECOND))
    planned = live.next_step(final=False)
    assert not planned.lead_in.seconds
    assert len(planned.to_request().source) == SAMPLE_RATE
