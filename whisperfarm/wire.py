"""Broker ⇄ worker ZeroMQ protocol: commands and the multipart frame codec.

ROUTER (broker) ⇄ DEALER (worker). A message on the wire is
`[identity, b"", version, command, job_id, payload]`; the DEALER side has no identity
frame. JSON payloads carry the stream `attempt` so that results of a stale attempt can
be dropped; audio payloads carry it in a small binary header in front of the PCM.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from whisperfarm.errors import ProtocolError

VERSION = b"WFW1"
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_LIVENESS = 3
"""A peer missing this many heartbeats in a row is dead."""


class Command(StrEnum):
    """What a message is; its JSON body is the command's model in `whisperfarm.wire_bodies`."""

    # worker → broker
    READY = "READY"
    SEGMENT = "SEGMENT"
    PARTIAL = "PARTIAL"
    FINAL = "FINAL"
    FAILED = "FAILED"
    # broker → worker
    ASSIGN = "ASSIGN"
    AUDIO = "AUDIO"  # header(attempt) + PCM, no JSON
    END = "END"
    COMMIT = "COMMIT"
    CLEAR = "CLEAR"
    RETUNE = "RETUNE"
    CANCEL = "CANCEL"
    # both ways
    HEARTBEAT = "HEARTBEAT"
    DISCONNECT = "DISCONNECT"


_AUDIO_HEADER = struct.Struct("!I")
MAX_ATTEMPT = 2**32 - 1
"""The largest attempt number the audio header holds."""
_COMMANDS = {c.value.encode(): c for c in Command}


@dataclass(frozen=True)
class Message:
    """One broker ⇄ worker message, independent of which side sends it.

    `body` is the JSON object as received; `wire_bodies` reads it as its command's model.
    """

    command: Command
    job_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    audio: bytes = b""

    @property
    def attempt(self) -> int:
        """The attempt a message is about, read without validating the rest of the body:
        it routes the message (or its refusal) before anything else is looked at."""
        value = self.body.get("attempt", 0)
        return value if isinstance(value, int) else 0


def audio(job_id: str, attempt: int, pcm: bytes) -> Message:
    return Message(Command.AUDIO, job_id, {"attempt": attempt}, pcm)


def encode(message: Message) -> list[bytes]:
    """Frames after the identity/empty envelope: `[version, command, job_id, payload]`."""
    if message.command is Command.AUDIO:
        payload = _AUDIO_HEADER.pack(message.attempt) + message.audio
    else:
        payload = json.dumps(message.body, separators=(",", ":")).encode()
    return [VERSION, message.command.value.encode(), message.job_id.encode(), payload]


def decode(frames: list[bytes]) -> Message:
    """Decode `[version, command, job_id, payload]`; raise `ProtocolError` on anything else."""
    if len(frames) != 4:
        raise ProtocolError(f"expected 4 frames after the envelope, got {len(frames)}")
    version, raw_command, raw_job, payload = frames
    if version != VERSION:
        raise ProtocolError(f"unsupported wire version {version[:16]!r}")
    command = _COMMANDS.get(raw_command)
    if command is None:
        raise ProtocolError(f"unknown command {raw_command[:32]!r}")
    try:
        job_id = raw_job.decode()
    except UnicodeDecodeError:
        raise ProtocolError("job id is not UTF-8") from None
    if command is Command.AUDIO:
        if len(payload) < _AUDIO_HEADER.size:
            raise ProtocolError("audio payload shorter than its header")
        (attempt,) = _AUDIO_HEADER.unpack_from(payload)
        return Message(command, job_id, {"attempt": attempt}, payload[_AUDIO_HEADER.size :])
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        raise ProtocolError(f"{command} payload is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"{command} payload is not a JSON object")
    return Message(command, job_id, body)


def split_envelope(frames: list[bytes]) -> tuple[bytes, list[bytes]]:
    """ROUTER side: peel `[identity, b""]` off a received message."""
    if len(frames) < 2 or frames[1] != b"":
        raise ProtocolError("message without a ROUTER envelope")
    return frames[0], frames[2:]
