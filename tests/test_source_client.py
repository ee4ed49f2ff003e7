"""The source CLI against a fake farm on loopback: outcomes, exit codes, resume.

The fake speaks protocol v1 the way the broker does (it parses with the shared contract
and validates packets with `PacketValidator`), scripted per test to overload, fail or
drop the connection. The CLI runs as `main(argv)` in a thread with its own event loop,
exactly as `whisperfarm-source` would, while the fake serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from source.__main__ import main
from whisperfarm.errors import BadPacket, CloseCode, ErrorCode
from whisperfarm.packets import FRAMES_PER_PACKET, PacketValidator
from whisperfarm.protocol import (
    Accepted,
    Ack,
    End,
    Error,
    Final,
    Resume,
    Segment,
    SegmentData,
    Start,
    parse_client_message,
)
from whisperfarm.streaming.decode import iter_packets, open_audio

RATE = 44_100
CHANNELS = 2
FAST_RETRY = ["--retry-delay", "0.01"]


def write_wav(path: Path, seconds: float, rate: int = RATE, channels: int = CHANNELS) -> Path:
    """A sine as s16 WAV, written without ffmpeg so these tests run anywhere."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono[:, None], channels, axis=1).tobytes())
    return path


@dataclass
class Job:
    """What the fake farm holds for one accepted stream."""

    start: Start
    pcm: bytearray = field(default_factory=bytearray)
    acked: int = 0
    resumes: int = 0
    ends: int = 0
    packet_sizes: list[list[int]] = field(default_factory=list)
    """Packet sizes per connection."""


@dataclass
class FakeFarm:
    """Protocol v1, scripted: by file name overload or fail, by count drop connections."""

    overloaded: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    drop_after_packets: int | None = None
    """Abort the first connection of every job after this many packets."""
    interrupt_after_packets: int | None = None
    """Answer the first connection of every job with `interrupted` after this many packets."""
    drop_after_end: bool = False
    """Abort the first connection of every job once `end` arrived, before `final`."""
    drop_always: bool = False
    """Abort every connection right after `accepted` (no progress ever)."""
    ack_every: int = 10
    connections: int = 0
    hellos: list[Start | Resume | End] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs.values() if j.start.name == name)

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        hello = parse_client_message(await ws.recv())
        self.hellos.append(hello)
        if isinstance(hello, Start) and hello.name in self.overloaded:
            await ws.send(Error(code=ErrorCode.OVERLOADED, detail="busy", retry_after=5).dumps())
            await ws.close(CloseCode.TRY_AGAIN_LATER, "overloaded")
            return
        job_id, job, first = self._admit(hello)
        await ws.send(Accepted(job_id=job_id, resume_from_frame=job.acked).dumps())
        if self.drop_always:
            ws.transport.abort()
            return
        if await self._receive_audio(ws, job, first) and await self._finish(ws, job_id, job, first):
            await ws.close()

    def _admit(self, hello: Start | Resume | End) -> tuple[str, Job, bool]:
        if isinstance(hello, Start):
            job_id = uuid.uuid4().hex
            self.jobs[job_id] = Job(start=hello)
            return job_id, self.jobs[job_id], True
        assert isinstance(hello, Resume)
        job = self.jobs[hello.job_id]
        job.resumes += 1
        del job.pcm[job.acked * job.start.channels * 2 :]  # only acked audio is durable
        return hello.job_id, job, False

    async def _receive_audio(self, ws: ServerConnection, job: Job, first: bool) -> bool:
        """Take packets until `end`; False when this connection was dropped or refused."""
        validator = PacketValidator(job.start.audio_format())
        sizes: list[int] = []
        job.packet_sizes.append(sizes)
        async for message in ws:
            if isinstance(message, str):
                assert isinstance(parse_client_message(message), End)
                job.ends += 1
                return True
            try:
                frames = validator.accept(message)
            except BadPacket as exc:
                await ws.send(Error(code=exc.code, detail=exc.detail).dumps())
                await ws.close(exc.close_code)
                return False
            sizes.append(len(message))
            job.pcm += message
            if len(sizes) % self.ack_every == 0:
                job.acked = len(job.pcm) // (job.start.channels * 2)
                await ws.send(Ack(frames=job.acked).dumps())
            if first and len(sizes) == self.drop_after_packets:
                ws.transport.abort()
                return False
            if first and len(sizes) == self.interrupt_after_packets:
                await ws.send(Error(code=ErrorCode.INTERRUPTED, detail="storage restarted").dumps())
                await ws.close(CloseCode.SERVICE_RESTART)
                return False
            del frames
        return False

    async def _finish(self, ws: ServerConnection, job_id: str, job: Job, first: bool) -> bool:
        job.acked = len(job.pcm) // (job.start.channels * 2)
        if first and self.drop_after_end:
            ws.transport.abort()
            return False
        if job.start.name in self.failing:
            await ws.send(Error(code=ErrorCode.INTERNAL, detail="engine exploded").dumps())
            await ws.close(CloseCode.INTERNAL)
            return False
        segments = [
            SegmentData(id=0, start=0.0, end=1.0, text=" hello"),
            SegmentData(id=1, start=1.0, end=2.0, text=" world"),
        ]
        for s in segments:
            await ws.send(Segment(**s.model_dump()).dumps())
        duration = job.acked / job.start.sample_rate
        text = f"transcript of {job.start.name}"
        final = Final(job_id=job_id, text=text, segments=segments, language="en", duration=duration)
        await ws.send(final.dumps())
        return True


