"""The broker ⇄ worker bodies: the JSON each model puts on the wire, and what it refuses."""

from __future__ import annotations

import pytest

from whisperfarm import wire
from whisperfarm.errors import ProtocolError
from whisperfarm.protocol import SegmentData, Word
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import (
    AssignBody,
    Body,
    FailedBody,
    FinalBody,
    HeartbeatBody,
    ReadyBody,
    SegmentBody,
)


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (
            AssignBody(attempt=2, sample_rate=44_100, channels=2, format="s16le", language=None,
                       task="transcribe"),
            b'{"attempt":2,"sample_rate":44100,"channels":2,"format":"s16le","language":null,'
            b'"task":"transcribe"}',
        ),
        (
            AssignBody(attempt=1, sample_rate=16_000, prompt="Dashwood", temperature=0.2,
                       word_timestamps=True),
            b'{"attempt":1,"sample_rate":16000,"prompt":"Dashwood","temperature":0.2,'
            b'"word_timestamps":true}',
        ),
        (
            ReadyBody(engine="null", model="tiny", device="cpu", slots=4, metrics_port=None,
                      name="w1", pid=7),
            b'{"engine":"null","model":"tiny","device":"cpu","slots":4,"metrics_port":null,'
            b'"name":"w1","pid":7}',
        ),
        (
            SegmentBody(attempt=1, id=0, start=0.0, end=1.5, text="h\u00e9"),
            b'{"attempt":1,"id":0,"start":0.0,"end":1.5,"text":"h\\u00e9"}',
        ),
        (
            SegmentBody(attempt=1, id=0, start=0.0, end=1.5, text="hi", tokens=[50363, 1],
                        avg_logprob=-0.25, words=[Word(word=" hi", start=0.1, end=1.5,
                                                       probability=0.9)]),
            b'{"attempt":1,"id":0,"start":0.0,"end":1.5,"text":"hi","tokens":[50363,1],'
            b'"avg_logprob":-0.25,"words":[{"word":" hi","start":0.1,"end":1.5,'
            b'"probability":0.9}]}',
        ),
        (
            FinalBody(attempt=1, text="hi", segments=[SegmentData(id=0, start=0, end=1, text="hi")],
                      language="en", duration=1.0, decode_started=5.0, decode_ended=6.0),
            b'{"attempt":1,"text":"hi","segments":[{"id":0,"start":0.0,"end":1.0,"text":"hi"}],'
            b'"language":"en","duration":1.0,"decode_started":5.0,"decode_ended":6.0}',
        ),
        (FailedBody(attempt=3, error="full", refused=True),
         b'{"attempt":3,"error":"full","refused":true}'),
        (HeartbeatBody(busy=1), b'{"busy":1}'),
        (HeartbeatBody(busy=1, draining=True, slots=0), b'{"busy":1,"draining":true,"slots":0}'),
        (HeartbeatBody(), b"{}"),
    ],
)  # fmt: skip
def test_a_body_is_sent_as_the_fields_its_sender_set_in_their_order(
    body: Body, payload: bytes
) -> None:
    message = body.message("job")
    assert wire.encode(message)[3] == payload
    assert type(body).read(wire.decode(wire.encode(message))) == body


@pytest.mark.parametrize(
    ("model", "body", "match"),
    [
        (ReadyBody, {"engine": "null", "slots": 1}, "bad READY: model"),
        (SegmentBody, {"attempt": 1, "id": "x", "start": 0, "end": 1, "text": ""},
         "bad SEGMENT: id"),
        (FinalBody, {"attempt": 1, "segments": [{"id": 0}]}, "segments.0"),
        (FinalBody, {"attempt": 1, "duration": float("nan")}, "duration"),
        (FinalBody, {"attempt": -1}, "attempt"),
        (AssignBody, {"attempt": 1, "sample_rate": 4000}, "4000 Hz"),
    ],
)  # fmt: skip
def test_a_body_that_does_not_fit_its_command_is_a_protocol_error(
    model: type[Body], body: dict[str, object], match: str
) -> None:
    with pytest.raises(ProtocolError, match=match):
        model.read(Message(model.command, "job", body))


def test_a_body_is_read_only_as_its_own_command() -> None:
    with pytest.raises(ProtocolError, match="a SEGMENT is not a FINAL"):
        FinalBody.read(Message(Command.SEGMENT, "job", {"attempt": 1}))


def test_a_segment_keeps_its_figures_from_the_worker_to_the_transcript() -> None:
    """What the worker reported is what the job's transcript stores: nothing is lost on the
    way, and nothing the engine did not report is written as null."""
    body = SegmentBody(attempt=2, id=3, start=1.0, end=2.0, text="x", seek=100, temperature=0.0,
                       no_speech_prob=0.5)  # fmt: skip
    assert body.segment().model_dump() == {
        "id": 3, "start": 1.0, "end": 2.0, "text": "x", "seek": 100, "temperature": 0.0,
        "no_speech_prob": 0.5,
    }  # fmt: skip
