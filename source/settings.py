"""Settings of the source CLI: flags mirror the fields, env vars use `WHISPERFARM_SOURCE_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import CliPositionalArg, SettingsConfigDict

from whisperfarm.protocol import MAX_PAUSE_MS, MAX_SPEAKERS, MIN_PAUSE_MS, STREAM_PATH
from whisperfarm.settings import ComponentSettings
from whisperfarm.streaming.client import ClientOptions

DEFAULT_URL = f"ws://127.0.0.1:8000{STREAM_PATH}"


class SourceSettings(ComponentSettings):
    """Transcribe files or a microphone. Exit: 0 done, 2 no input, 3 overloaded, 4 failed."""

    # The docstring above is the CLI's --help description (pydantic-settings shows it as is).

    model_config = SettingsConfigDict(env_prefix="WHISPERFARM_SOURCE_", cli_hide_none_type=True)

    files: CliPositionalArg[list[Path]] = Field(
        [],
        description="audio or video files to transcribe (anything ffmpeg reads)",
    )
    realtime: bool = Field(
        False,
        description="live: send the one file paced at real time, showing the words as they "
        "are decided",
    )
    mic: bool = Field(False, description="live: transcribe the microphone until Ctrl-C")
    mic_device: str | None = Field(
        None,
        min_length=1,
        description="the microphone for --mic: an index or part of a name from --list-devices "
        "(unset: the default input)",
    )
    list_devices: bool = Field(False, description="list the audio input devices and exit")
    vad: bool = Field(
        True, description="voice activity: non-speech is skipped, silence gives no text"
    )
    pause_ms: int | None = Field(
        None,
        ge=MIN_PAUSE_MS,
        le=MAX_PAUSE_MS,
        description="live: a pause this long (ms) ends an utterance and commits its words "
        "(unset: the farm's default)",
    )
    url: str = Field(DEFAULT_URL, description="WebSocket stream endpoint of the broker")
    out: Path = Field(Path("."), description="directory for <stem>.txt and <stem>.json")
    language: str | None = Field(
        None,
        min_length=2,
        max_length=16,
        description="language code of the speech (en, ru, ...); unset: the model detects it",
    )
    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="transcribe, or translate into English"
    )
    word_timestamps: bool = Field(
        False, description="ask for each word's start and end (kept in <stem>.json)"
    )
    diarize: bool = Field(
        False, description="label each segment with its speaker (S1, S2, ...; files, not live)"
    )
    speakers: int | None = Field(
        None,
        ge=1,
        le=MAX_SPEAKERS,
        description="with --diarize: how many speakers there are (unset: the farm estimates it)",
    )
    quiet: bool = Field(False, description="print only transcripts and errors")
    retries: int = Field(
        3,
        ge=0,
        le=100,
        description="reconnects with resume after a dropped connection (in a row without progress)",
    )
    retry_delay: float = Field(
        1.0, gt=0, le=60, description="seconds before the first reconnect, doubled each time"
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="seconds to open the WebSocket before giving up"
    )
    token: str | None = Field(
        None, description="API token, when the farm requires one (env WHISPERFARM_SOURCE_TOKEN)"
    )
    jobs: int = Field(
        0, ge=0, description="at most this many files stream at once (0: all of them)"
    )
    log_level: str = Field("WARNING", description="log level of the CLI's own diagnostics")

    @property
    def live(self) -> bool:
        return self.mic or self.realtime

    def client_options(self) -> ClientOptions:
        return ClientOptions(
            url=self.url,
            language=self.language,
            task=self.task,
            word_timestamps=self.word_timestamps,
            retries=self.retries,
            retry_delay=self.retry_delay,
            connect_timeout=self.connect_timeout,
            token=self.token,
            live=self.live,
            vad=self.vad,
            vad_pause_ms=self.pause_ms,
            diarize=self.diarize,
            speakers=self.speakers,
        )

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        """Files, the microphone or the device list: the flag at fault named, as for a value."""
        if self.list_devices and (self.files or self.live):
            raise _usage("list_devices", "lists the devices and exits: no files, --mic, --realtime")
        if self.mic and self.files:
            raise _usage("mic", "takes no files (the microphone is the input)")
        if self.mic and self.realtime:
            raise _usage("realtime", "is for a file; --mic is live already")
        if self.mic_device is not None and not self.mic:
            raise _usage("mic_device", "picks the microphone of --mic")
        if self.realtime and len(self.files) != 1:
            raise _usage("realtime", f"plays one file (got {len(self.files)})")
        if self.speakers is not None and not self.diarize:
            raise _usage("speakers", "is an option of --diarize")
        if self.diarize and self.live:
            raise _usage("diarize", "is for files, not --mic or --realtime")
        if not (self.files or self.mic or self.list_devices):
            raise _usage("files", "give files to transcribe, or --mic, or --list-devices")
        return self

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        """Catch an http:// or bare host:port URL here, not as a confusing handshake error."""
        if not url.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return url


def _usage(field: str, message: str) -> ValidationError:
    """A usage error on `field`, reported like any invalid value (`ComponentSettings.from_cli`)."""
    error = PydanticCustomError("usage", message)
    return ValidationError.from_exception_data(
        "SourceSettings", [InitErrorDetails(type=error, loc=(field,), input=None)]
    )
