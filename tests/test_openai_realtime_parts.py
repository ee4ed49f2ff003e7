"""The Realtime edge's parts without a farm: G.711 expansion, packets, session rules, turns.

The end-to-end behaviour is `test_openai_realtime.py`'s; these pin the rules that a session
over a real farm reaches only by chance (a close racing a commit, both G.711 laws, every
`session.update` refusal).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from broker.openai_api.realtime_audio import InputFormat, Packets
from broker.openai_api.realtime_session import Session, SessionError, Vad
from broker.openai_api.realtime_turns import Turns
from tests.speech import require_tool
from whisperfarm.protocol import Partial, Segment


def ffmpeg_g711(pcm: bytes, law: str) -> tuple[bytes, bytes]:
    """8 kHz PCM encoded by ffmpeg in `law` (mulaw or alaw), and that decoded by ffmpeg."""
    ffmpeg = require_tool("ffmpeg")

    def run(args: list[str], data: bytes) -> bytes:
        return subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", *args, "-"],
                              input=data, capture_output=True, check=True).stdout  # fmt: skip

    coded = run(["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "-", "-f", law], pcm)
    decoded = run(["-f", law, "-ar", "8000", "-ac", "1", "-i", "-", "-f", "s16le"], coded)
    return coded, decoded


@pytest.mark.parametrize(("kind", "law"), [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
def test_g711_expands_as_ffmpeg_decodes_it(kind: str, law: str) -> None:
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 20000 * t).astype("<i2").tobytes()
    coded, decoded = ffmpeg_g711(tone, law)
    expanded = InputFormat(kind).to_pcm(coded)  # type: ignore[arg-type]
    assert expanded == decoded
    assert InputFormat(kind).audio.sample_rate == 8000  # type: ignore[arg-type]


def test_pcm_cut_mid_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="odd number of bytes"):
        InputFormat("audio/pcm").to_pcm(b"\0\0\0")


def test_appends_become_whole_packets_and_a_commit_pads_the_rest() -> None:
    packets = Packets(InputFormat("audio/pcm").audio)
    assert packets.take(b"\1" * 1500) == []
    made = packets.take(b"\2" * 3000)
    assert [len(p) for p in made] == [2000, 2000] and packets.sent == 2
    rest = packets.flush()
    assert rest == b"\2" * 500 + bytes(1500) and packets.sent == 3
    assert packets.flush() is None
    packets.take(b"\3" * 10)
    packets.drop()
    assert packets.flush() is None


def update(session: Session, started: bool = False, **audio_input: object) -> None:
    session.update({"type": "transcription", "audio": {"input": audio_input}}, started)


def test_semantic_vad_is_served_as_server_vad_and_null_turns_detection_off() -> None:
    session = Session()
    update(session, turn_detection={"type": "server_vad", "silence_duration_ms": 800,
                                    "threshold": 0.6})  # fmt: skip
    assert session.start().vad_pause_ms == 800 and session.start().vad_threshold == 0.6
    update(session, turn_detection={"type": "semantic_vad", "eagerness": "high"})
    assert session.vad == Vad() and session.as_dict()["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
    }  # fmt: skip
    update(session, turn_detection=None)
    assert session.vad is None and session.start().vad  # silence is still skipped
    assert session.start().vad_pause_ms == 500


def test_once_audio_went_the_format_model_and_vad_settings_are_fixed() -> None:
    session = Session()
    update(session, format={"type": "audio/pcmu"}, transcription={"language": "en"})
    assert session.start().sample_rate == 8000
    update(session, True, format={"type": "audio/pcmu"}, transcription={"language": "en"})
    refused: list[dict[str, dict[str, object]]] = [
        {"format": {"type": "audio/pcm", "rate": 24000}},
        {"transcription": {"model": "whisper-large", "language": "en"}},
        {"turn_detection": {"type": "server_vad", "threshold": 0.9}},
    ]
    for audio_input in refused:
        with pytest.raises(SessionError) as caught:
            update(session, True, **audio_input)
        assert "once audio has been sent" in caught.value.message
    update(session, True, turn_detection=None)  # manual commits from now on: taken
    assert session.vad is None and session.format == InputFormat("audio/pcmu")
    update(session, True, transcription={"language": "de", "prompt": "Namen"})  # next turn's
    assert (session.language, session.prompt) == ("de", "Namen")


def segment(index: int, text: str, start: float) -> Segment:
    return Segment(id=index, start=start, end=start + 1, text=text)


def closed(at: float) -> Partial:
    return Partial(text="", start=at, end=at, closed=True)


def kinds(events: list[str]) -> list[str]:
    return [json.loads(e)["type"].rsplit(".", 1)[-1] for e in events]


def test_without_vad_only_the_close_that_covers_a_commit_ends_the_turn() -> None:
    session = Session(vad=None)
    turns = Turns(session)
    assert turns.on_segment(segment(0, " Hello there.", 0.5)) != []
    assert turns.on_partial(closed(2.0)) == [], "a pause is not a turn's end without VAD"
    turns.commit(4.0)
    turns.on_segment(segment(1, " Again.", 3.0))
    assert turns.on_partial(closed(3.0)) == [], "a close before the commit's place"
    events = turns.on_partial(closed(4.0))
    assert kinds(events) == ["committed", "added", "completed", "done"]
    assert json.loads(events[2])["transcript"] == "Hello there. Again."


def test_with_vad_a_pause_ends_the_turn_and_clear_forgets_a_turn_with_no_words() -> None:
    turns = Turns(Session())
    started = turns.on_partial(Partial(text="Hel", start=1.0, end=1.2))
    assert kinds(started) == ["speech_started"]
    assert turns.clear(1.5) == [], "nothing committed: the turn is forgotten"
    assert kinds(turns.on_partial(Partial(text="Hi", start=2.0, end=2.2))) == ["speech_started"]
    turns.on_segment(segment(0, " Hi.", 2.0))
    assert kinds(turns.on_partial(closed(3.0))) == [
        "speech_stopped", "committed", "added", "completed", "done"
    ]  # fmt: skip
    assert turns.on_partial(closed(4.0)) == [], "no turn open"


def test_with_vad_a_turn_opens_where_the_voice_activity_began() -> None:
    turns = Turns(Session())  # prefix padding 300 ms
    [started] = turns.on_partial(Partial(text="", start=0, end=0, speech_from=1.25))
    event = json.loads(started)
    assert (event["type"], event["audio_start_ms"]) == ("input_audio_buffer.speech_started", 950)
    assert turns.on_partial(Partial(text="Hel", start=1.3, end=1.5)) == [], "already open"
    turns.on_segment(segment(0, " Hello.", 1.3))
    ended = [json.loads(e) for e in turns.on_partial(closed(3.0))]
    assert ended[0]["audio_end_ms"] == 3000 and ended[0]["item_id"] == event["item_id"]
    manual = Turns(Session(vad=None))
    assert manual.on_partial(Partial(text="", start=0, end=0, speech_from=1.25)) == []


def closing(at: float) -> Partial:
    return Partial(text="", start=0, end=0, closing_at=at)


def test_with_vad_a_turn_stops_when_its_close_begins_and_the_next_may_begin_meanwhile() -> None:
    turns = Turns(Session())
    turns.on_partial(Partial(text="", start=0, end=0, speech_from=0.5))
    turns.on_segment(segment(0, " Hello", 0.5))
    stopped = turns.on_partial(closing(2.0))
    assert kinds(stopped) == ["speech_stopped", "committed", "added"]
    first = json.loads(stopped[0])["item_id"]
    assert json.loads(stopped[0])["audio_end_ms"] == 2000
    [started] = turns.on_partial(Partial(text="", start=0, end=0, speech_from=2.3))
    second = json.loads(started)["item_id"]
    assert second != first, "the next turn begins while the last one's words are decoded"
    [delta] = turns.on_segment(segment(1, " there.", 1.0))  # the close's last words
    assert json.loads(delta)["item_id"] == first and json.loads(delta)["delta"] == " there."
    done = turns.on_partial(closed(2.0))
    assert kinds(done) == ["completed", "done"]
    assert (
        json.loads(done[0])["transcript"] == "Hello there."
        and json.loads(done[0])["item_id"] == first
    )
    [delta] = turns.on_segment(segment(2, " Again.", 2.4))
    assert json.loads(delta)["item_id"] == second
    ended = turns.on_partial(closing(4.0)) + turns.on_partial(closed(4.0))
    assert kinds(ended) == ["speech_stopped", "committed", "added", "completed", "done"]
    assert json.loads(ended[1])["previous_item_id"] == first


def test_a_clear_during_a_close_completes_the_stopped_turn_with_what_it_has() -> None:
    turns = Turns(Session(vad=None))
    turns.on_segment(segment(0, " Hello.", 0.5))
    turns.commit(2.0)
    assert kinds(turns.on_partial(closing(2.0))) == ["committed", "added"]
    assert kinds(turns.clear(2.5)) == ["completed", "done"], "the worker drops that close"
    assert turns.on_partial(closed(2.0)) == []


def test_a_failure_during_a_close_fails_both_turns() -> None:
    turns = Turns(Session())
    turns.on_partial(Partial(text="", start=0, end=0, speech_from=0.5))
    turns.on_partial(closing(2.0))
    turns.on_partial(Partial(text="", start=0, end=0, speech_from=2.3))
    assert kinds(turns.failed("the worker died")) == ["failed", "failed"]


def test_a_failed_stream_fails_the_open_turn_by_its_item() -> None:
    turns = Turns(Session())
    assert turns.failed("the worker died") == [], "no turn open: nothing to fail"
    [started] = turns.on_partial(Partial(text="Hi", start=1.0, end=1.2))
    [failed] = turns.failed("the worker died")
    event = json.loads(failed)
    assert event["type"] == "conversation.item.input_audio_transcription.failed"
    assert event["item_id"] == json.loads(started)["item_id"] and event["content_index"] == 0
    assert event["error"]["message"] == "the worker died"
