"""One thread for all of the broker's file-system work, done in the order it was asked.

On a busy disk, file-system calls block: an append that grows a file, an unlink or a
create waits for the journal while a sync commits it, for tens to hundreds of
milliseconds. Made on the event loop, every such wait stopped every stream at once
(at a thousand streams, a third of the loop's time went to `write` and `unlink`).
Made from asyncio's thread pool, the writes of one spool could pass each other, and
six threads ping-ponged the GIL with the loop.

So the loop hands the work to one thread and goes on. Order is the contract: a sync
asked for after a write covers that write, a read after a write sees it, a close
comes after the spool's last write. Callers that need a result await it; the rest
(appends, unlinks) are fire-and-forget, and an append's error is kept by its spool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Disk:
    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="disk")

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn` after everything queued so far; returns at once."""
        return self._thread.submit(functools.partial(fn, *args, **kwargs))

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Queue `fn` after everything queued so far and wait for its result."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def barrier(self) -> None:
        """Wait until everything queued so far is done (e.g. before reading a file's size)."""
        await self.run(_nothing)

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._thread.shutdown(wait=True)


def _nothing() -> None:
    pass
