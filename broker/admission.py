"""Admission control: at most `limit` streams at once, check-and-take in one step.

Everything runs on the broker's event loop and `try_acquire()` never awaits, so two
clients arriving at the same instant cannot both see the last free slot.
"""

from __future__ import annotations

from broker import metrics
from whisperfarm.errors import Overloaded


class Admission:
    def __init__(self, limit: int, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0
        metrics.STREAMS_LIMIT.set(limit)

    def acquire(self, kind: str) -> None:
        """Take a slot or raise `Overloaded` (with the retry hint for the client)."""
        if self.active >= self.limit:
            metrics.STREAMS_REJECTED.labels(reason="overloaded").inc()
            raise Overloaded(self.retry_after)
        self.active += 1
        metrics.STREAMS_ADMITTED.labels(kind=kind).inc()
        metrics.STREAMS_ACTIVE.set(self.active)

    def release(self) -> None:
        self.active = max(0, self.active - 1)
        metrics.STREAMS_ACTIVE.set(self.active)
