"""A file stream's voice activity (`workers.speech_clip`) and windows that decode only speech.

No Whisper model here: Silero scores real recordings (a few milliseconds each), the engine
is scripted. The chunks kept must be the ones faster-whisper's own `get_speech_timestamps`
keeps of the same audio; times of a decode of the joined speech must come back in window
and stream time; a window without speech must never reach the engine; and the commit rules
must hold in buffer time.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field

import numpy as np
import pytest
from faster_whisper.vad import VadOptions, get_speech_timestamps

from tests.speech import FIXTURE_DIR
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE, Pcm
from workers.engines import (
    DecodedSegment,
    DecodedWord,
    DecodeRequest,
    DecodeResult,
    wants_vad,
)
from workers.engines.null import NullEngine
from workers.runner import decode_speech
from workers.speech_clip import FILE_VAD, SpeechClip, SpeechFinder, speech_chunks, vad_options
from workers.stream import COMMIT_MARGIN_S, StreamState
from workers.vad import FRAME, VoiceActivity

SPEC = AssignBody(attempt=1, sample_rate=SAMPLE_RATE)
PAD = SAMPLE_RATE * FILE_VAD.speech_pad_ms // 1000


def recording(name: str) -> Pcm:
    with wave.open(str(FIXTURE_DIR / name)) as clip:
        assert clip.getframerate() == SAMPLE_RATE and clip.getnchannels() == 1
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)


def silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


JFK = recording("jfk.wav")
MIXED = np.concatenate([silence(0.7), JFK, silence(1.0), JFK, silence(3.0), JFK[:48_000]])
"""Speech with pauses shorter and longer than `FILE_VAD`'s 2 s, ending mid-sentence."""


def whole_file_chunks(pcm: Pcm, options: VadOptions) -> list[dict[str, int]]:
    activity = VoiceActivity(options.threshold)
    activity.feed(pcm)
    return speech_chunks(activity.speech_spans(), len(pcm), options)


# ---- which audio is kept ------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        FILE_VAD,
        VadOptions(min_silence_duration_ms=300, speech_pad_ms=200, min_speech_duration_ms=250),
    ],
    ids=["defaults", "short-silences"],
)
@pytest.mark.parametrize(
    "audio",
    ["jfk.wav", "sense_and_sensibility_01_austen_64kb-0870.wav", "mixed"],
)
def test_chunks_are_the_ones_faster_whispers_vad_filter_keeps(
    audio: str, options: VadOptions
) -> None:
    pcm = MIXED if audio == "mixed" else recording(audio)
    theirs = get_speech_timestamps(pcm.astype(np.float32) / 32768.0, options)
    assert whole_file_chunks(pcm, options) == theirs
    assert theirs, "the recording has speech"


def test_padding_merging_and_the_ends() -> None:
    options = VadOptions(min_silence_duration_ms=200, speech_pad_ms=300, min_speech_duration_ms=100)
    second, pad = SAMPLE_RATE, 4800
    spans = [
        (-FRAME, 1 * second),  # starts before the window: clipped to it
        (int(1.1 * second), 2 * second),  # a pause shorter than min_silence: the same speech
        (4 * second, 4 * second + FRAME),  # shorter than min_speech: dropped
        (6 * second, 7 * second),  # 4 s after the last: padded on both sides
        (int(7.4 * second), 8 * second),  # a pause under two pads: split in its middle
        (int(10.6 * second), int(10.85 * second)),  # too little silence after: runs to the end
    ]
    assert speech_chunks(spans, 11 * second, options) == [
        {"start": 0, "end": 2 * second + pad},
        {"start": 6 * second - pad, "end": 7 * second + 3200},
        {"start": 7 * second + 3200, "end": 8 * second + pad},
        {"start": int(10.6 * second) - pad, "end": 11 * second},
    ]
    assert speech_chunks([], 11 * second, options) == []


def test_a_streams_threshold_replaces_only_the_threshold() -> None:
    assert vad_options(None) == FILE_VAD
    assert vad_options(0.8) == VadOptions(threshold=0.8)


# ---- times of the joined speech, back in the window ---------------------------------------


def test_times_seek_and_words_map_back_to_the_window() -> None:
    second = SAMPLE_RATE
    clip = SpeechClip.cut(
        np.arange(10 * second, dtype=np.int16),
        [{"start": 1 * second, "end": 3 * second}, {"start": 6 * second, "end": 7 * second}],
    )
    assert len(clip.pcm) == 3 * second and clip.pcm[0] == second
    word = DecodedWord(" words", 1.7, 2.1, 0.9)  # across the joint, its middle in the first
    decoded = DecodeResult(
        [
            DecodedSegment(0.5, 2.0, " plain", seek=0),  # ends where the first chunk ends
            DecodedSegment(2.0, 2.5, " late", seek=250),
            DecodedSegment(1.0, 2.5, " worded", words=(DecodedWord(" a", 1.0, 1.2, 0.5), word)),
        ],
        "en",
    )
    plain, late, worded = clip.restore(decoded).segments
    assert (plain.start, plain.end, plain.seek) == (1.5, 3.0, 100)
    assert (late.start, late.end, late.seek) == (6.0, 6.5, 650)
    assert [(w.start, w.end) for w in worded.words or ()] == [(2.0, 2.2), (2.7, 3.1)]
    assert (worded.start, worded.end) == (2.0, 3.1)


# ---- a stream scored one window at a time -------------------------------------------------


