"""Admission control: at most `limit` streams at once, check-and-take in one step.

Everything runs on the broker's event loop and `acquire()` never awaits, so two
clients arriving at the same instant cannot both see the last free slot.
"""

from __future__ import annotations

import collections

from broker import metrics
from whisperfarm.errors import Overloaded


class Admission:
    def __init__(self, limit: int, retry_after: float, per_owner: int = 0) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.per_owner = per_owner
        self.active = 0
        self._by_owner: collections.Counter[str] = collections.Counter()
        metrics.STREAMS_LIMIT.set(limit)

    def acquire(self, kind: str, owner: str | None = None) -> None:
        """Take a slot or raise `Overloaded` (with the retry hint for the client)."""
        if self.active >= self.limit:
            metrics.STREAMS_REJECTED.labels(reason="overloaded").inc()
            raise Overloaded(self.retry_after)
        if owner is not None and self.per_owner and self._by_owner[owner] >= self.per_owner:
            metrics.STREAMS_REJECTED.labels(reason="token_limit").inc()
            raise Overloaded(
                self.retry_after, f"Too many streams for this token ({self.per_owner}), try later"
            )
        self.active += 1
        if owner is not None:
            self._by_owner[owner] += 1
        metrics.STREAMS_ADMITTED.labels(kind=kind).inc()
        metrics.STREAMS_ACTIVE.set(self.active)

    def release(self, owner: str | None = None) -> None:
        self.active = max(0, self.active - 1)
        if owner is not None and self._by_owner[owner] > 0:
            self._by_owner[owner] -= 1
        metrics.STREAMS_ACTIVE.set(self.active)


class Reservation:
    """A slot taken when a client connects, for a stream opened once the client has said
    what it sends (the Realtime edge learns the audio format after the connection
    opens). `Farm.open` takes it over; an edge whose client leaves first releases it."""

    def __init__(self, admission: Admission, owner: str | None) -> None:
        self._admission, self.owner = admission, owner
        self._held = True

    def take_over(self) -> None:
        """The stream opened: its run holds the slot now (released when it finishes)."""
        self._held = False

    def release(self) -> None:
        """Give the slot back, once (a no-op after `take_over`)."""
        if self._held:
            self._held = False
            self._admission.release(self.owner)
