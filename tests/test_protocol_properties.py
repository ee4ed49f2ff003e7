"""Property tests (hypothesis) for the protocol codec, packet validator and ZMQ frames.

Whatever bytes arrive, the parsers either return a typed message or raise the farm's
own `ProtocolError` — never anything else, which would become a 1011 instead of a
clear error for the client (or a dropped message for the broker).
"""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from whisperfarm import wire
from whisperfarm.errors import BadPacket, ProtocolError
from whisperfarm.packets import FRAMES_PER_PACKET, AudioFormat, PacketValidator, split_packets
from whisperfarm.protocol import (
    Final,
    SegmentData,
    Start,
    parse_client_message,
    parse_server_message,
)
from whisperfarm.wire import Command, Message
from whisperfarm.wire_bodies import BODIES

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "resume", "end", "ack", "x"])},
    optional={
        "sample_rate": st.integers(-10, 300_000) | st.text(),
        "channels": st.integers(-2, 12),
        "format": st.sampled_from(["s16le", "f32le", "mulaw", ""]),
        "name": st.text(max_size=300),
        "job_id": st.text(max_size=80),
        "language": st.none() | st.text(max_size=20),
        "extra": json_values,
    },
)
formats = st.builds(
    AudioFormat,
    sample_rate=st.integers(8_000, 192_000),
    channels=st.integers(1, 8),
    format=st.sampled_from(["s16le", "f32le"]),
)


@given(st.text() | st.binary())
def test_any_text_frame_parses_or_raises_protocol_error(raw: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_message(raw)


@given(messages)
def test_structured_messages_parse_or_raise_protocol_error(data: dict[str, object]) -> None:
    try:
        message = parse_client_message(json.dumps(data))
    except ProtocolError as exc:
        assert exc.detail
    else:
        assert message.type == data["type"]
        if isinstance(message, Start):
            message.audio_format()  # already validated: must not raise


@given(formats, st.lists(st.integers(0, 40_000), max_size=12))
def test_validator_accepts_exactly_full_packets_then_one_short(
    audio: AudioFormat, sizes: list[int]
) -> None:
    validator = PacketValidator(audio)
    short_seen = False
    frames = 0
    for size in sizes:
        ok = not short_seen and 0 < size <= audio.packet_bytes and size % audio.bytes_per_frame == 0
        try:
            got = validator.accept(b"\0" * size)
        except BadPacket:
            assert not ok
            return
        assert ok and got == size // audio.bytes_per_frame
        frames += got
        short_seen = size < audio.packet_bytes
    assert validator.frames == frames


@given(formats, st.integers(0, 5 * FRAMES_PER_PACKET))
def test_split_packets_round_trips_through_the_validator(audio: AudioFormat, frames: int) -> None:
    pcm = bytes(frames * audio.bytes_per_frame)
    packets = split_packets(pcm, audio)
    validator = PacketValidator(audio)
    for packet in packets:
        validator.accept(packet)
    assert validator.frames == frames and b"".join(packets) == pcm


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_any_zmq_frames_decode_or_raise_protocol_error(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):
        wire.decode(frames)


@given(
    st.sampled_from(list(Command)),
    st.text(max_size=40),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=256),
)
def test_zmq_messages_round_trip(command: Command, job_id: str, attempt: int, pcm: bytes) -> None:
    message = Message(
        command, job_id, {"attempt": attempt}, pcm if command is Command.AUDIO else b""
    )
    decoded = wire.decode(wire.encode(message))
    assert decoded == message


@given(st.sampled_from(list(BODIES)), st.dictionaries(st.text(max_size=16), json_values))
def test_any_json_body_reads_as_its_command_or_raises_protocol_error(
    command: Command, body: dict[str, object]
) -> None:
    model = BODIES[command]
    with contextlib.suppress(ProtocolError):
        read = model.read(Message(command, "job", body))
        assert model.read(wire.decode(wire.encode(read.message("job")))) == read


@settings(max_examples=50)
@given(st.lists(st.text(max_size=30), max_size=5), st.floats(0, 1e5))
def test_final_messages_round_trip(texts: list[str], duration: float) -> None:
    segments = [SegmentData(id=i, start=i, end=i + 1, text=t) for i, t in enumerate(texts)]
    final = Final(job_id="j", text=" ".join(texts), segments=segments, language="en",
                  duration=duration)  # fmt: skip
    assert parse_server_message(final.dumps()) == final
