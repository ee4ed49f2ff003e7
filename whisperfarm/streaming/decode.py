"""Decode any file ffmpeg can read into 1000-frame packets of interleaved s16le PCM.

The farm resamples to 16 kHz mono inside the worker, so the source sends the first audio
stream at its native rate and channel count and only packs the sample format to s16:
no quality is lost on the client and the broker sees the file as it is.

`open_audio()` probes the file (down to its first decoded frame) so unreadable input
fails before any connection is made; `iter_packets()` then streams it packet by packet
without ever holding the whole file in memory. Decoding the same file twice yields the
same bytes, which is what lets a resumed upload skip to any frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.packet import Packet

from whisperfarm.errors import UnsupportedFormat
from whisperfarm.packets import FRAMES_PER_PACKET, AudioFormat, SampleFormat
from whisperfarm.streaming.errors import UnreadableInput

SAMPLE_FORMAT: SampleFormat = "s16le"
BYTES_PER_SAMPLE = 2


@dataclass(frozen=True)
class AudioInfo:
    """What `start` announces: the native format of a file's first audio stream."""

    sample_rate: int
    channels: int
    duration: float | None
    """Seconds, as the container states it (a hint: it may be missing or slightly off)."""
    layout: str = ""
    """FFmpeg's channel layout name ("stereo", "2 channels", "5.1"), kept so the packer
    never remixes; empty means "the default layout for `channels`"."""

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, SAMPLE_FORMAT)

    @property
    def expected_frames(self) -> int | None:
        if self.duration is None:
            return None
        return round(self.duration * self.sample_rate)


def open_audio(path: Path) -> AudioInfo:
    """Probe `path` and return its native audio format, or raise `UnreadableInput`.

    The probe decodes the first audio frame rather than trusting the container header:
    random bytes sometimes pass FFmpeg's format sniffing, and some codecs (HE-AAC) only
    reveal their real rate once decoded.
    """
    _check_file(path)
    with _open_container(path) as container:
        stream = _first_audio_stream(container)
        first = _first_frame(container, stream)
        info = AudioInfo(
            sample_rate=first.sample_rate,
            channels=first.layout.nb_channels,
            duration=_duration(container, stream),
            layout=first.layout.name,
        )
    try:
        info.audio_format  # noqa: B018 - validates rate and channels against the protocol
    except UnsupportedFormat as exc:
        raise UnreadableInput(f"the farm does not take this audio: {exc.detail}") from None
    return info


def iter_packets(path: Path, info: AudioInfo, start_frame: int = 0) -> Generator[bytes, None, None]:
    """Yield packets of exactly 1000 frames (the last one shorter), from `start_frame` on.

    Skipping is done by decoding and dropping, not seeking: seeking in compressed audio
    lands on packet boundaries, and a resumed upload must continue at the exact frame.
    """
    bytes_per_frame = info.channels * BYTES_PER_SAMPLE
    packet_bytes = FRAMES_PER_PACKET * bytes_per_frame
    skip = start_frame * bytes_per_frame
    buffer = bytearray()
    for chunk in _iter_pcm(path, info):
        if skip:
            dropped = min(skip, len(chunk))
            chunk = chunk[dropped:]
            skip -= dropped
        buffer += chunk
        while len(buffer) >= packet_bytes:
            yield bytes(buffer[:packet_bytes])
            del buffer[:packet_bytes]
    if buffer:
        yield bytes(buffer)


def _check_file(path: Path) -> None:
    """Name the common mistakes plainly instead of relaying FFmpeg's generic message."""
    if not path.exists():
        raise UnreadableInput("no such file")
    if path.is_dir():
        raise UnreadableInput("is a directory")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableInput(exc.strerror or str(exc)) from None
    if size == 0 and path.is_file():
        raise UnreadableInput("empty file")


@contextlib.contextmanager
def _open_container(path: Path) -> Iterator[InputContainer]:
    try:
        container = av.open(str(path), mode="r")
    except OSError as exc:  # PyAV's permission/not-found errors are OSErrors too
        raise UnreadableInput((exc.strerror or str(exc)).lower()) from None
    except av.FFmpegError as exc:
        raise UnreadableInput(f"not an audio or video file ({_ffmpeg_reason(exc)})") from None
    with container:
        yield container


def _first_audio_stream(container: InputContainer) -> AudioStream:
    if not container.streams.audio:
        raise UnreadableInput("no audio stream")
    return container.streams.audio[0]


def _first_frame(container: InputContainer, stream: AudioStream) -> AudioFrame:
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                if frame.samples:
                    return frame
    except av.FFmpegError as exc:
        raise UnreadableInput(f"cannot decode the audio ({_ffmpeg_reason(exc)})") from None
    raise UnreadableInput("the audio stream holds no samples")


def _duration(container: InputContainer, stream: AudioStream) -> float | None:
    """The stream's own duration if stated, else the container's (Matroska only has that)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _iter_pcm(path: Path, info: AudioInfo) -> Iterator[bytes]:
    """Decode the first audio stream into chunks of interleaved s16 PCM of any length."""
    packer = _S16Packer(info)
    with _open_container(path) as container:
        stream = _first_audio_stream(container)
        try:
            for packet in container.demux(stream):
                for frame in _decode_tolerantly(packet):
                    yield from packer.pack(frame)
        except av.FFmpegError as exc:
            raise UnreadableInput(f"reading failed mid-file ({_ffmpeg_reason(exc)})") from None
        yield from packer.flush()


def _decode_tolerantly(packet: Packet[AudioStream]) -> list[AudioFrame]:
    """Decode one packet, skipping it if corrupt, like the ffmpeg command line does.

    A single damaged packet in an hour-long recording should cost a few milliseconds of
    audio, not the whole transcript.
    """
    try:
        return packet.decode()
    except av.InvalidDataError:
        return []


class _S16Packer:
    """Packs decoded frames to interleaved s16 at the announced native layout and rate.

    PyAV's resampler is bound to the format of the first frame it sees; a stream whose
    format changes mid-way (chained Ogg, some broadcast captures) gets a fresh resampler
    after the old one is flushed, and still comes out in the announced format.
    """

    def __init__(self, info: AudioInfo) -> None:
        self._layout = info.layout or (
            "mono" if info.channels == 1 else f"{info.channels} channels"
        )
        self._rate = info.sample_rate
        self._bytes_per_frame = info.channels * BYTES_PER_SAMPLE
        self._resampler: AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None

    def pack(self, frame: AudioFrame) -> Iterator[bytes]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        resampler = self._resampler
        if resampler is None or key != self._input_key:
            yield from self.flush()
            resampler = AudioResampler(format="s16", layout=self._layout, rate=self._rate)
            self._resampler, self._input_key = resampler, key
        for out in resampler.resample(frame):
            yield self._bytes(out)

    def flush(self) -> Iterator[bytes]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield self._bytes(out)
            self._resampler = None
            self._input_key = None

    def _bytes(self, frame: AudioFrame) -> bytes:
        """The frame's samples without the plane's alignment padding."""
        return memoryview(frame.planes[0])[: frame.samples * self._bytes_per_frame].tobytes()


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    """FFmpeg's message without the errno number and the file name it repeats."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return reason[:1].lower() + reason[1:]
