"""Group commit: one file-system sync per round makes every waiting writer durable.

An `fsync` per stream per ack costs a disk flush each; with hundreds of streams the
flushes queue up behind each other (and behind asyncio's small default thread pool) and
acks and the `end` that waits for one fall seconds behind. Instead, callers wait for the
next round: the round flushes the file system once and answers all of them. While a
round runs, new callers gather for the next one, so a round always starts after the
write its callers wait for. (Transcripts are the opposite case: few and small, each
fsynced on its own commit thread, `Disk.commit`, so that a job's spool can go as soon
as its transcript is durable.)
"""

from __future__ import annotations

import asyncio

from broker.disk import Disk
from broker.spool import SpoolWriter


class GroupSync:
    """Each round is a `Disk.sync()`: it covers every write queued before it."""

    def __init__(self, disk: Disk) -> None:
        self._disk = disk
        self._waiting: list[asyncio.Future[None]] = []
        self._round: asyncio.Task[None] | None = None

    async def durable(self, spool: SpoolWriter) -> int:
        """Wait until what `spool` has written now is on disk; returns that many bytes.

        Pending packets are not included: flush the spool first.
        """
        written = spool.written
        await self.sync()
        if spool.error is not None:
            raise spool.error
        return written

    async def sync(self) -> None:
        """Wait until everything written before this call is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._round is None:
            self._round = asyncio.create_task(self._rounds())
        await future

    async def _rounds(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._disk.sync()
                except OSError as exc:  # pragma: no cover - syncfs fails only on I/O errors
                    for future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._round = None
