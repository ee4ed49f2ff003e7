"""One thread for all of the broker's file-system work, done in the order it was asked.

On a busy disk, file-system calls block: an append that grows a file, an unlink or a
create waits for the journal while a sync commits it, for tens to hundreds of
milliseconds. Made on the event loop, every such wait stopped every stream at once
(at a thousand streams, a third of the loop's time went to `write` and `unlink`).
Made from asyncio's thread pool, the writes of one spool could pass each other, and
six threads ping-ponged the GIL with the loop.

So the loop hands the work to one thread and goes on. Order is the contract: a read
after a write sees it, a close comes after the spool's last write, and `sync()`
first waits for everything queued before it, so it covers those writes. Callers that
need a result await it; the rest (appends, unlinks) are fire-and-forget, and an
append's error is kept by its spool. The sync itself runs on a second thread: a
file-system sync under load takes tens of milliseconds, and appends must not queue
behind it. It is a `syncfs` of the data dir's file system, not `os.sync`, which flushes
every file system of the host.

Small files that must be durable at once (a transcript, before its `final` goes out)
have threads of their own, `commit`: a write, an fsync and a rename take about a
millisecond even while the spool streams 32 MB/s (measured here), but behind the
ordered queue's appends, or inside a file-system sync round, they waited 0.1–2 s at a
thousand streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


COMMIT_THREADS = 4
"""Transcripts committed at once: their fsyncs overlap (the file system merges them into
one journal commit), and at a hundred jobs finishing a second one thread fell behind."""


class Disk:
    def __init__(self, root: Path | None = None, max_backlog: int = 64 * 1024 * 1024) -> None:
        """`root`: a directory on the file system that `sync()` makes durable (None: all).
        `max_backlog`: bytes of appends waiting for the disk thread above which the disk
        counts as `congested` (see `append`)."""
        self._root = root
        self.max_backlog = max_backlog
        self._queued = 0  # bytes handed to `append`: only the loop writes it
        self._landed = 0  # bytes whose append has run: only the disk thread writes it
        self._went_over = False  # `append` passed `max_backlog` since `congested()` looked
        self._on_drained: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="disk")
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="disk-sync")
        self._janitor = ThreadPoolExecutor(1, thread_name_prefix="disk-janitor")
        self._committer = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="disk-commit")

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn` after everything queued so far; returns at once."""
        return self._thread.submit(functools.partial(fn, *args, **kwargs))

    def append(self, write: Callable[[bytes], None], data: bytes) -> None:
        """Queue `write(data)` (a spool's append) like `submit`, counting `data` in the
        `backlog` until it has run.

        Uploads can come faster than the disk takes them (clients that do not pace, a
        slow volume); without a bound the queue would hold it all in memory. Once the
        backlog passes `max_backlog` the farm stops reading uploads (`congested`) and
        reads again when it is back under half (`call_when_drained`): the clients' own
        sends wait, in TCP, and nothing is lost.
        """
        self._queued += len(data)
        self._went_over = self._went_over or self.backlog > self.max_backlog
        self._thread.submit(self._append, write, data)

    def _append(self, write: Callable[[bytes], None], data: bytes) -> None:  # disk thread
        try:
            write(data)
        finally:
            self._landed += len(data)
            if self._on_drained and self.backlog <= self.max_backlog // 2:
                loop = self._loop
                if loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop closed first
                        loop.call_soon_threadsafe(self._drained)

    @property
    def backlog(self) -> int:
        """Bytes of appends queued and not yet written."""
        return self._queued - self._landed

    def congested(self) -> bool:
        """Whether the backlog is over `max_backlog`, or went over since the last look:
        the disk thread may have caught up by the time the loop looks, and the append
        that went over should still slow its upload down (cheaply: a hold released on
        the next turn)."""
        went_over, self._went_over = self._went_over, False
        return went_over or self.backlog > self.max_backlog

    def call_when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback()` on the running loop once the backlog is back under half of
        `max_backlog` (at once, on the next turn, if it already is)."""
        self._loop = asyncio.get_running_loop()
        self._on_drained.append(callback)
        if self.backlog <= self.max_backlog // 2:
            self._loop.call_soon(self._drained)

    def _drained(self) -> None:
        if self.backlog > self.max_backlog // 2:
            return  # congested again meanwhile: the next append that lands calls back
        callbacks, self._on_drained = self._on_drained, []
        for callback in callbacks:
            callback()

    async def drained(self) -> None:
        """Wait until the backlog is back under half of `max_backlog`."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_when_drained(wake)
        await done

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Queue `fn` after everything queued so far and wait for its result."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def commit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Start a small durable write (`fn` fsyncs what it writes) on a commit thread,
        outside the ordered queue: it must not touch a file that queued work writes."""
        return self._committer.submit(functools.partial(fn, *args, **kwargs))

    async def create(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn`, a small call that creates files (a job's directory and spool), on a
        commit thread and wait for it: a create waits for the journal on a busy disk, and
        made on the loop it stopped every stream; behind the ordered queue it would wait
        for every spool's appends. `fn` must not touch a file that queued work writes."""
        return await asyncio.wrap_future(self.commit(fn, *args, **kwargs))

    def discard(self, path: Path) -> None:
        """Delete a file some time soon, off the ordered queue: an unlink frees blocks
        (milliseconds on a busy disk) and no write waits for it."""
        self._janitor.submit(_remove_quietly, path)

    async def barrier(self) -> None:
        """Wait until everything queued so far is done (e.g. before reading a file's size)."""
        await self.run(_nothing)

    async def sync(self) -> None:
        """Make everything queued so far durable: one file-system sync."""
        await self.barrier()
        await asyncio.wrap_future(self._syncer.submit(sync_file_system, self._root))

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        self._thread.shutdown(wait=True)
        self._syncer.shutdown(wait=True)
        self._janitor.shutdown(wait=True)
        self._committer.shutdown(wait=True)


def call_when_done(future: Future[T], callback: Callable[[Future[T]], None]) -> None:
    """Call `callback(future)` on the running loop once a thread has finished `future`.

    One turn of the loop, where awaiting `asyncio.wrap_future` in a task takes three
    (the future's state copied over, then the task woken, then it runs); on a loop
    busy with a thousand streams each turn is milliseconds.
    """
    loop = asyncio.get_running_loop()

    def on_thread(done: Future[T]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits
            loop.call_soon_threadsafe(callback, done)

    future.add_done_callback(on_thread)


def sync_file_system(root: Path | None) -> None:
    """`syncfs(2)` of the file system holding `root` where the C library has it (Linux);
    `os.sync()` elsewhere or without a root."""
    if root is None or _syncfs is None:
        os.sync()
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(root))
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # pragma: no cover - a libc without syncfs
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs  # type: ignore[no-any-return]


_syncfs = _load_syncfs()


def _nothing() -> None:
    pass


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
