"""Helpers for the worker tests: a fake broker, a worker process, audio files.

Named `test_worker_*` only so it sits with the worker tests; it holds no tests itself.
The fake broker plays the broker's side of the wire protocol on a real ROUTER socket:
it heartbeats the worker from its own thread, and tests wait on messages, never sleep.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from tests.farm import Process, spawn
from whisperfarm import wire
from whisperfarm.errors import ProtocolError
from whisperfarm.packets import AudioFormat, split_packets
from whisperfarm.wire import Command, Message

ROOT = Path(__file__).resolve().parent.parent

Received = tuple[bytes, Message]


class FakeBroker:
    """A ROUTER on loopback that records what workers send and heartbeats them.

    A background thread owns the ROUTER (ZeroMQ sockets stay in one thread): it
    heartbeats the newest worker like a real broker, whatever the test is doing, and
    forwards what the test sends through an inproc pipe. Tests read with `expect()`.
    """

    def __init__(self) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind("tcp://127.0.0.1:*")
        self.endpoint: str = router.getsockopt_string(zmq.LAST_ENDPOINT)
        pipe = f"inproc://fake-broker-{id(self)}"
        pull = self.ctx.socket(zmq.PULL)
        pull.bind(pipe)
        self._push = self.ctx.socket(zmq.PUSH)
        self._push.connect(pipe)
        self.peer: bytes | None = None
        """The identity of the latest READY: where `send()` goes by default."""
        self.heartbeats = threading.Event()
        """Clear it to play a broker that went silent."""
        self.heartbeats.set()
        self.unread: list[Received] = []
        self.seen: list[Received] = []
        """Every message ever received, in order (unread ones included)."""
        self.errors: list[str] = []
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(router, pull), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._push.close(linger=0)
        self.ctx.term()

    # ---- the socket thread ------------------------------------------------------------

    def _loop(self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.heartbeats.is_set() and self.peer is not None and now >= next_beat:
                    self._forward(
                        router, [self.peer, b"", *wire.encode(Message(Command.HEARTBEAT))]
                    )
                    next_beat = now + wire.HEARTBEAT_INTERVAL_S
                wait = min(0.1, max(0.0, next_beat - now))
                events = dict(poller.poll(max(1, int(wait * 1000))))
                if router in events:
                    next_beat = self._receive(router, next_beat)
                if pull in events:
                    self._forward(router, pull.recv_multipart())
        finally:
            router.close(linger=0)
            pull.close(linger=0)

    def _receive(self, router: zmq.Socket[bytes], next_beat: float) -> float:
        identity, _, *frames = router.recv_multipart()
        try:
            message = wire.decode(frames)
        except ProtocolError as exc:
            self.errors.append(f"bad message from the worker: {exc}")
            return next_beat
        if message.command is Command.READY:
            self.peer, next_beat = identity, 0.0
        self.seen.append((identity, message))
        self._inbox.put((identity, message))
        return next_beat

    def _forward(self, router: zmq.Socket[bytes], frames: list[bytes]) -> None:
        try:
            router.send_multipart(frames)
        except zmq.ZMQError as exc:
            self.errors.append(f"send to {frames[0]!r} failed: {exc}")

    # ---- the test's side ---------------------------------------------------------------

    def send(self, message: Message, peer: bytes | None = None) -> None:
        self.send_frames(wire.encode(message), peer)

    def send_frames(self, frames: list[bytes], peer: bytes | None = None) -> None:
        target = peer or self.peer
        assert target is not None, "no worker has said READY yet"
        self._push.send_multipart([target, b"", *frames])

    def stream(self, job_id: str, pcm: bytes, audio: AudioFormat, attempt: int = 1) -> None:
        """ASSIGN, then every 1000-frame packet as its own AUDIO message, then END."""
        self.assign(job_id, audio, attempt)
        self.packets(job_id, pcm, audio, attempt)
        self.send(Message(Command.END, job_id, {"attempt": attempt}))

    def assign(self, job_id: str, audio: AudioFormat, attempt: int = 1, **extra: object) -> None:
        body = {
            "attempt": attempt,
            "sample_rate": audio.sample_rate,
            "channels": audio.channels,
            "format": audio.format,
            "language": None,
            "task": "transcribe",
            **extra,
        }
        self.send(Message(Command.ASSIGN, job_id, body))

    def packets(self, job_id: str, pcm: bytes, audio: AudioFormat, attempt: int = 1) -> None:
        for packet in split_packets(pcm, audio):
            self.send(wire.audio(job_id, attempt, packet))

    def expect(
        self,
        command: Command,
        job_id: str | None = None,
        timeout: float = 30.0,
        where: Callable[[Message], bool] = lambda m: True,
        sender: bytes | None = None,
    ) -> Received:
        """The first unread message matching; other messages stay unread."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (identity, message) in enumerate(self.unread):
                if (
                    message.command is command
                    and job_id in (None, message.job_id)
                    and sender in (None, identity)
                    and where(message)
                ):
                    return self.unread.pop(i)
            left = deadline - time.monotonic()
            try:
                self.unread.append(self._inbox.get(timeout=max(0.0, left)))
            except queue.Empty:
                got = [(m.command.value, m.job_id) for _, m in self.unread]
                raise TimeoutError(
                    f"no {command} for {job_id!r} in {timeout} s; unread: {got}; {self.errors}"
                ) from None

    def results_for(self, job_id: str) -> list[Message]:
        return [m for _, m in self.seen if m.job_id == job_id]