@pytest.fixture
async def farm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeFarm]:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeFarm()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.port = server.sockets[0].getsockname()[1] if server.sockets else 0
        yield fake


async def run_cli(*args: str | Path) -> int:
    """`main()` in a thread: it owns an event loop, the fake farm runs on this one."""
    return await asyncio.to_thread(main, [str(a) for a in args])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pcm_of(path: Path) -> bytes:
    return b"".join(iter_packets(path, open_audio(path)))


async def test_happy_path_sends_full_packets_and_saves_txt_json(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "talk.wav", 2.3)
    out = tmp_path / "out"
    code = await run_cli(wav, "--url", farm.url, "--out", out, "--language", "en")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    job = farm.job("talk.wav")
    assert job.start.sample_rate == RATE and job.start.channels == CHANNELS
    assert job.start.format == "s16le" and job.start.language == "en"
    assert job.start.duration == pytest.approx(2.3, abs=0.01)
    [sizes] = job.packet_sizes
    assert set(sizes[:-1]) == {FRAMES_PER_PACKET * CHANNELS * 2}  # 4000 bytes
    assert 0 < sizes[-1] < 4000
    assert bytes(job.pcm) == pcm_of(wav)
    assert captured.out == "transcript of talk.wav\n"
    assert (out / "talk.txt").read_text() == "transcript of talk.wav\n"
    saved = json.loads((out / "talk.json").read_text())
    assert saved["name"] == "talk.wav" and [s["text"] for s in saved["segments"]] == [
        " hello",
        " world",
    ]
    assert "[00:00.0 → 00:01.0] hello" in captured.err  # segments shown as they come
    assert "done" in captured.err


async def test_quiet_prints_only_the_transcript(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "a.wav", 0.5, rate=16_000, channels=1)
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path, "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.out == "transcript of a.wav\n"
    assert captured.err == ""
    assert set(farm.job("a.wav").packet_sizes[0][:-1]) == {2000}


async def test_overloaded_exits_3_with_a_one_line_message(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "x.wav", 0.2)
    farm.overloaded.add("x.wav")
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path) == 3
    err = capsys.readouterr().err
    assert f"whisperfarm-source: {wav}: farm overloaded (busy), retry in 5 s\n" in err
    assert not (tmp_path / "x.txt").exists()


async def test_no_farm_listening_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "x.wav", 0.2)
    url = f"ws://127.0.0.1:{free_port()}/v1/stream"
    assert await run_cli(wav, "--url", url, "--out", tmp_path) == 4
    err = capsys.readouterr().err
    assert f"whisperfarm-source: {wav}: cannot reach the farm at {url}: connection refused" in err


async def test_error_internal_exits_4(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "x.wav", 0.2)
    farm.failing.add("x.wav")
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path) == 4
    err = capsys.readouterr().err
    assert "the farm failed the stream (internal): engine exploded" in err
    assert farm.connections == 1  # an error message is final: no resume


async def test_dropped_connection_resumes_from_the_farms_frame(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "long.wav", 3.0)
    farm.drop_after_packets = 25  # acks at 10 and 20 packets: resume from frame 20 000
    code = await run_cli(wav, "--url", farm.url, "--out", tmp_path, *FAST_RETRY)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    job = farm.job("long.wav")
    assert job.resumes == 1
    assert isinstance(farm.hellos[1], Resume) and farm.hellos[1].job_id in farm.jobs
    first, second = job.packet_sizes
    assert len(first) == 25
    assert set(second[:-1]) == {4000}  # still aligned after the resume point
    assert bytes(job.pcm) == pcm_of(wav)  # frames 0–20 000 once, then the rest, no gap
    assert "connection lost" in captured.err and "resum" in captured.err
    assert (tmp_path / "long.txt").exists()


