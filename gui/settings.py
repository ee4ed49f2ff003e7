"""GUI settings: CLI flags mirror the fields, env vars use `WHISPERFARM_GUI_`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from whisperfarm.protocol import STREAM_PATH
from whisperfarm.settings import ComponentSettings
from whisperfarm.tokens import Role, parse_token

MAX_FILES_LIMIT = 10
"""The issue's promise: up to 10 files in one drop."""
MIN_LIVE_RATE, MAX_LIVE_RATE = 8_000, 192_000
"""The broker's bounds for a stream's sample rate."""


class GuiSettings(ComponentSettings):
    """Browser front end of a whisperfarm: upload files, watch jobs, read transcripts."""

    model_config = SettingsConfigDict(env_prefix="WHISPERFARM_GUI_", cli_hide_none_type=True)

    host: str = Field("127.0.0.1", description="address the web UI listens on")
    port: int = Field(8080, ge=0, le=65535, description="web UI port (0 = pick one)")
    broker: str = Field(
        "http://127.0.0.1:8000", description="broker base URL (REST, events and /v1/stream)"
    )
    data_dir: Path = Field(
        Path("data/gui"),
        description="the GUI's own storage: rejected rows, files kept for retry, sessions",
    )
    max_files: int = Field(
        MAX_FILES_LIMIT, ge=1, le=MAX_FILES_LIMIT, description="files accepted in one upload"
    )
    broker_token: str | None = Field(
        None,
        description="API token the GUI presents to a broker that requires one; written "
        "`service:TOKEN` (and so listed at the broker), the GUI acts for each person and "
        "each sees only their own jobs",
    )
    login_tokens: str = Field(
        "",
        description="comma-separated API tokens people sign in with (empty: no sign-in page)",
    )
    storage_secret: str | None = Field(
        None, description="secret signing browser sessions (unset: one kept in --data-dir)"
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="seconds to reach the broker before calling it down"
    )
    retries: int = Field(
        3, ge=0, le=100, description="reconnects with resume after a dropped upload"
    )
    live_sample_rate: int = Field(
        16_000,
        description="rate the live page sends its microphone at (0: the device's own rate)",
    )

    @field_validator("live_sample_rate")
    @classmethod
    def _live_rate(cls, rate: int) -> int:
        if rate != 0 and not MIN_LIVE_RATE <= rate <= MAX_LIVE_RATE:
            raise ValueError(f"must be 0 or {MIN_LIVE_RATE}–{MAX_LIVE_RATE}")
        return rate

    @field_validator("broker")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    @property
    def broker_bearer(self) -> str | None:
        """The token itself, without its role."""
        return parse_token(self.broker_token)[1] if self.broker_token else None

    @property
    def per_person(self) -> bool:
        """Whether the GUI names each person to the broker: its token is a service's, or
        the broker takes none (then the header alone keeps people apart)."""
        return self.broker_token is None or parse_token(self.broker_token)[0] is Role.SERVICE

    @property
    def login_token_list(self) -> list[str]:
        return [t.strip() for t in self.login_tokens.replace("\n", ",").split(",") if t.strip()]

    @property
    def stream_url(self) -> str:
        """The broker's WebSocket endpoint, derived from its HTTP base URL."""
        return "ws" + self.broker.removeprefix("http") + STREAM_PATH
