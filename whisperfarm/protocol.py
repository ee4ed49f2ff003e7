"""Client ⇄ broker streaming protocol, version 1 (WebSocket `/v1/stream`).

Every fact about the wire lives here: the JSON messages in both directions as pydantic
models, and `parse_client_message()` which either returns a typed message or raises
`ProtocolError`. Binary frames are audio packets, framed by `whisperfarm.packets`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from whisperfarm.errors import ErrorCode, ProtocolError, UnsupportedFormat, WhisperfarmError
from whisperfarm.packets import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioFormat

STREAM_PATH = "/v1/stream"
MAX_TEXT_MESSAGE_BYTES = 64 * 1024
"""A control message is a few hundred bytes; anything this big is abuse."""
MAX_PROMPT_CHARS = 4000
"""Far more than Whisper reads of a prompt (its last ~220 tokens)."""
MIN_PAUSE_MS = 100
MAX_PAUSE_MS = 10_000
"""The range of `Start.vad_pause_ms`: shorter cuts words apart, longer is not a pause."""
MAX_SPEAKERS = 32
"""The most speakers `Start.speakers` may name: more is not a conversation to label."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def dumps(self) -> str:
        return self.model_dump_json()


# ---- client → broker -------------------------------------------------------------------


class Start(_Message):
    type: Literal["start"] = "start"
    name: str = Field(default="stream", min_length=1, max_length=255)
    sample_rate: int
    channels: int = 1
    format: Literal["s16le", "f32le"] = "s16le"
    language: str | None = Field(default=None, min_length=2, max_length=16)
    task: Literal["transcribe", "translate"] = "transcribe"
    duration: float | None = Field(default=None, ge=0)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    """A logical model name (`tiny.en`, `base`…); None: the broker's default."""
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    """Text said before this audio (names, spelling, style); the first window's prompt."""
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    """The first decoding temperature; a window whose text looks wrong retries hotter."""
    word_timestamps: StrictBool = False
    """Segments carry `words`, each with its own times and probability."""
    live: StrictBool = False
    """Live mode: the stream is decoded as it arrives; the client also gets `partial`s and
    may send `commit` and `clear`."""
    vad: StrictBool = True
    """Voice activity: non-speech is skipped, never turned into words (files too)."""
    vad_pause_ms: int | None = Field(default=None, ge=MIN_PAUSE_MS, le=MAX_PAUSE_MS)
    """Silence that ends a live utterance (its tail is committed at once); None: the
    worker's default."""
    vad_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Speech probability above which a 32 ms frame is speech; None: the worker's default."""
    diarize: StrictBool = False
    """Speaker labels: each segment of the final carries `speaker` ("S1", "S2"…). Files
    only: the labels are found once every segment is known."""
    speakers: StrictInt | None = Field(default=None, ge=1, le=MAX_SPEAKERS)
    """How many speakers there are, when the caller knows (with `diarize`); None: the
    worker estimates it."""

    @model_validator(mode="after")
    def _speaker_options(self) -> Start:
        if self.speakers is not None and not self.diarize:
            raise ValueError("speakers is an option of diarize (send diarize: true)")
        if self.diarize and self.live:
            raise ValueError("diarize is for files, not live streams")
        return self

    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, self.format)

    def dumps(self) -> str:
        """Options left at their defaults are not sent: a broker that predates one of
        them takes the message as before."""
        options = self.model_dump(mode="json", exclude_defaults=True)
        return json.dumps({"type": self.type, **options}, separators=(",", ":"))


class Resume(_Message):
    type: Literal["resume"] = "resume"
    job_id: str = Field(min_length=1, max_length=64)


class End(_Message):
    type: Literal["end"] = "end"


class Commit(_Message):
    """Live only: the current utterance ends now (push-to-talk); its partial is committed."""

    type: Literal["commit"] = "commit"


class Clear(_Message):
    """Live only: drop the audio not committed yet (it is never transcribed)."""

    type: Literal["clear"] = "clear"


ClientMessage = Start | Resume | End | Commit | Clear
"""A text message from a client to the broker."""
CLIENT_TYPES = ("start", "resume", "end", "commit", "clear")
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)


# ---- broker → client -------------------------------------------------------------------


class Accepted(_Message):
    type: Literal["accepted"] = "accepted"
    job_id: str
    resume_from_frame: int = 0


class Ack(_Message):
    type: Literal["ack"] = "ack"
    frames: int


