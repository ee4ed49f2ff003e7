"""Group commit for spools: one sync per round makes every waiting stream durable.

An `fsync` per stream per ack costs a disk flush each; with hundreds of streams the
flushes queue up behind each other (and behind asyncio's small default thread pool) and
acks — and the `end` that waits for one — fall seconds behind. Instead, callers wait for
the next round: the round notes every waiting spool's size, flushes the file system once,
and answers all of them. While a round runs, new callers gather for the next one.
"""

from __future__ import annotations

import asyncio
import os

from broker.spool import SpoolWriter


class GroupSync:
    def __init__(self) -> None:
        self._waiting: list[tuple[SpoolWriter, asyncio.Future[int]]] = []
        self._round: asyncio.Task[None] | None = None

    async def durable(self, spool: SpoolWriter) -> int:
        """Wait until what `spool` holds now is on disk; returns that many bytes."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((spool, future))
        if self._round is None:
            self._round = asyncio.create_task(self._rounds())
        return await future

    async def _rounds(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                sizes = [spool.size for spool, _ in batch]
                try:
                    await asyncio.to_thread(os.sync)
                except OSError as exc:  # pragma: no cover - os.sync does not fail on Linux
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), size in zip(batch, sizes, strict=True):
                    if not future.done():
                        future.set_result(size)
        finally:
            self._round = None
