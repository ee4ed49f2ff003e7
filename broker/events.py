"""Server-sent events hub: job and farm changes pushed to every subscriber.

Each subscriber has a bounded queue; one that cannot keep up is dropped (its client
reconnects and reloads), so a stalled browser never grows the broker's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0


class EventHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: dict[asyncio.Queue[str | None], str | None] = {}
        """Each subscriber's queue and the owner it may see (None: everything)."""
        self._queue_size = queue_size

    @property
    def watched(self) -> bool:
        """Whether anyone listens (building an event for nobody costs the hot path)."""
        return bool(self._subscribers)

    def publish(self, event: str, data: dict[str, Any], owner: str | None = None) -> None:
        """Send to every subscriber allowed to see `owner`'s data (None: public)."""
        message = self.format(event, data)
        for queue, allowed in list(self._subscribers.items()):
            if owner is not None and allowed is not None and allowed != owner:
                continue
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                log.info("dropping a slow event subscriber")
                self._subscribers.pop(queue, None)
                _end(queue)

    async def stream(
        self, snapshot: Callable[[], list[str]], owner: str | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield `snapshot()`, then every event published after it, with keep-alives.

        The snapshot is taken when the stream starts, in the same step that subscribes
        it: one taken earlier (when the request came in) missed every change between it
        and the response's start — a worker joining then was never shown."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(self._queue_size)
        self._subscribers[queue] = owner
        try:
            for message in snapshot():
                yield message
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.pop(queue, None)

    def close(self) -> None:
        for queue in list(self._subscribers):
            self._subscribers.pop(queue, None)
            _end(queue)

    @staticmethod
    def format(event: str, data: dict[str, Any]) -> str:
        return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _end(queue: asyncio.Queue[str | None]) -> None:
    """Replace whatever is pending with the end marker: the client reloads anyway."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
