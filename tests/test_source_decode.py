"""Decoding for the source CLI: every container ffmpeg writes, cut into 1000-frame packets.

Fixtures are made at test time by the ffmpeg command line (a different code path from the
PyAV decoder under test), so nothing binary lives in the repository.
"""

from __future__ import annotations

import inspect
import random
import subprocess
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from source.__main__ import main
from tests.speech import require_tool
from whisperfarm.packets import FRAMES_PER_PACKET
from whisperfarm.streaming.decode import AudioInfo, iter_packets, open_audio
from whisperfarm.streaming.errors import UnreadableInput

DURATION = 2.3


def ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run(
        [require_tool("ffmpeg"), "-y", "-v", "error", *args, str(out)], check=True, timeout=60
    )
    return out


def sine(rate: int = 44_100, channels: int = 2, seconds: float = DURATION) -> list[str]:
    return f"-f lavfi -i sine=frequency=440:sample_rate={rate} -ac {channels} -t {seconds}".split()


VIDEO = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10"]


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    rate: int
    channels: int


CASES = [
    Case("stereo.wav", sine(), 44_100, 2),
    Case("mono16k.wav", sine(16_000, 1), 16_000, 1),
    Case("stereo.flac", sine(), 44_100, 2),
    Case("surround.flac", sine(48_000, 6), 48_000, 6),
    Case("stereo.mp3", [*sine(), "-c:a", "libmp3lame"], 44_100, 2),
    Case("mono22k.mp3", [*sine(22_050, 1), "-c:a", "libmp3lame"], 22_050, 1),
    Case("stereo.ogg", [*sine(), "-c:a", "libopus"], 48_000, 2),  # Opus always decodes at 48 kHz
    Case("stereo.m4a", [*sine(), "-c:a", "aac"], 44_100, 2),
    Case("video.mp4", [*VIDEO, *sine(), "-c:v", "libx264", "-c:a", "aac", "-shortest"], 44_100, 2),
    Case(
        "video.webm", [*VIDEO, *sine(), "-c:v", "libvpx", "-c:a", "libopus", "-shortest"], 48_000, 2
    ),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Path]:
    """Each fixture file made once per module, on first use."""
    folder = tmp_path_factory.mktemp("media")

    def make(case: Case) -> Path:
        path = folder / case.name
        return path if path.exists() else ffmpeg(path, *case.args)

    return make


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_native_format_and_1000_frame_packets(media: Callable[[Case], Path], case: Case) -> None:
    path = media(case)
    info = open_audio(path)
    assert (info.sample_rate, info.channels) == (case.rate, case.channels)
    assert info.duration == pytest.approx(DURATION, abs=0.05)
    packets = list(iter_packets(path, info))
    full = FRAMES_PER_PACKET * case.channels * 2  # 4000 bytes for 44.1 kHz stereo
    assert {len(p) for p in packets[:-1]} == {full}
    assert 0 < len(packets[-1]) < full and len(packets[-1]) % (case.channels * 2) == 0
    frames = sum(len(p) for p in packets) // (case.channels * 2)
    # Lossy codecs pad to whole codec frames (AAC: 1024); that is the only slack allowed.
    assert abs(frames - DURATION * case.rate) <= 2048


def test_stereo_44k_packets_are_4000_bytes(media: Callable[[Case], Path]) -> None:
    path = media(CASES[0])
    sizes = [len(p) for p in iter_packets(path, open_audio(path))]
    assert sizes[:-1] == [4000] * (len(sizes) - 1)
    assert sizes[-1] == (round(DURATION * 44_100) % 1000) * 4


@pytest.mark.parametrize("start", [0, 1000, 37_000, 101_000, 101_430, 200_000])
def test_start_frame_skips_exactly(media: Callable[[Case], Path], start: int) -> None:
    """What a resume relies on: decoding again from frame N gives the same bytes from N on."""
    path = media(CASES[4])  # mp3: the decoder's own framing (1152) is unaligned with ours
    info = open_audio(path)
    whole = b"".join(iter_packets(path, info))
    resumed = list(iter_packets(path, info, start))
    assert b"".join(resumed) == whole[start * 4 :]
    assert all(len(p) == 4000 for p in resumed[:-1])


def test_packets_are_streamed_not_buffered(tmp_path: Path) -> None:
    """A 60 s file is 10 MB of PCM; the decoder must never hold more than a little of it."""
    path = ffmpeg(tmp_path / "long.flac", *sine(seconds=60))
    info = open_audio(path)
    assert inspect.isgenerator(iter_packets(path, info))
    packets = iter_packets(path, info)
    tracemalloc.start()
    try:
        total = sum(len(p) for p in packets)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 60 * 44_100 * 4
    assert peak < total / 10


def test_audio_info_exposes_the_protocol_format() -> None:
    info = AudioInfo(sample_rate=44_100, channels=2, duration=1.5, layout="stereo")
    assert info.audio_format.packet_bytes == 4000
    assert info.expected_frames == 66_150
    assert AudioInfo(16_000, 1, None).expected_frames is None


def unreadable_files(folder: Path) -> dict[str, Path]:
    rng = random.Random(1234)
    files = {
        "empty": (folder / "empty.wav", b""),
        "random bytes": (folder / "noise.mp3", rng.randbytes(64 * 1024)),
        "text": (folder / "notes.ogg", b"Meeting notes\n" * 200),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {name: path for name, (path, _) in files.items()}


@pytest.mark.parametrize("kind", ["empty", "random bytes", "text"])
def test_unreadable_content(tmp_path: Path, kind: str) -> None:
    path = unreadable_files(tmp_path)[kind]
    with pytest.raises(UnreadableInput) as raised:
        open_audio(path)
    assert "\n" not in raised.value.message
    assert raised.value.message.startswith("unreadable input: ")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput, match="no such file"):
        open_audio(tmp_path / "nope.wav")
    with pytest.raises(UnreadableInput, match="is a directory"):
        open_audio(tmp_path)


def test_video_without_audio(tmp_path: Path) -> None:
    path = ffmpeg(tmp_path / "silent.mp4", *VIDEO, "-t", "1", "-c:v", "libx264")
    with pytest.raises(UnreadableInput, match="no audio stream"):
        open_audio(path)


def test_cli_exits_2_on_video_without_audio_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ffmpeg(tmp_path / "silent.webm", *VIDEO, "-t", "1", "-c:v", "libvpx")
    # Port 9 (discard) on loopback: were the CLI to connect, it would exit 4, not 2.
    assert main([str(path), "--url", "ws://127.0.0.1:9/v1/stream"]) == 2
    assert capsys.readouterr().err == (
        f"whisperfarm-source: {path}: unreadable input: no audio stream\n"
    )
