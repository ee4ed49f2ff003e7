"""The source CLI's live mode without a model: the terminal display, pacing at real time,
the microphone's buffer and devices, live options, Ctrl-C — against the fake farm
(`tests/fake_farm.py`) and the real PortAudio of this machine, which has no input device."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from source.__main__ import main
from source.live_view import LiveView
from source.mic import InputDevice, devices_from, input_devices, pick_device
from source.progress import Console, Mode
from source.settings import SourceSettings
from tests.fake_farm import SEGMENTS, FakeFarm, pcm_of, run_cli, write_wav
from tests.farm import ROOT
from tests.terminal import FakeTTY, screen
from whisperfarm.protocol import Final, Partial, Segment, SegmentData
from whisperfarm.streaming.client import ClientOptions, StreamClient
from whisperfarm.streaming.decode import AudioInfo, open_audio
from whisperfarm.streaming.errors import NoMicrophone, ProtocolViolation
from whisperfarm.streaming.live_audio import LiveAudio
from whisperfarm.streaming.sources import FileAudio, PacedAudio

RATE = 16_000
PACKET = 1000 / RATE
"""Seconds of audio in one packet at `RATE`."""
MONO = AudioInfo(sample_rate=RATE, channels=1, duration=None)
NO_DEVICE = "whisperfarm-source: no microphone: PortAudio finds no audio input device\n"


def partial(text: str) -> Partial:
    return Partial(text=text, start=0.0, end=1.0)


def segment(id: int, text: str) -> Segment:
    return Segment(id=id, start=id, end=id + 1.0, text=text)


# ---- the display ------------------------------------------------------------------------


def test_tty_rewrites_the_partial_in_place_below_the_committed_lines() -> None:
    term = FakeTTY()  # stdout and stderr on one terminal, as in a shell
    view = LiveView(Console(term, term, Mode.TTY), term, "jfk.wav", tty=True, width=lambda: 40)
    view.accepted("job1", 0)
    note = "whisperfarm-source: jfk.wav: live as job job1 (Ctrl-C ends the stream)"
    view.partial(partial(" And so"))
    view.partial(partial(" And so my  fellow"))
    assert screen(term.getvalue()) == [note, "And so my fellow"]
    assert "\x1b[2mAnd so my fellow\x1b[0m" in term.getvalue()  # dimmed: not final yet
    view.segment(segment(0, " And so my fellow"))
    assert screen(term.getvalue()) == [note, "And so my fellow", ""]
    view.partial(partial(" Americans"))
    view.reconnecting(1, 3, 1.0, "connection dropped")
    assert screen(term.getvalue()) == [
        note,
        "And so my fellow",
        "whisperfarm-source: jfk.wav: connection lost (connection dropped), resuming in 1 s "
        "(retry 1/3)",
        "Americans",
    ]
    long = " Americans, ask not what your country can do for you"
    view.partial(partial(long))
    last = screen(term.getvalue())[-1]
    assert len(last) == 39 and last == "…" + long[-38:]  # the newest words, within one line
    view.partial(partial(""))
    assert screen(term.getvalue())[-1] == ""


def test_tty_finish_prints_committed_segments_no_message_brought() -> None:
    term = FakeTTY()
    view = LiveView(Console(term, term, Mode.QUIET), term, "x", tty=True, width=lambda: 80)
    view.segment(segment(0, " hello"))
    view.partial(partial(" wor"))
    final = Final(job_id="j", text="hello world", segments=SEGMENTS, language="en", duration=2)
    view.finish(final)
    assert screen(term.getvalue()) == ["hello", "world", ""]


def test_not_on_a_tty_only_committed_lines_reach_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = LiveView(Console(err, out, Mode.PLAIN), out, "a.wav", tty=False)
    view.accepted("job1", 0)
    view.partial(partial(" hel"))
    view.segment(segment(0, " hello"))
    view.segment(segment(0, " hello"))  # resent after a resume
    view.segment(segment(1, "  "))  # committed silence: no empty line
    view.partial(partial(" wor"))
    texts = [" hello", "  ", " world"]
    committed = [SegmentData(id=i, start=i, end=i + 1, text=t) for i, t in enumerate(texts)]
    view.finish(
        Final(job_id="j", text="hello world", segments=committed, language="en", duration=3)
    )
    view.done(["a.txt"])
    assert out.getvalue() == "hello\nworld\n"
    assert err.getvalue().splitlines() == [
        "whisperfarm-source: a.wav: live as job job1 (Ctrl-C ends the stream)",
        "whisperfarm-source: a.wav: done, saved a.txt",
    ]


# ---- pacing -----------------------------------------------------------------------------


async def arrivals(packets: Any, began: float) -> list[float]:
    loop = asyncio.get_running_loop()
    return [loop.time() - began async for _ in packets]


async def test_a_file_sent_at_real_time_takes_as_long_as_it_plays(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", 1.5, rate=RATE, channels=1)
    paced = PacedAudio(FileAudio(wav, open_audio(wav)))
    times = await arrivals(paced.packets(0), asyncio.get_running_loop().time())
    assert len(times) == 24
    # No packet before its last frame "was spoken"; the whole file in about 1.5 s.
    assert all(t >= (i + 1) * PACKET - 0.005 for i, t in enumerate(times[:-1]))
    assert 1.45 <= times[-1] < 2.5


async def test_after_a_resume_the_audio_that_fell_due_goes_at_once(tmp_path: Path) -> None:
    """The speaker does not wait for a reconnect: the clock runs on through the outage."""
    wav = write_wav(tmp_path / "a.wav", 2.0, rate=RATE, channels=1)
    paced = PacedAudio(FileAudio(wav, open_audio(wav)))
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = paced.packets(0)
    for _ in range(8):  # half a second
        await anext(first)
    await first.aclose()
    await asyncio.sleep(0.5)  # the connection is down
    resumed = loop.time() - began
    times = await arrivals(paced.packets(4000), began)  # the farm held 4 packets
    assert len(times) == 28
    due_now = int(resumed / PACKET) - 4  # packets 4… whose end was due by the resume
    assert due_now >= 10
    assert times[due_now - 1] - resumed < 0.4  # at once (paced, they would take 0.6 s or more)
    assert 1.95 <= times[-1] < 2.6  # and the rest at real time: done when the file is


async def test_stop_ends_a_paced_file_at_the_next_packet(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", 2.0, rate=RATE, channels=1)
    paced = PacedAudio(FileAudio(wav, open_audio(wav)))
    packets = paced.packets(0)
    await anext(packets)
    paced.stop()
    assert [p async for p in packets] == []


# ---- the microphone's buffer ------------------------------------------------------------


def frames(first: int, count: int) -> bytes:
    """Mono s16 frames numbered `first`… (each frame's value is its index, mod 2**15)."""
    return (np.arange(first, first + count) % 32768).astype("<i2").tobytes()


async def test_live_audio_keeps_what_the_farm_has_not_acknowledged() -> None:
    audio = LiveAudio("rec", MONO)
    audio.feed(frames(0, 2500))
    packets = audio.packets(0)
    assert [await anext(packets), await anext(packets)] == [frames(0, 1000), frames(1000, 1000)]
    waiting = asyncio.ensure_future(anext(packets))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # half a packet: it waits for the rest
    audio.feed(frames(2500, 600))
    assert await waiting == frames(2000, 1000)
    await packets.aclose()
    audio.release(2500)  # a resume starts at a packet boundary: 2000 is kept
    audio.stop()
    audio.feed(frames(3100, 100))  # after stop: ignored
    assert [p async for p in audio.packets(2000)] == [frames(2000, 1000), frames(3000, 100)]
    with pytest.raises(ProtocolViolation, match="resume from frame 1000"):
        await anext(audio.packets(1000))


class Recorder:
    """`StreamEvents` that keeps what the client reported."""

    def __init__(self) -> None:
        self.partials: list[str] = []
        self.segments: list[int] = []

    def accepted(self, job_id: str, resume_from_frame: int) -> None: ...
    def sent(self, frames: int) -> None: ...
    def uploaded(self) -> None: ...
    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None: ...

    def partial(self, partial: Partial) -> None:
        self.partials.append(partial.text)

    def segment(self, segment: Segment) -> None:
        self.segments.append(segment.id)


async def feed_until_sent(audio: LiveAudio, client: StreamClient, pcm: bytes) -> None:
    """Feed `pcm` in 700-frame blocks (a sound card's), then wait until it is all sent."""
    for at in range(0, len(pcm), 1400):
        audio.feed(pcm[at : at + 1400])
        await asyncio.sleep(0)
    while client.high_water < audio.frames - audio.frames % 1000:
        await asyncio.sleep(0.005)


async def test_a_live_stream_resends_what_it_buffered_and_keeps_controls_in_place(
    farm: FakeFarm,
) -> None:
    farm.drop_after_packets = 25  # acked at 10 and 20 packets: the resume starts at 20 000
    audio = LiveAudio("rec", MONO)
    events = Recorder()
    options = ClientOptions(url=farm.url, live=True, retry_delay=0.01)
    client = StreamClient(audio, options, events)
    streaming = asyncio.create_task(client.transcribe())
    await feed_until_sent(audio, client, frames(0, 12_000))
    client.commit()
    await feed_until_sent(audio, client, frames(12_000, 30_000))
    client.clear()
    audio.feed(frames(42_000, 2_500))
    audio.stop()
    final = await asyncio.wait_for(streaming, 30)
    job = farm.job("rec")
    assert job.start.live and job.resumes == 1
    assert bytes(job.pcm) == frames(0, 44_500)  # nothing lost, nothing twice
    assert job.controls == [(12_000, "commit"), (42_000, "clear")]
    assert events.partials[:2] == [" hello", " hello hello"]
    assert events.segments == [0, 1]  # segment 0 came three times
    assert final.text == "transcript of rec"


async def test_commit_on_a_stream_that_is_not_live_is_a_bug(farm: FakeFarm) -> None:
    client = StreamClient(LiveAudio("rec", MONO), ClientOptions(url=farm.url), Recorder())
    with pytest.raises(RuntimeError, match="live streams only"):
        client.commit()


async def test_a_partial_on_a_file_stream_fails_it_in_one_line(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    farm.partials_to_files = True
    wav = write_wav(tmp_path / "x.wav", 0.5)
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path) == 4
    err = capsys.readouterr().err
    assert f"{wav}: the farm broke protocol v1: a partial on a stream that is not live\n" in err
    assert not (tmp_path / "x.txt").exists()


# ---- the CLI ----------------------------------------------------------------------------


async def test_realtime_streams_live_at_real_time_and_prints_committed_lines(
    farm: FakeFarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = write_wav(tmp_path / "talk.wav", 1.5, rate=RATE, channels=1)
    out = tmp_path / "out"
    began = time.monotonic()
    code = await run_cli(
        "--realtime", wav, "--url", farm.url, "--out", out, "--no-vad", "--pause-ms", "300"
    )
    took = time.monotonic() - began
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert 1.45 <= took < 4.5
    job = farm.job("talk.wav")
    assert (job.start.live, job.start.vad, job.start.vad_pause_ms) == (True, False, 300)
    assert bytes(job.pcm) == pcm_of(wav)
    assert captured.out == "hello\nworld\n"  # piped: committed lines only, each once
    assert (out / "talk.txt").read_text() == "transcript of talk.wav\n"
    assert f"whisperfarm-source: {wav}: done, saved {out / 'talk.txt'}" in captured.err


async def test_a_file_without_realtime_is_not_live(farm: FakeFarm, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "talk.wav", 0.3)
    assert await run_cli(wav, "--url", farm.url, "--out", tmp_path) == 0
    start = farm.job("talk.wav").start
    assert (start.live, start.vad, start.vad_pause_ms) == (False, True, None)


async def cli_process(*args: str | Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "source", *map(str, args), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def until(check: Any, timeout: float = 30.0) -> None:
    """Wait for the fake farm (served on this loop) to reach a state."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_ctrl_c_ends_a_live_stream_and_saves_its_transcript(
    farm: FakeFarm, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "talk.wav", 10.0, rate=RATE, channels=1)
    cli = await cli_process("--realtime", wav, "--url", farm.url, "--out", tmp_path)
    await until(lambda: farm.jobs and len(farm.job("talk.wav").pcm) >= 32_000)  # 1 s in
    cli.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err.decode()
    job = farm.job("talk.wav")
    assert job.ends == 1 and len(job.pcm) < len(pcm_of(wav)) // 2  # the rest was never sent
    assert out.decode() == "hello\nworld\n"
    assert "ending the stream" in err.decode()
    assert (tmp_path / "talk.txt").read_text() == "transcript of talk.wav\n"


async def test_a_second_ctrl_c_quits_without_the_transcript(farm: FakeFarm, tmp_path: Path) -> None:
    farm.final_delay = 30.0  # the farm is still decoding
    wav = write_wav(tmp_path / "talk.wav", 10.0, rate=RATE, channels=1)
    cli = await cli_process("--realtime", wav, "--url", farm.url, "--out", tmp_path)
    await until(lambda: farm.jobs and len(farm.job("talk.wav").pcm) >= 32_000)
    cli.send_signal(signal.SIGINT)
    await until(lambda: farm.job("talk.wav").ends == 1)
    cli.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 130
    assert err.decode().endswith("whisperfarm-source: interrupted\n")
    assert not (tmp_path / "talk.txt").exists()


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--mic", "a.wav"], "--mic: takes no files (the microphone is the input)"),
        (["--realtime", "a.wav", "b.wav"], "--realtime: plays one file (got 2)"),
        (["--realtime"], "--realtime: plays one file (got 0)"),
        (["--mic", "--realtime"], "--realtime: is for a file; --mic is live already"),
        (["a.wav", "--mic-device", "2"], "--mic-device: picks the microphone of --mic"),
        (
            ["--list-devices", "--mic"],
            "--list-devices: lists the devices and exits: no files, --mic, --realtime",
        ),
        ([], "files: give files to transcribe, or --mic, or --list-devices"),
        (["--mic", "--pause-ms", "50"], "--pause-ms: Input should be greater than or equal to 100"),
        (
            ["--mic", "--pause-ms", "soon"],
            "--pause-ms: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_live_flags_used_wrongly_are_one_line_and_exit_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert usage_error(argv, capsys) == f"whisperfarm-source: {line}"


def test_live_settings_reach_the_start_message() -> None:
    mic = SourceSettings.from_cli(["--mic", "--pause-ms", "800"], "x").client_options()
    assert (mic.live, mic.vad, mic.vad_pause_ms) == (True, True, 800)
    file = SourceSettings.from_cli(["a.wav", "--no-vad"], "x").client_options()
    assert (file.live, file.vad, file.vad_pause_ms) == (False, False, None)


# ---- the microphone ---------------------------------------------------------------------


def run_source(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "source", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [["--mic"], ["--mic", "--mic-device", "0"], ["--mic", "--mic-device", "USB"],
     ["--list-devices"]],
)  # fmt: skip
def test_without_an_input_device_the_mic_says_so_in_one_line_and_exits_2(
    args: list[str], tmp_path: Path
) -> None:
    if input_devices():
        pytest.skip("this machine has an audio input device")
    done = run_source(*args, "--out", str(tmp_path / "out"))
    assert (done.returncode, done.stderr, done.stdout) == (2, NO_DEVICE, "")
    assert not (tmp_path / "out").exists()


def test_without_the_portaudio_library_the_mic_names_the_package(tmp_path: Path) -> None:
    """sounddevice raises this OSError when it cannot load PortAudio (it is installed here)."""
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    path = os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = run_source("--mic", env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 2
    assert done.stderr == (
        "whisperfarm-source: no microphone: the PortAudio library is missing "
        "(Debian, Ubuntu: apt-get install libportaudio2)\n"
    )


PORTAUDIO_DEVICES = [
    {"index": 0, "name": "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "max_input_channels": 2,
     "default_samplerate": 44100.0},
    {"index": 1, "name": "HDA Intel PCH: HDMI 0 (hw:0,3)", "max_input_channels": 0,
     "default_samplerate": 44100.0},
    {"index": 2, "name": "USB Headset: Audio (hw:1,0)", "max_input_channels": 1,
     "default_samplerate": 48000.0},
    {"index": 3, "name": "pulse", "max_input_channels": 32, "default_samplerate": 44100.0},
    {"index": 4, "name": "pulse monitor", "max_input_channels": 2, "default_samplerate": 44100.0},
]  # fmt: skip
"""What `sounddevice.query_devices()` describes on a laptop (a device this machine lacks)."""


def test_list_devices_shows_inputs_only_with_the_default_marked() -> None:
    devices = devices_from(PORTAUDIO_DEVICES, default_input=3)
    assert [d.describe() for d in devices] == [
        "  0  HDA Intel PCH: ALC3246 Analog (hw:0,0)  [2 ch, 44100 Hz]",
        "  2  USB Headset: Audio (hw:1,0)  [1 ch, 48000 Hz]",
        "  3  pulse  [32 ch, 44100 Hz]  (default)",
        "  4  pulse monitor  [2 ch, 44100 Hz]",
    ]


@pytest.mark.parametrize(
    "wanted, index",
    [(None, 3), ("2", 2), (" 4", 4), ("usb", 2), ("USB Headset", 2), ("pulse", 3), ("ALC", 0)],
)
def test_mic_device_by_index_or_part_of_a_name(wanted: str | None, index: int) -> None:
    assert pick_device(devices_from(PORTAUDIO_DEVICES, 3), wanted).index == index


def test_without_a_default_input_the_first_device_is_the_mic() -> None:
    assert pick_device(devices_from(PORTAUDIO_DEVICES, -1), None).index == 0


@pytest.mark.parametrize(
    "wanted, message",
    [
        ("1", "no microphone: no input device '1' (--list-devices shows them)"),  # output only
        ("webcam", "no microphone: no input device 'webcam' (--list-devices shows them)"),
        (
            "hw:",
            "no microphone: 'hw:' could be any of 'HDA Intel PCH: ALC3246 Analog (hw:0,0)', "
            "'USB Headset: Audio (hw:1,0)': give its index",
        ),
    ],
)
def test_an_unknown_or_unclear_mic_device_is_refused(wanted: str, message: str) -> None:
    with pytest.raises(NoMicrophone) as refused:
        pick_device(devices_from(PORTAUDIO_DEVICES, 3), wanted)
    assert refused.value.message == message


def test_no_input_devices_at_all() -> None:
    with pytest.raises(NoMicrophone, match="PortAudio finds no audio input device"):
        pick_device([], None)
    assert InputDevice(0, "x", 1, 8000).describe() == "  0  x  [1 ch, 8000 Hz]"
