"""Settings of the source CLI: flags mirror the fields, env vars use `WHISPERFARM_SOURCE_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import CliPositionalArg, SettingsConfigDict

from whisperfarm.protocol import STREAM_PATH
from whisperfarm.settings import ComponentSettings

DEFAULT_URL = f"ws://127.0.0.1:8000{STREAM_PATH}"


class SourceSettings(ComponentSettings):
    """Transcribe files on a whisperfarm. Exit: 0 done, 2 unreadable, 3 overloaded, 4 failed."""

    # The docstring above is the CLI's --help description (pydantic-settings shows it as is).

    model_config = SettingsConfigDict(env_prefix="WHISPERFARM_SOURCE_", cli_hide_none_type=True)

    files: CliPositionalArg[list[Path]] = Field(
        description="audio or video files to transcribe (anything ffmpeg reads)"
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

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        """Catch an http:// or bare host:port URL here, not as a confusing handshake error."""
        if not url.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return url