WorkerProcess = Process
"""A worker process: the same helper the integration tests use."""


def start_worker(
    tmp: Path, endpoint: str, *args: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    log = tmp / f"worker-{time.monotonic_ns()}.log"
    # Teardown SIGTERMs workers that may still hold streams: drain briefly, not 60 s.
    drain = os.environ.get("WHISPERFARM_WORKER_DRAIN_TIMEOUT", "2")
    return spawn(["-m", "workers", "--broker", endpoint, *args], log,
                 {"WHISPERFARM_WORKER_DRAIN_TIMEOUT": drain, **(env or {})})  # fmt: skip


@dataclass
class WorkerRig:
    """A fake broker with one worker process connected to it (READY already received)."""

    broker: FakeBroker
    worker: WorkerProcess
    ready: Message

    def metrics(self) -> str:
        port = self.ready.body["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text: str = r.read().decode()
        return text


def worker_rig(
    tmp: Path, *args: str, ready_timeout: float = 120.0, env: dict[str, str] | None = None
) -> Iterator[WorkerRig]:
    """Generator for fixtures: start, wait for READY, yield, tear everything down."""
    broker = FakeBroker()
    worker = start_worker(tmp, broker.endpoint, *args, env=env)
    try:
        try:
            _, ready = broker.expect(Command.READY, timeout=ready_timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- worker log ---\n{worker.output()[-4000:]}") from None
        yield WorkerRig(broker, worker, ready)
    finally:
        worker.stop()
        broker.close()


# ---- audio ------------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[bytes, AudioFormat]:
    """The interleaved s16le PCM of a WAV file and its layout (what a source would send)."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"{path} is not 16-bit PCM"
        audio = AudioFormat(w.getframerate(), w.getnchannels(), "s16le")
        return w.readframes(w.getnframes()), audio


def write_wav(path: Path, pcm: bytes, audio: AudioFormat) -> None:
    """A WAV of raw interleaved PCM (format tag 1 for s16le, 3 for f32le)."""
    tag, width = (1, 2) if audio.format == "s16le" else (3, 4)
    block = audio.channels * width
    fmt = struct.pack(
        "<HHIIHH", tag, audio.channels, audio.sample_rate, audio.sample_rate * block, block,
        8 * width,
    )  # fmt: skip
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def final_body(message: Message) -> dict[str, Any]:
    """A FINAL's body, checked against the fields the broker reads."""
    body = dict(message.body)
    for key in ("attempt", "text", "segments", "language", "duration", "decode_started",
                "decode_ended"):  # fmt: skip
        assert key in body, f"FINAL without {key}: {json.dumps(body)[:300]}"
    return body


def interleave_streams(
    broker: FakeBroker, streams: dict[str, tuple[bytes, AudioFormat]], **start: Any
) -> None:
    """ASSIGN every stream (with `start`'s options), send their packets round-robin (uploads
    side by side), END all."""
    queues = {job: split_packets(pcm, audio) for job, (pcm, audio) in streams.items()}
    for job, (_, audio) in streams.items():
        broker.assign(job, audio, **start)
    for i in range(max(len(q) for q in queues.values())):
        for job, packets in queues.items():
            if i < len(packets):
                broker.send(wire.audio(job, 1, packets[i]))
    for job in streams:
        broker.send(Message(Command.END, job, {"attempt": 1}))
