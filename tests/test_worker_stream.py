"""The per-stream decoding policy (`workers.stream`), with scripted engine results.

No model here: the tests feed audio, take the window the state asks to decode, answer
it with made-up segments and check what gets committed, what audio stays, and which
prompt/language the next window carries.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from whisperfarm.errors import EngineError, ProtocolError, UnsupportedFormat
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE
from workers.engines import DecodedSegment, DecodedWord, DecodeRequest, DecodeResult
from workers.engines.null import NullEngine
from workers.runner import StreamRunner
from workers.stream import COMMIT_MARGIN_S, StreamState

SPEC = AssignBody(attempt=1, sample_rate=16_000, channels=1, format="s16le")


def tone(seconds: float, value: int = 1000) -> bytes:
    return np.full(round(seconds * SAMPLE_RATE), value, dtype=np.int16).tobytes()


def feed(state: StreamState, seconds: float) -> None:
    pcm = tone(seconds)
    for i in range(0, len(pcm), 2000):
        state.feed(pcm[i : i + 2000])


def result(*segments: tuple[Any, ...], language: str | None = "en") -> DecodeResult:
    """Scripted engine output; a segment may carry its tokens as a 4th item."""
    return DecodeResult([DecodedSegment(*s) for s in segments], language)


def test_short_stream_is_one_window_over_all_audio() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 8.0)
    assert not state.wants_decode()
    state.end()
    window = state.next_window(final=True)
    assert window is not None
    assert len(window.to_request().audio) == 8 * SAMPLE_RATE
    assert window.to_request().initial_prompt is None and window.to_request().language is None
    committed = state.commit(window, result((0.0, 3.0, " Hello"), (3.0, 7.9, " world.")))
    assert [(s.id, s.start, s.end, s.text) for s in committed] == [
        (0, 0.0, 3.0, "Hello"),
        (1, 3.0, 7.9, "world."),
    ]
    assert state.text == "Hello world." and state.language == "en"
    assert state.duration == 8.0
    assert state.next_window(final=True) is None  # nothing left


def test_window_commits_segments_before_the_margin_and_keeps_the_rest() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 9.9)
    assert not state.wants_decode()
    feed(state, 2.1)
    assert state.wants_decode()
    window = state.next_window(final=False)
    assert window is not None and window.to_request().seconds == 12.0
    feed(state, 1.0)  # arrives while the window decodes
    edge = 12.0 - COMMIT_MARGIN_S
    committed = state.commit(
        window, result((0.0, 4.0, " one"), (4.0, edge, " two"), (edge, 11.5, " three"))
    )
    assert [s.text for s in committed] == ["one", "two"]
    assert state.buffered_seconds == pytest.approx(13.0 - edge)
    assert not state.wants_decode()
    state.end()
    final = state.next_window(final=True)
    assert final is not None
    assert final.to_request().initial_prompt == "one two"
    assert final.to_request().language == "en"  # detected once, then kept
    last = state.commit(final, result((0.5, 5.0, " three four")))
    assert (last[0].id, last[0].start, last[0].end) == (2, edge + 0.5, edge + 5.0)


def test_window_without_speech_drops_all_but_the_margin() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 10.0)
    window = state.next_window(final=False)
    assert window is not None
    assert state.commit(window, result(language=None)) == []
    assert state.buffered_seconds == pytest.approx(COMMIT_MARGIN_S)
    assert state.language is None


def test_segment_across_the_edge_waits_for_more_audio() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 10.0)
    window = state.next_window(final=False)
    assert window is not None
    assert state.commit(window, result((0.0, 9.8, " a very long sentence"))) == []
    assert state.buffered_seconds == 10.0 and not state.wants_decode()
    feed(state, 4.9)
    assert not state.wants_decode()  # not re-decoded on every packet
    feed(state, 0.1)
    assert state.wants_decode()
    window = state.next_window(final=False)
    assert window is not None
    assert state.commit(window, result((0.0, 14.8, " still one sentence"))) == []
    feed(state, 5.0)
    window = state.next_window(final=False)
    assert window is not None and window.to_request().seconds == 20.0  # two chunks: enough
    committed = state.commit(window, result((0.0, 19.9, " a sentence that never ends")))
    assert [(s.start, s.end) for s in committed] == [(0.0, 19.9)]
    assert state.buffered_seconds == 0


def test_prompt_is_the_tail_of_the_committed_text() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 30.0)
    window = state.next_window(final=False)
    assert window is not None
    words = " ".join(f"word{i}" for i in range(400))
    state.commit(window, result((0.0, 20.0, words)))
    prompt = state.next_window(final=False).to_request().initial_prompt  # type: ignore[union-attr]
    assert prompt is not None and words.endswith(prompt) and len(prompt) <= 600
    assert prompt.startswith("word")


def test_committed_tokens_become_the_next_context() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 12.0)
    window = state.next_window(final=False)
    assert window is not None and window.to_request().context == ()
    segments = [
        DecodedSegment(0.0, 3.0, " one", (1, 2, 3)),
        DecodedSegment(3.0, 6.0, " two", (4, 5)),
        DecodedSegment(6.0, 11.0, " three", (6, 7)),  # past the edge: not committed
    ]
    state.commit(window, DecodeResult(segments, "en"))
    window = state.next_window(final=False)
    assert window is not None and window.to_request().context == (1, 2, 3, 4, 5)
    state.commit(window, result((0.0, 0.5, " four", tuple(range(300)))))
    window = state.next_window(final=False)
    assert window is not None and window.to_request().context == tuple(range(300))[-223:]


def test_the_clients_options_reach_every_window_and_its_prompt_the_first() -> None:
    spec = SPEC.model_copy(update={"prompt": "Dashwood", "temperature": 0.4,
                                   "word_timestamps": True})  # fmt: skip
    state = StreamState(spec, chunk_seconds=10)
    feed(state, 12.0)
    first = state.next_window(final=False)
    assert first is not None
    request = first.to_request()
    assert (request.initial_prompt, request.temperature, request.word_timestamps) == (
        "Dashwood", 0.4, True,
    )  # fmt: skip
    state.commit(first, result((0.0, 3.0, " Mister Dashwood.")))
    later = state.next_window(final=False)
    assert later is not None
    assert later.to_request().initial_prompt == "Mister Dashwood."
    assert (later.temperature, later.word_timestamps) == (0.4, True)


def test_decoding_figures_and_words_are_committed_in_stream_time() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 12.0)
    window = state.next_window(final=False)
    assert window is not None
    state.commit(window, result((0.0, 4.0, " one")))  # the buffer now starts at 4.0 s
    window = state.next_window(final=False)
    assert window is not None
    said = DecodedSegment(
        0.5, 2.0, " two three", (50363, 7, 8), seek=0, temperature=0.2, avg_logprob=-0.3,
        compression_ratio=1.1, no_speech_prob=0.01,
        words=(DecodedWord(" two", 0.5, 1.2, 0.9), DecodedWord(" three", 1.2, 2.0, 0.8)),
    )  # fmt: skip
    [segment] = state.commit(window, DecodeResult([said], "en"))
    assert (segment.start, segment.end, segment.seek) == (4.5, 6.0, 400)  # seek: 10 ms frames
    assert segment.tokens == [50363, 7, 8]
    assert (segment.temperature, segment.avg_logprob) == (0.2, -0.3)
    assert (segment.compression_ratio, segment.no_speech_prob) == (1.1, 0.01)
    assert [(w.word, w.start, w.end, w.probability) for w in segment.words or []] == [
        (" two", 4.5, 5.2, 0.9), (" three", 5.2, 6.0, 0.8),
    ]  # fmt: skip


def test_figures_an_engine_did_not_report_stay_off_the_wire() -> None:
    state = StreamState(SPEC, chunk_seconds=10)
    feed(state, 3.0)
    state.end()
    window = state.next_window(final=True)
    assert window is not None
    [segment] = state.commit(window, result((0.0, 3.0, " hello")))
    assert segment.model_dump() == {"id": 0, "start": 0.0, "end": 3.0, "text": "hello"}


def test_end_flushes_the_resampler_tail() -> None:
    spec = AssignBody(attempt=1, sample_rate=44_100, channels=2, format="s16le")
    state = StreamState(spec, chunk_seconds=10)
    state.feed(bytes(44_100 * 4))
    before = state.buffered_seconds
    state.end()
    assert state.buffered_seconds == 1.0 > before
    assert state.duration == 1.0


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        ({"sample_rate": 16000}, ProtocolError, "attempt"),
        ({"attempt": -1, "sample_rate": 16000}, ProtocolError, "attempt"),
        ({"attempt": 1, "sample_rate": "fast"}, ProtocolError, "sample_rate"),
        ({"attempt": 1, "sample_rate": 16000, "task": "sing"}, ProtocolError, "task"),
        ({"attempt": 1, "sample_rate": 4000}, UnsupportedFormat, "4000 Hz"),
        ({"attempt": 1, "sample_rate": 16000, "channels": 9}, UnsupportedFormat, "9 channels"),
    ],
)
def test_bad_assign_bodies(body: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        AssignBody.read(Message(Command.ASSIGN, "job", body))


class _Broken:
    """An engine that fails every window."""

    name, model, device = "broken", "none", "cpu"

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        raise EngineError("the engine broke")


@pytest.mark.parametrize(("engine", "result_command"),
                         [(NullEngine(), Command.FINAL), (_Broken(), Command.FAILED)])  # fmt: skip
async def test_the_slot_is_free_before_the_result_leaves(
    engine: Any, result_command: Command
) -> None:
    """The broker frees a worker's slot when it reads FINAL or FAILED and may send the
    next ASSIGN at once: by then the worker must not count the stream any more (under
    load it once answered such an ASSIGN with "full")."""
    holding = {"job"}
    seen: list[tuple[Command, bool]] = []

    async def send(message: Message) -> None:
        seen.append((message.command, "job" in holding))

    runner = StreamRunner("job", StreamState(SPEC, 10.0), engine, ThreadPoolExecutor(1), send)
    runner.start(lambda r: holding.discard(r.job_id))
    runner.feed(tone(1.0))
    runner.end()
    assert runner.task is not None
    await runner.task
    assert (result_command, False) in seen, seen
    assert not holding
