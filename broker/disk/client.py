"""All of the broker's file-system work, done by a child process, in the order asked.

On a busy disk, file-system calls block: an append that grows a file, an unlink or a
create waits for the journal while a sync commits it, for tens to hundreds of
milliseconds. Made on the event loop, every such wait stops every stream at once;
made from threads of the broker, each thread takes the GIL back after every system call
and the loop waits for it each time, which at a thousand streams dominates the broker's
p99 latency (`bench/RESULTS.md`). So the broker hands the work to its disk agent
(`broker.disk.agent`), a process of its own, and goes on: a request is one write to a
pipe, an answer one read.

Order is the contract: a read after an append sees it, a
close comes after the spool's last append, and `sync()` first waits for everything
queued before it, so it covers those appends. Callers that need a result await it;
appends and discards are fire-and-forget, and an append's error is kept for its spool
(`spool_error`). The sync itself (`syncfs` of the data dir's file system) runs beside
the ordered work, so appends never queue behind it. Transcripts (`commit`) and opens
have threads of their own in the agent: an upload waits for its spool's open, and
behind the ordered queue a transcript (and the spool kept until it is durable) would
wait for every spool's appends. A whole-file read (`read_file`) has threads of its own
too; a file's `size` is ordered, like a barrier.

If the agent dies, everything waiting on it fails with `DiskAgentGone` (an OSError;
`size` and `read_file` ask the next agent instead), every open spool counts as failed
(the farm interrupts their uploads: the clients resume from what the dead agent had
written), and the next request starts a new agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from broker import metrics
from broker.disk.wire import (
    HEADER,
    TWO_U64,
    U64,
    FrameReader,
    Op,
    frame,
    parse_error,
    path_body,
)

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20
"""The pipe to the agent holds this much (Linux: `F_SETPIPE_SZ`; 64 KiB by default),
so a burst of flushes does not wait in the loop's write buffer."""
STOP_TIMEOUT_S = 60.0
"""How long `close()` waits for the agent to finish what is queued."""


