"""The source CLI against a fake farm on loopback (`tests/fake_farm.py`): outcomes, exit
codes, resume."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError

from source.__main__ import main
from tests.fake_farm import (
    CHANNELS,
    FAST_RETRY,
    RATE,
    FakeFarm,
    free_port,
    pcm_of,
    run_cli,
    write_wav,
)
from whisperfarm.packets import FRAMES_PER_PACKET
from whisperfarm.protocol import Resume, Start
from whisperfarm.streaming.client import describe_connect_error


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


async def test_a_farm_address_that_closes_before_the_handshake_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy whose upstream is away takes the TCP connection and closes it at once."""
    server = await asyncio.start_server(lambda _, w: w.close(), "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/stream"
    wav = write_wav(tmp_path / "x.wav", 0.2)
    async with server:
        assert await run_cli(wav, "--url", url, "--out", tmp_path) == 4
    err = capsys.readouterr().err
    # websockets fails the handshake one way or the other, depending on when the close lands.
    reasons = ("closed before the WebSocket handshake", "did not receive a valid HTTP response")
    assert any(f"cannot reach the farm at {url}: {reason}" in err for reason in reasons), err


def test_a_close_before_the_handshake_is_described_in_words() -> None:
    closed = ConnectionClosedError(None, None)
    assert describe_connect_error(closed) == "closed before the WebSocket handshake"


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