def test_windows_scored_in_turn_keep_what_the_whole_file_keeps() -> None:
    """Each window scores only audio no window had; overlaps are not scored twice."""
    finder = SpeechFinder()
    cut = 6 * SAMPLE_RATE
    first = finder.clip(MIXED[: 10 * SAMPLE_RATE], 0)
    finder.forget_before(cut)
    second = finder.clip(MIXED[cut:], cut)
    assert first is not None and second is not None
    whole = VoiceActivity()
    whole.feed(MIXED)
    spans = [(a - cut, b - cut) for a, b in whole.speech_spans(cut)]
    assert second.chunks == speech_chunks(spans, len(MIXED) - cut, FILE_VAD)
    assert len(second.pcm) == sum(c["end"] - c["start"] for c in second.chunks)


def test_silence_has_no_clip() -> None:
    assert SpeechFinder().clip(silence(5), 0) is None


# ---- windows of a stream that decode only speech ------------------------------------------


@dataclass
class Scripted:
    """An engine that answers every request with `segments` and keeps the requests."""

    segments: list[DecodedSegment]
    requests: list[DecodeRequest] = field(default_factory=list)
    name: str = "scripted"
    model: str = "none"
    device: str = "cpu"

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.requests += requests
        return [DecodeResult(self.segments, "en") for _ in requests]


def fed(pcm: Pcm, chunk_seconds: float = 60, spec: AssignBody = SPEC) -> StreamState:
    state = StreamState(spec, chunk_seconds, engine_vad=True)
    for i in range(0, len(pcm), 2000):
        state.feed(pcm[i : i + 2000].tobytes())
    return state


def test_a_window_without_speech_never_reaches_the_engine() -> None:
    state = fed(silence(30))
    state.end()
    window = state.next_window(final=True)
    assert window is not None
    engine = Scripted([DecodedSegment(0.0, 2.0, " You")])
    result, started, ended = decode_speech(engine, window)
    assert engine.requests == [] and (started, ended) == (None, None)
    assert state.commit(window, result) == [] and state.text == ""


def test_only_the_speech_is_decoded_and_comes_back_in_stream_time() -> None:
    padded = np.concatenate([silence(20), JFK, silence(20)])
    state = fed(padded)
    state.end()
    window = state.next_window(final=True)
    assert window is not None and window.speech is not None
    engine = Scripted([DecodedSegment(0.0, 8.0, " And so", seek=0)])
    result, _, _ = decode_speech(engine, window)
    (request,) = engine.requests
    chunks = whole_file_chunks(padded, FILE_VAD)
    assert len(chunks) == 1
    start, end = chunks[0]["start"], chunks[0]["end"]
    assert np.array_equal(request.source, padded[start:end])
    assert start > 19.5 * SAMPLE_RATE and end < 31.5 * SAMPLE_RATE
    (segment,) = state.commit(window, result)
    assert segment.start == round(start / SAMPLE_RATE, 2) and segment.text == "And so"
    assert segment.seek == round(start / SAMPLE_RATE * 100)


def test_segments_near_the_edge_wait_and_committed_audio_is_dropped() -> None:
    lead = 12.0
    state = fed(np.concatenate([silence(lead), JFK]), chunk_seconds=20)
    assert state.wants_decode()
    window = state.next_window(final=False)
    assert window is not None
    engine = Scripted([DecodedSegment(0.0, 4.0, " one"), DecodedSegment(4.0, 8.0, " two")])
    result, _, _ = decode_speech(engine, window)
    (request,) = engine.requests
    began = (window.samples - len(request.source)) / SAMPLE_RATE  # the clip runs to the edge
    assert lead - 1 < began < lead
    edge = window.samples / SAMPLE_RATE - COMMIT_MARGIN_S
    assert began + 4.0 <= edge < began + 8.0
    (committed,) = state.commit(window, result)
    assert committed.text == "one" and committed.end == pytest.approx(began + 4.0, abs=0.01)
    assert state.buffered_seconds == pytest.approx(
        len(JFK) / SAMPLE_RATE + lead - committed.end, abs=0.01
    )
    state.end()
    final = state.next_window(final=True)
    assert final is not None and final.start == round(committed.end * SAMPLE_RATE)
    engine.requests.clear()
    decode_speech(engine, final)
    (rest,) = engine.requests
    whole = VoiceActivity()
    whole.feed(np.concatenate([silence(lead), JFK]))
    spans = [(a - final.start, b - final.start) for a, b in whole.speech_spans(final.start)]
    (chunk,) = speech_chunks(spans, final.samples, FILE_VAD)
    assert chunk == {"start": 0, "end": final.samples}  # the cut was mid-speech
    assert np.array_equal(rest.source, final.pcm)


@pytest.mark.parametrize("vad", [False, True], ids=["start.vad-false", "engine-wants-none"])
def test_without_vad_the_whole_window_is_decoded(vad: bool) -> None:
    """`start.vad: false`, or an engine that wants none (`engine_vad` False)."""
    state = StreamState(SPEC.model_copy(update={"vad": vad}), 60, engine_vad=not vad)
    state.feed(silence(3).tobytes())
    state.end()
    window = state.next_window(final=True)
    assert window is not None and window.speech is None
    engine = Scripted([DecodedSegment(0.0, 2.0, " You")])
    result, started, _ = decode_speech(engine, window)
    assert [len(r.source) for r in engine.requests] == [3 * SAMPLE_RATE] and started is not None
    assert state.commit(window, result)[0].text == "You"


def test_the_null_engine_wants_no_vad_and_model_engines_do() -> None:
    assert not wants_vad(NullEngine())
    assert wants_vad(Scripted([]))
