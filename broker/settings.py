"""Broker settings: CLI flags mirror the fields, env vars use `WHISPERFARM_BROKER_`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from whisperfarm.settings import ComponentSettings


class BrokerSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="WHISPERFARM_BROKER_")

    host: str = Field("127.0.0.1", description="address for HTTP/WebSocket")
    port: int = Field(8000, ge=0, le=65535, description="HTTP/WebSocket port (0 = pick one)")
    zmq: str = Field(
        "tcp://127.0.0.1:5555",
        description="ZeroMQ ROUTER endpoint workers connect to (port * = pick one)",
    )
    data_dir: Path = Field(Path("data"), description="job store, spools and transcripts")
    max_active: int = Field(10, ge=1, description="streams admitted at once; the rest: overloaded")
    retry_after: float = Field(5.0, ge=0, description="seconds an overloaded client should wait")
    idle_timeout: float = Field(
        300.0, gt=0, description="seconds a silent or disconnected stream is kept before failing"
    )
    no_worker_timeout: float = Field(
        300.0, gt=0, description="seconds a stream may wait for a worker before failing"
    )
    max_stream_seconds: float = Field(
        4 * 3600, gt=0, description="longest audio one stream may send"
    )
    max_stream_bytes: int = Field(2 * 1024**3, gt=0, description="most bytes one stream may send")
    ack_every_packets: int = Field(
        16, ge=1, description="packets between durable-spool acknowledgements"
    )
    max_disk_backlog_mb: float = Field(
        64.0,
        gt=0,
        description="received audio (MB) waiting to be written to the spools above which the "
        "broker stops reading uploads until the disk has caught up (clients' sends wait)",
    )
    spool_retention: float = Field(
        0.0,
        description="seconds a finished job keeps its audio spool (0: delete once the "
        "transcript is durable; negative: keep forever)",
    )
    api_tokens: str = Field(
        "",
        description="comma-separated API bearer tokens, each `user:T` (or plain `T`: one "
        "person, its own jobs), `service:T` (acts for the person in X-Whisperfarm-User) or "
        "`admin:T` (every job); empty (and no file): auth off",
    )
    api_tokens_file: Path | None = Field(
        None, description="file with one API token per line (roles as in --api-tokens)"
    )
    max_streams_per_token: int = Field(
        0, ge=0, description="streams one token may have at once (0 = only --max-active)"
    )
    curve_secret_key: Path | None = Field(
        None,
        description="ZeroMQ CURVE: the broker's secret certificate (broker.key_secret); "
        "unset: no encryption between broker and workers",
    )
    curve_clients_dir: Path | None = Field(
        None,
        description="ZeroMQ CURVE: directory of worker public certificates allowed to "
        "connect (unset: any worker that knows the broker's public key)",
    )
    default_model: str = Field(
        "",
        description="model for streams and requests that name none, and what OpenAI's model "
        "names (whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe) stand for; empty: the "
        "model most connected workers serve",
    )
    max_upload_mb: float = Field(
        25, gt=0, description="largest file the OpenAI edge takes, in MiB (OpenAI's own limit)"
    )
    cors_origins: str = Field(
        "", description="comma-separated origins allowed to call the API from a browser ('*': any)"
    )
    heartbeat_interval: float = Field(1.0, gt=0, description="seconds between worker heartbeats")
    heartbeat_liveness: int = Field(
        3, ge=1, description="missed heartbeats before a worker is dead"
    )
