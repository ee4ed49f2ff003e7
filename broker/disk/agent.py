"""The broker's disk agent: a child process that does all of the broker's file writes.

    python -m broker.disk [SYNC_ROOT]

Requests come on stdin and answers go to stdout (`broker.disk.wire`); the broker
starts one agent and talks to it through `broker.disk.Disk`. Why a process and not
threads in the broker: a thread that writes a spool or a transcript needs the GIL
between its system calls, and every time it takes it the broker's event loop waits
(the switch interval, then the thread's Python), which at a thousand streams is the
largest part of the broker's p99 latency (bench/RESULTS.md). Made by the agent, the
writes cost the loop one pipe write each, and block only the agent.

Inside, threads, each with its part of the contract:
- one **ordered** thread: appends, closes, reads and barriers run in the order asked
  (a read after a write sees it, a close comes after the spool's last append);
- a **sync** thread: `SYNC` waits for everything ordered before it, then `syncfs` of
  the data dir runs there, so appends never queue behind a sync;
- **commit** threads: opens (a create waits for the journal on a busy disk) and
  transcripts (write, fsync, rename, directory fsync), outside the ordered queue;
- **reader** threads: whole-file reads (a transcript asked for over REST), outside the
  ordered queue and beside the commits, so a download waits for neither;
- a **janitor**: unlinks of expired spools.

The agent exits once stdin closes (the broker stopped, or died) and everything asked
has been done. It ignores SIGINT: a Ctrl-C in a terminal reaches the whole process
group, and the broker, which closes stdin when it has stopped, decides when it ends.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from broker.disk.wire import (
    TWO_U64,
    U64,
    FrameReader,
    Op,
    error_body,
    frame,
)
from whisperfarm.files import write_atomic

COMMIT_THREADS = 4
"""Transcripts and opens at once: their fsyncs overlap (the file system merges them into
one journal commit); at a hundred jobs finishing a second one thread fell behind."""
LANDED_EVERY_S = 0.02
"""How often, at most, the agent reports the bytes its appends have landed (the broker's
backlog goes by it): a notice per append would be a thousand a second."""
READ_THREADS = 2
"""Whole-file reads at once: a slow read (a cold file on a busy disk) holds up only one."""
READ_SIZE = 1 << 20


class Agent:
    """Carries out the requests; answers through `reply`."""

    def __init__(self, sync_root: Path | None, out_fd: int) -> None:
        self._sync_root = sync_root
        self._out_fd = out_fd
        self._out_lock = threading.Lock()
        self._files: dict[int, BinaryIO] = {}
        self._failed: set[int] = set()
        self._landed = 0  # only the ordered thread adds to it
        self._reported = 0
        self._reported_at = 0.0
        self._report_lock = threading.Lock()
        self._ordered: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._ordered_thread = threading.Thread(target=self._run_ordered, name="ordered")
        self._ordered_thread.start()
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="sync")
        self._committer = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="commit")
        self._janitor = ThreadPoolExecutor(1, thread_name_prefix="janitor")
        self._reader = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="reader")

    # ---- requests (the reader thread) ----------------------------------------------

    def handle(self, op: Op, tag: int, body: bytes) -> None:
        if op is Op.APPEND:
            self._ordered.put(lambda: self._append(tag, body))
        elif op is Op.OPEN:
            self._committer.submit(self._answered, tag, self._open, body)
        elif op is Op.CLOSE:
            self._ordered.put(lambda: self._answered(tag, self._close, body))
        elif op is Op.READ:
            self._ordered.put(lambda: self._answered(tag, self._read, body))
        elif op is Op.BARRIER:
            self._ordered.put(lambda: self._answered(tag, _nothing, body))
        elif op is Op.SYNC:
            self._ordered.put(lambda: self._start_sync(tag))
        elif op is Op.COMMIT:
            self._committer.submit(self._answered, tag, _commit, body)
        elif op is Op.DISCARD:
            self._janitor.submit(_remove_quietly, Path(os.fsdecode(body)))
        elif op is Op.SIZE:
            self._ordered.put(lambda: self._answered(tag, _size, body))
        elif op is Op.READ_FILE:
            self._reader.submit(self._answered, tag, _read_file, body)
        else:
            raise ValueError(f"not a request: {op!r}")

    def _start_sync(self, tag: int) -> None:  # ordered thread: what came before is written
        self._syncer.submit(self._answered, tag, self._sync, b"")

    def finish(self) -> None:
        """Do everything asked so far, then stop the threads and close the files."""
        self._ordered.put(None)
        self._ordered_thread.join()
        for pool in (self._committer, self._syncer, self._janitor, self._reader):
            pool.shutdown(wait=True)
        for file in self._files.values():
            file.close()
        self._report_landed()

    # ---- the work ---------------------------------------------------------------

    def _answered(self, tag: int, work: Callable[[bytes], bytes], body: bytes) -> None:
        """Run `work(body)`; reply OK with what it returns, or FAILED with its OSError."""
        try:
            op, answer = Op.OK, work(body)
        except OSError as exc:
            op, answer = Op.FAILED, error_body(exc)
        self._report_landed()  # a barrier's caller may look at the backlog next
        self.reply(op, tag, answer)

    def _open(self, body: bytes) -> bytes:
        handle, keep = TWO_U64.unpack_from(body)
        path = Path(os.fsdecode(body[TWO_U64.size :]))
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "ab", buffering=0)  # noqa: SIM115 - lives until its CLOSE
        if keep < file.tell():
            file.truncate(keep)
            file.seek(keep)
        self._files[handle] = file
        return U64.pack(file.tell())

    def _append(self, handle: int, data: bytes) -> None:  # ordered thread
        try:
            if handle in self._failed:
                return  # never leave a hole: after a failed write, nothing more is appended
            try:
                self._files[handle].write(data)
            except OSError as exc:
                self._failed.add(handle)
                self.reply(Op.SPOOL_FAILED, handle, error_body(exc))
        finally:
            self._landed += len(data)

    def _close(self, body: bytes) -> bytes:  # ordered thread
        handle, sync = TWO_U64.unpack_from(body)
        failed = handle in self._failed
        self._failed.discard(handle)
        file = self._files.pop(handle)
        try:
            if sync and not failed:
                os.fsync(file.fileno())
        finally:
            file.close()
        return b""

    def _read(self, body: bytes) -> bytes:  # ordered thread
        offset, length = TWO_U64.unpack_from(body)
        with open(os.fsdecode(body[TWO_U64.size :]), "rb") as file:
            file.seek(offset)
            return file.read(length)

    def _sync(self, body: bytes) -> bytes:  # sync thread
        sync_file_system(self._sync_root)
        return b""

    def _run_ordered(self) -> None:
        """The ordered queue; reports landed bytes at most every `LANDED_EVERY_S`, and
        once the queue runs dry."""
        while True:
            unreported = self._landed != self._reported
            try:
                item = self._ordered.get(timeout=LANDED_EVERY_S if unreported else None)
            except queue.Empty:
                self._report_landed()
                continue
            if item is None:
                return
            try:
                item()
            except Exception as exc:  # a bug, not a disk error: keep serving the others
                print(f"whisperfarm disk agent: {exc!r}", file=sys.stderr)
            if time.monotonic() - self._reported_at >= LANDED_EVERY_S:
                self._report_landed()

    def _report_landed(self) -> None:
        with self._report_lock:
            landed = self._landed
            if landed != self._reported:
                self._reported, self._reported_at = landed, time.monotonic()
                self.reply(Op.LANDED, landed)

    def reply(self, op: Op, tag: int, body: bytes = b"") -> None:
        data = memoryview(frame(op, tag, body))
        with self._out_lock:
            try:
                while data:
                    data = data[os.write(self._out_fd, data) :]
            except BrokenPipeError:
                pass  # the broker is gone: the work is done all the same, nobody waits


def _commit(body: bytes) -> bytes:  # commit thread
    (length,) = U64.unpack_from(body)
    start = U64.size
    path = Path(os.fsdecode(body[start : start + length]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, body[start + length :])
    return b""


def _nothing(body: bytes) -> bytes:
    return b""


def _size(body: bytes) -> bytes:  # ordered thread
    return U64.pack(os.stat(os.fsdecode(body)).st_size)


def _read_file(body: bytes) -> bytes:  # reader thread
    with open(os.fsdecode(body), "rb") as file:
        return file.read()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        print(f"whisperfarm disk agent: could not remove {path}: {exc}", file=sys.stderr)


def sync_file_system(root: Path | None) -> None:
    """`syncfs(2)` of the file system holding `root` where the C library has it (Linux);
    `os.sync()` elsewhere or without a root (`os.sync` flushes every file system of the
    host)."""
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


LOCK_NAME = ".disk-agent.lock"
"""In the data dir: held by the agent while it runs."""


def wait_for_predecessor(root: Path) -> int:
    """Hold the data dir's agent lock, waiting for an agent that still runs: a broker
    killed with appends queued leaves its agent writing them for a moment, and its
    successor must not read a spool's size (or cut a spool) before that agent is done."""
    fd = os.open(root / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"whisperfarm disk agent: waiting for the previous agent on {root} to finish",
              file=sys.stderr, flush=True)  # fmt: skip
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = Path(argv[0]) if argv and argv[0] else None
    if root is not None:
        wait_for_predecessor(root)  # held until this process exits
    agent = Agent(root, sys.stdout.fileno())
    reader = FrameReader()
    stdin = sys.stdin.fileno()
    try:
        while data := os.read(stdin, READ_SIZE):
            for op, tag, body in reader.feed(data):
                agent.handle(op, tag, body)
    finally:
        agent.finish()
    return 0