async def test_an_interrupted_upload_resumes_from_the_farms_frame(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`interrupted` is the farm asking for a `resume`, not a failure."""
    wav = write_wav(tmp_path / "long.wav", 3.0)
    farm.interrupt_after_packets = 25  # acked up to 20 packets: resume from frame 20 000
    code = await run_cli(wav, "--url", farm.url, "--out", tmp_path, *FAST_RETRY)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    job = farm.job("long.wav")
    assert job.resumes == 1 and len(job.packet_sizes[0]) == 25
    assert bytes(job.pcm) == pcm_of(wav)
    assert "interrupted the upload (storage restarted)" in captured.err
    assert (tmp_path / "long.txt").exists()


async def test_drop_after_end_resumes_and_sends_end_again(farm: FakeFarm, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "x.wav", 1.0)
    farm.drop_after_end = True
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path, *FAST_RETRY) == 0
    job = farm.job("x.wav")
    assert job.resumes == 1 and job.ends == 2
    assert job.packet_sizes[1] == []  # everything was durable: nothing to resend
    assert bytes(job.pcm) == pcm_of(wav)


async def test_gives_up_after_retries_without_progress(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "x.wav", 0.5)
    farm.drop_always = True
    assert (
        await run_cli(wav, "--url", farm.url, "--out", tmp_path, "--retries", "2", *FAST_RETRY) == 4
    )
    assert farm.connections == 3  # the first try and two resumes
    assert "gave up after 2 retries" in capsys.readouterr().err


async def test_several_files_stream_at_once_and_exit_with_the_worst_code(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, busy, bad = (write_wav(tmp_path / f"{n}.wav", 0.3) for n in ("ok", "busy", "bad"))
    farm.overloaded.add("busy.wav")
    farm.failing.add("bad.wav")
    assert await run_cli(ok, busy, "--url", farm.url, "--out", tmp_path) == 3
    assert await run_cli(ok, busy, bad, "--url", farm.url, "--out", tmp_path) == 4
    out = capsys.readouterr().out
    assert f"{ok}: transcript of ok.wav" in out  # prefixed by the file when several


async def test_unreadable_and_readable_files_exit_2(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = write_wav(tmp_path / "ok.wav", 0.3)
    junk = tmp_path / "junk.mp3"
    junk.write_text("not audio at all\n")
    assert await run_cli(ok, junk, "--url", farm.url, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert f"whisperfarm-source: {junk}: unreadable input: not an audio or video file" in err
    assert [h.name for h in farm.hellos if isinstance(h, Start)] == ["ok.wav"]


@pytest.mark.parametrize("content", [b"", b"hello\n", None], ids=["empty", "text", "missing"])
async def test_unreadable_input_exits_2_without_connecting(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    path = tmp_path / "x.wav"
    if content is not None:
        path.write_bytes(content)
    assert await run_cli(path, "--url", farm.url) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"whisperfarm-source: {path}: unreadable input")
    assert farm.connections == 0


async def test_same_stem_twice_gets_a_suffix(farm: FakeFarm, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_wav(tmp_path / "a" / "x.wav", 0.2), write_wav(tmp_path / "b" / "x.wav", 0.3)
    out = tmp_path / "out"
    assert await run_cli(one, two, "--url", farm.url, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2.json", "x-2.txt", "x.json", "x.txt"]
    durations = {json.loads((out / f).read_text())["duration"] for f in ("x.json", "x-2.json")}
    assert len(durations) == 2  # two different transcripts, neither overwritten


async def test_jobs_limit_still_streams_every_file(farm: FakeFarm, tmp_path: Path) -> None:
    files = [write_wav(tmp_path / f"f{i}.wav", 0.2) for i in range(3)]
    assert await run_cli(*files, "--url", farm.url, "--out", tmp_path, "--jobs", "1") == 0
    assert len(farm.jobs) == 3


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [str(tmp_path / "x.wav"), "--url", "http://host/"],
        [str(tmp_path / "x.wav"), "--retries", "-1"],
        [],  # no files: argparse's own message
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "whisperfarm-source: --url: Value error, must start with ws:// or wss://" in (
        capsys.readouterr().err
    )


def test_runs_as_python_dash_m(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    done = subprocess.run(
        [sys.executable, "-m", "source", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"whisperfarm-source: {missing}: unreadable input: no such file"
    helped = subprocess.run(
        [sys.executable, "-m", "source", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--retries" in helped.stdout
