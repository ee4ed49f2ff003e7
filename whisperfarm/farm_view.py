"""The farm at a glance (`/v1/farm` and the `farm` event): workers, streams in use, queue.

The broker builds it, the GUI reads it back with `FarmView.model_validate`; neither side
guesses at keys.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class WorkerView(BaseModel):
    """One connected worker as the broker sees it."""

    id: str
    """The worker's ZeroMQ identity, hex."""
    name: str
    engine: str
    model: str
    device: str
    slots: int
    busy: int
    """Streams it holds now."""
    metrics_port: int | None = None
    connected_at: float
    draining: bool = False
    """Finishing what it holds and taking nothing new (it is shutting down)."""


class StreamsView(BaseModel):
    """Streams admitted now against the farm's limit."""

    active: int = 0
    limit: int = 0


class FarmView(BaseModel):
    workers: list[WorkerView] = Field(default_factory=list)
    streams: StreamsView = Field(default_factory=StreamsView)
    queue: int = 0
    """Streams waiting for a worker slot."""
