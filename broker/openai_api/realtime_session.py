"""A Realtime transcription session's settings, and the `session.update` rules.

What a client may set (OpenAI's GA shape, `session.audio.input`): `format`, `transcription`
(`model`, `language`, `prompt`) and `turn_detection` (`server_vad` with `threshold`,
`prefix_padding_ms`, `silence_duration_ms`; `semantic_vad`, served as `server_vad` with its
defaults: the farm has no turn-end model; or `null`: the client commits each turn).
Fields OpenAI's clients send that the farm has no use for (`noise_reduction`, `include`,
`create_response`, `eagerness`…) are accepted and ignored.

The farm's stream is opened with the first audio, so its audio format, model and
voice-activity settings are fixed from then on: a later `session.update` that changes them
is refused (`SessionError`). One that changes the language or the prompt is taken from the
next turn on (the worker's `RETUNE`), and one that switches between `server_vad` and manual
commits (same threshold and silence) at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker.openai_api.realtime_audio import FormatType, InputFormat
from whisperfarm.protocol import MAX_PAUSE_MS, MAX_PROMPT_CHARS, MIN_PAUSE_MS, Start

DEFAULT_MODEL = "whisper-1"
"""What a session shows when the client names no model (the farm's default model)."""


class SessionError(Exception):
    """A client event the session refuses: an `error` event, the connection stays open."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Format(_Loose):
    type: FormatType = "audio/pcm"
    rate: Literal[24000] | None = None


class _Transcription(_Loose):
    model: str | None = Field(default=None, min_length=1, max_length=200)
    language: str | None = Field(default=None, min_length=2, max_length=16)
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)


class _TurnDetection(_Loose):
    type: Literal["server_vad", "semantic_vad"]
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=MAX_PAUSE_MS)
    silence_duration_ms: int | None = Field(default=None, ge=MIN_PAUSE_MS, le=MAX_PAUSE_MS)


class _Input(_Loose):
    format: _Format | None = None
    transcription: _Transcription | None = None
    turn_detection: _TurnDetection | None = None


class _Audio(_Loose):
    input: _Input | None = None


class SessionUpdate(_Loose):
    """`session.update`'s `session`, checked once."""

    type: Literal["transcription"]
    audio: _Audio | None = None


@dataclass(frozen=True)
class Vad:
    """`server_vad` as the farm runs it (the stream's voice-activity pause and threshold)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def as_dict(self) -> dict[str, Any]:
        return {"type": "server_vad", **self.__dict__}


@dataclass
class Session:
    id: str = field(default_factory=lambda: f"sess_{uuid.uuid4().hex[:24]}")
    format: InputFormat = field(default_factory=lambda: InputFormat("audio/pcm"))
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    vad: Vad | None = Vad()
    """None: no turn detection, the client commits each turn."""
    stream_vad: Vad = Vad()
    """The voice-activity settings the farm's stream runs with (the last `server_vad`)."""

    def update(self, session: dict[str, Any], started: bool) -> None:
        """Apply a client's `session.update` (`started`: audio has gone to the farm)."""
        try:
            update = SessionUpdate.model_validate(session)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("session", *first["loc"]))
            raise SessionError(f"{where}: {first['msg']}", where) from None
        given = update.audio.input if update.audio is not None else None
        if given is None:
            return
        new = replace(self)
        if given.format is not None:
            new.format = InputFormat(given.format.type)
        if given.transcription is not None:
            t = given.transcription
            new.model, new.language, new.prompt = t.model, t.language, t.prompt
        if "turn_detection" in given.model_fields_set:
            new.vad = _vad(given.turn_detection)
            new.stream_vad = new.vad or self.stream_vad
        if started:
            _check_fixed(self, new)
        self.__dict__.update(new.__dict__)

    def start(self) -> Start:
        """The farm's live stream for this session."""
        return Start(
            name="realtime", sample_rate=self.format.rate, live=True, vad=True,
            language=self.language, prompt=self.prompt,
            model=self.model, vad_pause_ms=self.stream_vad.silence_duration_ms,
            vad_threshold=self.stream_vad.threshold,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The session as `session.created` and `session.updated` show it."""
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": self.id,
            "audio": {
                "input": {
                    "format": self.format.as_dict(),
                    "transcription": {
                        "model": self.model or DEFAULT_MODEL,
                        "language": self.language,
                        "prompt": self.prompt,
                    },
                    "turn_detection": None if self.vad is None else self.vad.as_dict(),
                    "noise_reduction": None,
                }
            },
            "include": None,
        }


def _vad(given: _TurnDetection | None) -> Vad | None:
    """`semantic_vad` runs as `server_vad` with its defaults."""
    if given is None:
        return None
    if given.type == "semantic_vad":
        return Vad()
    return replace(Vad(), **given.model_dump(exclude={"type"}, exclude_none=True))


def _check_fixed(old: Session, new: Session) -> None:
    """What the farm's open stream cannot change: its audio format, its model and its
    voice-activity settings."""
    where = "session.audio.input"
    if new.format != old.format:
        raise SessionError(
            f"the audio format cannot change once audio has been sent (it is "
            f"{old.format.type} at {old.format.rate} Hz)",
            f"{where}.format",
        )
    if new.model != old.model:
        raise SessionError(
            "the transcription model cannot change once audio has been sent",
            f"{where}.transcription.model",
        )
    if new.stream_vad != old.stream_vad:
        raise SessionError(
            "turn_detection's threshold and silence_duration_ms cannot change once audio "
            "has been sent",
            f"{where}.turn_detection",
        )
