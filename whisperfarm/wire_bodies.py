"""The JSON bodies of the broker ⇄ worker messages (`whisperfarm.wire`), one model per command.

`wire.decode` checks the frames; `Body.read` checks one body against its command's model
and raises `ProtocolError` saying what is wrong. `Body.message` builds the message; what
is sent is the fields the sender set, in the order below, so the JSON on the wire is
what an older peer expects. AUDIO has no JSON body: its attempt travels in a binary
header (`wire.audio`), so no model is built per packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from whisperfarm.errors import ProtocolError
from whisperfarm.packets import AudioFormat, SampleFormat
from whisperfarm.protocol import SegmentData, describe_invalid
from whisperfarm.wire import MAX_ATTEMPT, Command, Message


class Body(BaseModel):
    """A message body: unknown keys are ignored (a newer peer may add some)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    command: ClassVar[Command]

    @classmethod
    def read(cls, message: Message) -> Self:
        """The body of `message` as this command's model, or `ProtocolError`."""
        if message.command is not cls.command:
            raise ProtocolError(f"a {message.command} is not a {cls.command}")
        try:
            return cls.model_validate(message.body)
        except ValidationError as exc:
            raise ProtocolError(f"bad {cls.command}: {describe_invalid(exc)}") from None

    def message(self, job_id: str = "") -> Message:
        return Message(self.command, job_id, self.model_dump(mode="json", exclude_unset=True))


class _Attempted(Body):
    attempt: int = Field(ge=0, le=MAX_ATTEMPT)
    """Which dispatch of the stream this is about; results of an older one are dropped."""


# ---- worker → broker -------------------------------------------------------------------


class ReadyBody(Body):
    """A worker (re)connecting: what it runs and how many streams it takes at once."""

    command = Command.READY
    engine: str
    model: str
    device: str = "cpu"
    slots: int
    metrics_port: int | None = None
    name: str | None = None
    pid: int | None = None
    speakers_unavailable: str | None = None
    """Why it cannot label speakers (a sentence that says how to install what is missing);
    None: it can. The broker sends it no stream that asks for labels."""


class SegmentBody(SegmentData, _Attempted):
    """A committed segment, sent while the stream goes on."""

    command = Command.SEGMENT

    def segment(self) -> SegmentData:
        return SegmentData.model_validate(self.model_dump(exclude={"attempt"}))


class PartialBody(_Attempted):
    """A live stream's uncommitted tail, after its last segment (`protocol.Partial`)."""

    command = Command.PARTIAL
    text: str = ""
    start: float = 0.0
    end: float = 0.0
    step_seconds: float | None = None
    """How long the decode behind it took (the worker's live step time)."""
    closed: bool = False
    """The step closed an utterance (a pause, the client's commit, the end): every word
    heard before `end` is committed, and `text` is empty. Sent even when the partial did
    not change, so an edge that speaks in turns (the Realtime edge) learns where one ends."""
    speech_from: float | None = None
    """Voice activity began an utterance here (stream seconds), before any of its words
    are decoded; sent once per utterance, with the partial unchanged, so an edge that
    speaks in turns can open one as the speaker starts (the Realtime `speech_started`)."""
    closing_at: float | None = None
    """A step that closes the utterance at this stream position has begun (sent with the
    partial unchanged): its words come before the `closed` partial, and an utterance
    heard meanwhile is the next one (the Realtime edge stops its turn here)."""


class FinalBody(_Attempted):
    """The stream's whole result."""

    command = Command.FINAL
    text: str = ""
    segments: list[SegmentData] = Field(default_factory=list)
    language: str | None = None
    """The detected language (or the one asked for)."""
    duration: float = 0.0
    decode_started: float | None = None
    decode_ended: float | None = None


class FailedBody(_Attempted):
    command = Command.FAILED
    error: str = ""
    refused: bool = False
    """Never taken (the worker had no free slot): re-queue it, the audio is not at fault."""


# ---- broker → worker -------------------------------------------------------------------


class AssignBody(_Attempted):
    """A stream for the worker: how its audio is laid out and what to do with it."""

    command = Command.ASSIGN
    sample_rate: int
    channels: int = 1
    format: SampleFormat = "s16le"
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    prompt: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    word_timestamps: bool = False
    live: bool = False
    vad: bool = True
    vad_pause_ms: int | None = None
    vad_threshold: float | None = None
    diarize: bool = False
    """Label each final segment with its speaker (`workers.speakers`)."""
    speakers: int | None = Field(default=None, ge=1)
    resume_at: float = Field(default=0.0, ge=0.0)
    """Stream seconds already committed by earlier attempts: audio before it is skipped,
    and the attempt's segments continue after them (live streams keep what they sent)."""
    first_segment_id: int = Field(default=0, ge=0)
    """The id of this attempt's first segment (segments earlier attempts committed)."""

    @classmethod
    def read(cls, message: Message) -> Self:
        """Also `UnsupportedFormat` for a rate or channel count out of range."""
        body = super().read(message)
        body.audio_format()
        return body

    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, self.format)


class EndBody(_Attempted):
    """The upload is over: decode what is left and send FINAL."""

    command = Command.END


class CommitBody(_Attempted):
    """Live: the client ended its utterance; commit the uncommitted audio's text now."""

    command = Command.COMMIT


class ClearBody(_Attempted):
    """Live: the client dropped its uncommitted audio; forget it, decode none of it."""

    command = Command.CLEAR


class RetuneBody(_Attempted):
    """Live: from the next utterance on (at once if none is under way), decode in
    `language` (None: detect it) with `prompt` leading its first words."""

    command = Command.RETUNE
    language: str | None = None
    prompt: str | None = None


Tell = type[CommitBody | ClearBody] | Callable[..., RetuneBody]
"""What a live client's request becomes for the worker, given the attempt
(`make(attempt=n)`): the body class, or a `RetuneBody` with its options bound."""


class CancelBody(_Attempted):
    """Drop the stream; send nothing more for it."""

    command = Command.CANCEL


# ---- both ways -------------------------------------------------------------------------


class HeartbeatBody(Body):
    """Empty from the broker; a worker says how busy it is, and when it drains."""

    command = Command.HEARTBEAT
    busy: int | None = None
    live: int | None = None
    """Live streams held (the broker places a new live stream on the least loaded)."""
    live_step_seconds: float | None = None
    """Recent mean time of one live decode step (how far behind live streams run)."""
    draining: bool = False
    slots: int | None = None
    """0 while draining: take nothing new."""


class DisconnectBody(Body):
    command = Command.DISCONNECT


BODIES: dict[Command, type[Body]] = {
    body.command: body
    for body in (
        ReadyBody,
        SegmentBody,
        PartialBody,
        FinalBody,
        FailedBody,
        AssignBody,
        EndBody,
        CommitBody,
        ClearBody,
        RetuneBody,
        CancelBody,
        HeartbeatBody,
        DisconnectBody,
    )
}
"""Every command with a JSON body (all but AUDIO)."""