class _OmitsNone(BaseModel):
    """Fields that are None are left out of the JSON: a figure the engine did not
    report, or words nobody asked for, cost a client nothing."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class Word(BaseModel):
    """A word of a segment, timed in stream seconds (with `start.word_timestamps`)."""

    model_config = ConfigDict(allow_inf_nan=False, frozen=True)

    word: str
    start: float
    end: float
    probability: float


class Segment(_Message, _OmitsNone):
    type: Literal["segment"] = "segment"
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None


class Partial(_Message):
    """Live only: the text after the last committed segment, not final yet. Each partial
    replaces the one before; an empty `text` clears it."""

    type: Literal["partial"] = "partial"
    text: str
    start: float
    end: float
    closed: bool = Field(default=False, exclude=True)
    """The worker closed an utterance here (`wire_bodies.PartialBody.closed`): for edges
    that speak in turns; not part of the v1 message (never sent)."""
    speech_from: float | None = Field(default=None, exclude=True)
    """An utterance began here (`wire_bodies.PartialBody.speech_from`); never sent, like
    `closed`."""
    closing_at: float | None = Field(default=None, exclude=True)
    """The worker began closing the utterance here (`wire_bodies.PartialBody.closing_at`);
    never sent, like `closed`."""

    @property
    def only_marks(self) -> bool:
        """It marks where an utterance begins or ends for edges that speak in turns, and
        repeats the partial the client has: not for a client of the v1 protocol."""
        return self.speech_from is not None or self.closing_at is not None


CLIENT_SEGMENT_FIELDS = {"id", "start", "end", "text", "words"}
"""What a `segment` message carries of a segment: the decoding figures wait for `final`."""


class SegmentData(_OmitsNone):
    """A segment inside a `final` message or a stored transcript, with the engine's
    decoding figures as it reported them (what OpenAI's `verbose_json` shows)."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: int
    start: float
    end: float
    text: str
    seek: int | None = None
    """Where the window that decoded it began, in 10 ms mel frames of the stream."""
    tokens: list[int] | None = None
    """The engine's token ids of the segment, timestamp tokens included."""
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    words: list[Word] | None = None
    speaker: str | None = None
    """Who said it ("S1", "S2"… in order of first appearance), with `start.diarize`."""


class Final(_Message):
    type: Literal["final"] = "final"
    job_id: str
    text: str
    segments: list[SegmentData]
    language: str | None
    duration: float


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    detail: str
    retry_after: float | None = None

    @classmethod
    def from_exception(cls, exc: WhisperfarmError) -> Error:
        return cls(code=exc.code, detail=exc.detail, retry_after=getattr(exc, "retry_after", None))

    def dumps(self) -> str:
        return self.model_dump_json(exclude_none=True)


ServerMessage = Accepted | Ack | Segment | Partial | Final | Error
"""A text message from the broker to a client."""
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(
    Annotated[ServerMessage, Field(discriminator="type")]
)


def _load_json_object(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"text frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    return data


def describe_invalid(exc: ValidationError) -> str:
    """The first problem pydantic found, as `where: what`, for a `ProtocolError`."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one text frame from a client, or raise `ProtocolError` saying what is wrong."""
    if len(text) > MAX_TEXT_MESSAGE_BYTES:
        raise ProtocolError(f"text message larger than {MAX_TEXT_MESSAGE_BYTES} bytes")
    data = _load_json_object(text)
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            f"unknown message type {kind!r} (expected one of {', '.join(CLIENT_TYPES)})"
        )
    try:
        message = _client_adapter.validate_python(data)
    except ValidationError as exc:
        raise (
            _start_error(data, exc) if kind == "start" else ProtocolError(describe_invalid(exc))
        ) from None
    if isinstance(message, Start):
        message.audio_format()  # raises UnsupportedFormat for rates/channels out of range
    return message


def _start_error(data: dict[str, Any], exc: ValidationError) -> ProtocolError:
    """Name a format problem `unsupported_format`, anything else `bad_message`."""
    fields = {str(part) for e in exc.errors() if e["type"] != "missing" for part in e["loc"]}
    if fields & {"format", "sample_rate", "channels"}:
        return UnsupportedFormat(
            f"{describe_invalid(exc)} (formats s16le/f32le, "
            f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz, 1–{MAX_CHANNELS} channels)"
        )
    return ProtocolError(describe_invalid(exc))


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Parse one text frame from the broker (used by clients: source CLI, GUI, tests)."""
    data = _load_json_object(text)
    try:
        return _server_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(describe_invalid(exc)) from None