class DiskAgentGone(OSError):
    """The disk agent exited before answering."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EIO, detail)


class Disk:
    """The broker's side of its disk agent: requests out, answers to their futures."""

    def __init__(self, root: Path | None = None, max_backlog: int = 64 * 1024 * 1024) -> None:
        """`root`: a directory on the file system that `sync()` makes durable (None: all).
        `max_backlog`: bytes of appends handed to the agent and not yet written above
        which the disk counts as `congested` (see `append`)."""
        self._root = root
        self.max_backlog = max_backlog
        self._queued = 0  # bytes handed to `append`
        self._landed = 0  # of those, bytes the agent has written (or failed to)
        self._landed_before = 0  # `_queued` when the running agent started: it counts from 0
        self._went_over = False  # `append` passed `max_backlog` since `congested()` looked
        self._on_drained: list[Callable[[], None]] = []
        self._tags = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future[bytes], str]] = {}
        self._handles: set[int] = set()  # spools open in the running agent
        self._spool_errors: dict[int, OSError] = {}
        self._agent: _AgentPipe | None = None
        self._starting: asyncio.Task[_AgentPipe] | None = None
        self._closing = False
        self._background: set[asyncio.Future[None]] = set()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the agent (requests made before this fail), and wait until it serves:
        an agent of a broker that was killed may still be writing what it was handed,
        and the new one waits for it (`agent.wait_for_predecessor`)."""
        await self.barrier()

    @property
    def agent_pid(self) -> int | None:
        return self._agent.pid if self._agent is not None else None

    async def close(self) -> None:
        """Let the agent finish what is queued (the spools' last appends and closes),
        then stop it."""
        self._closing = True
        agent = self._agent
        if agent is None:
            return
        agent.stdin.close()  # the agent's cue to finish and exit
        try:
            await asyncio.wait_for(asyncio.shield(agent.exited), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("the disk agent did not finish within %g s; killing it", STOP_TIMEOUT_S)
            agent.transport.kill()

    async def _ensure_agent(self) -> _AgentPipe:
        dying = self._agent
        if dying is not None and dying.stdin.is_closing():  # exited, not yet reaped
            await asyncio.shield(dying.exited)
        if self._agent is not None:
            return self._agent
        if self._closing:
            raise DiskAgentGone("the broker is stopping")
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._spawn())
        try:
            return await asyncio.shield(self._starting)
        finally:
            self._starting = None

    async def _spawn(self) -> _AgentPipe:
        loop = asyncio.get_running_loop()
        args = [sys.executable, "-m", "broker.disk", str(self._root or "")]
        transport, pipe = await loop.subprocess_exec(
            lambda: _AgentPipe(self, loop), *args, stdin=-1, stdout=-1, stderr=None
        )
        del transport  # the pipe keeps it
        _widen_pipe(pipe.stdin)
        self._landed_before = self._queued  # all landed: appends need a running agent
        self._agent = pipe
        log.debug("disk agent started (pid %s)", pipe.pid)
        return pipe

    def _agent_exited(self, pipe: _AgentPipe, code: int | None) -> None:
        if self._agent is not pipe:
            return
        self._agent = None
        if not self._closing:
            log.error("the disk agent exited (code %s); open spools fail, a new one starts", code)
            metrics.DISK_AGENT_EXITS.inc()
        gone = DiskAgentGone(f"the broker's disk agent exited (code {code})")
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(gone)
        for handle in self._handles:
            self._spool_errors.setdefault(handle, gone)
        self._handles.clear()
        self._landed = self._queued  # nothing is on its way to disk any more
        self._drained()

    # ---- requests --------------------------------------------------------------------

    async def open_spool(self, path: Path, keep_bytes: int = 0) -> tuple[int, int]:
        """Open (create) a spool for appending, cut to `keep_bytes` if longer; returns
        its handle and its size."""
        agent = await self._ensure_agent()
        handle = next(self._tags)
        body = TWO_U64.pack(handle, keep_bytes) + path_body(path)
        (size,) = U64.unpack(await self._request(agent, Op.OPEN, body, str(path)))
        self._handles.add(handle)
        return handle, size

    def append(self, handle: int, data: bytes) -> None:
        """Queue `data` for the end of spool `handle`.

        Uploads can come faster than the disk takes them (clients that do not pace, a
        slow volume); without a bound the pipe's buffer would hold it all in memory.
        Once the backlog passes `max_backlog` the farm stops reading uploads
        (`congested`) and reads again when it is back under half (`call_when_drained`):
        the clients' own sends wait, in TCP, and nothing is lost.
        """
        agent = self._agent
        if agent is None or handle not in self._handles:
            error = self._spool_errors.setdefault(
                handle, DiskAgentGone("the broker's disk agent is not running")
            )
            raise error
        try:
            agent.send(Op.APPEND, handle, data)
        except DiskAgentGone as exc:
            raise self._spool_errors.setdefault(handle, exc) from None
        self._queued += len(data)
        self._went_over = self._went_over or self.backlog > self.max_backlog

    def spool_error(self, handle: int) -> OSError | None:
        """The error of a failed append to `handle` (nothing after it was appended)."""
        return self._spool_errors.get(handle)

    def close_spool(self, handle: int, sync: bool = True) -> asyncio.Future[bytes]:
        """Queue the close of spool `handle` after its appends (`sync`: fsync it first)."""
        agent = self._agent
        if agent is None or handle not in self._handles:
            # Its agent is gone, and closed the file as it exited: nothing left to close.
            self._spool_errors.pop(handle, None)
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            done.set_result(b"")
            return done
        self._handles.discard(handle)
        future = self._request(agent, Op.CLOSE, TWO_U64.pack(handle, int(sync)), "a spool")
        future.add_done_callback(self._closed(handle))
        return future

    def _closed(self, handle: int) -> Callable[[asyncio.Future[bytes]], None]:
        def forget(future: asyncio.Future[bytes]) -> None:
            self._spool_errors.pop(handle, None)
            if not future.cancelled():
                future.exception()  # callers need not look: a failed close is not news

        return forget

    async def read(self, path: Path, offset: int, length: int) -> bytes:
        """Part of a file, read after everything queued before (spools can be gigabytes)."""
        agent = await self._ensure_agent()
        body = TWO_U64.pack(offset, length) + path_body(path)
        return await self._request(agent, Op.READ, body, str(path))

    async def size(self, path: Path) -> int | None:
        """A file's size once everything queued before is done (None: there is no such
        file): a `barrier()` and a `stat` that does not block the loop on a busy disk."""
        body = await self._ask(Op.SIZE, path)
        return None if body is None else U64.unpack(body)[0]

    async def read_file(self, path: Path) -> bytes | None:
        """A whole file (None: there is none), read beside the ordered queue: for a file
        that queued work does not write (a durable transcript), so the read waits neither
        for the spools' appends nor for the transcripts' fsyncs."""
        return await self._ask(Op.READ_FILE, path)

    async def _ask(self, op: Op, path: Path) -> bytes | None:
        """A question about a file that any agent can answer: asked once more if the
        agent dies first (it has done all it ever will: the next sees the same file).
        None if there is no such file."""
        body, what = path_body(path), str(path)
        try:
            try:
                return await self._request(await self._ensure_agent(), op, body, what)
            except DiskAgentGone:
                return await self._request(await self._ensure_agent(), op, body, what)
        except FileNotFoundError:
            return None

    async def barrier(self) -> None:
        """Wait until everything queued so far is done (e.g. before reading a file's size).

        An agent that dies first has done all it ever will, which is what a barrier waits
        for: that counts as passed (a resume waiting on it must not fail for it)."""
        agent = await self._ensure_agent()
        with contextlib.suppress(DiskAgentGone):
            await self._request(agent, Op.BARRIER, b"", "barrier")

    async def sync(self) -> None:
        """Make everything queued so far durable: one file-system sync."""
        await self._request(await self._ensure_agent(), Op.SYNC, b"", str(self._root))

    def commit(self, path: Path, data: bytes) -> asyncio.Future[bytes]:
        """Write `path` durably (temp file, fsync, rename, directory fsync), outside the
        ordered queue: it must not be a file that queued work writes. (No spool
        depends on it, so while no agent runs, a new one is started for it.)"""
        encoded = path_body(path)
        body = U64.pack(len(encoded)) + encoded + data
        agent = self._agent
        if agent is None or agent.stdin.is_closing():
            return asyncio.ensure_future(self._commit_on_new_agent(body, str(path)))
        return self._request(agent, Op.COMMIT, body, str(path))

    async def _commit_on_new_agent(self, body: bytes, what: str) -> bytes:
        return await self._request(await self._ensure_agent(), Op.COMMIT, body, what)

    def discard(self, path: Path) -> None:
        """Delete a file some time soon, off the ordered queue: an unlink frees blocks
        (milliseconds on a busy disk) and no write waits for it."""
        if self._agent is not None:
            with contextlib.suppress(DiskAgentGone):
                self._agent.send(Op.DISCARD, 0, path_body(path))
                return
        if not self._closing:  # else a restart's recovery finds the file and expires it
            task = asyncio.ensure_future(self._discard_on_new_agent(path))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _discard_on_new_agent(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # no agent can start: the restart's recovery
            (await self._ensure_agent()).send(Op.DISCARD, 0, path_body(path))

    def _request(self, agent: _AgentPipe, op: Op, body: bytes, what: str) -> asyncio.Future[bytes]:
        """Send a request; its future gets the answer (or `DiskAgentGone`: never raised here,
        so that callers that only attach a callback learn of it the same way)."""
        tag = next(self._tags)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        try:
            agent.send(op, tag, body)
        except DiskAgentGone as exc:
            future.set_exception(exc)
        else:
            self._waiting[tag] = (future, what)
        return future

    # ---- answers ---------------------------------------------------------------------

    def _answer(self, op: Op, tag: int, body: bytes) -> None:
        if op is Op.LANDED:
            self._landed = self._landed_before + tag
            if self._on_drained and self.backlog <= self.max_backlog // 2:
                self._drained()
        elif op is Op.SPOOL_FAILED:
            self._spool_errors.setdefault(tag, parse_error(body, "a spool"))
        elif op in (Op.OK, Op.FAILED):
            entry = self._waiting.pop(tag, None)
            if entry is None or entry[0].done():
                return
            future, what = entry
            if op is Op.OK:
                future.set_result(body)
            else:
                future.set_exception(parse_error(body, what))
        else:  # pragma: no cover - the agent sends nothing else
            log.error("unexpected message from the disk agent: %r", op)

    # ---- backlog ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Bytes of appends queued and not yet written."""
        return self._queued - self._landed

    def congested(self) -> bool:
        """Whether the backlog is over `max_backlog`, or went over since the last look:
        the agent may have caught up by the time the loop looks, and the append that
        went over should still slow its upload down (cheaply: a hold released on the
        next turn)."""
        went_over, self._went_over = self._went_over, False
        return went_over or self.backlog > self.max_backlog

    def call_when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback()` on the running loop once the backlog is back under half of
        `max_backlog` (at once, on the next turn, if it already is)."""
        self._on_drained.append(callback)
        if self.backlog <= self.max_backlog // 2:
            asyncio.get_running_loop().call_soon(self._drained)

    def _drained(self) -> None:
        if self.backlog > self.max_backlog // 2:
            return  # congested again meanwhile: the next LANDED calls back
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


class _AgentPipe(asyncio.SubprocessProtocol):
    """The broker's end of one agent process: frames out on stdin, answers in on stdout."""

    def __init__(self, disk: Disk, loop: asyncio.AbstractEventLoop) -> None:
        self._disk = disk
        self._reader = FrameReader()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.SubprocessTransport
        self.stdin: asyncio.WriteTransport
        self.pid: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: cast, not isinstance
        self.transport = cast(asyncio.SubprocessTransport, transport)
        self.pid = self.transport.get_pid()
        self.stdin = cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))

    def send(self, op: Op, tag: int, body: bytes = b"") -> None:
        """Write one frame; `DiskAgentGone` once the agent's stdin has closed (it died, and
        `connection_lost` has not come yet)."""
        if self.stdin.is_closing():
            raise DiskAgentGone("the broker's disk agent is exiting")
        try:
            if len(body) > 4096:  # audio: no copy into one buffer, the pipe takes both
                self.stdin.writelines([HEADER.pack(len(body), op, tag), body])
            else:
                self.stdin.write(frame(op, tag, body))
        except RuntimeError as exc:  # uvloop: the pipe closed under this very write
            raise DiskAgentGone("the broker's disk agent is exiting") from exc

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for op, tag, body in self._reader.feed(data):
            self._disk._answer(op, tag, body)

    def connection_lost(self, exc: Exception | None) -> None:
        """The agent exited and its pipes are closed: every answer it wrote has been read."""
        self._disk._agent_exited(self, self.transport.get_returncode())
        if not self.exited.done():
            self.exited.set_result(None)


def _widen_pipe(stdin: asyncio.WriteTransport) -> None:
    pipe = stdin.get_extra_info("pipe")
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or set_size is None:
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)
