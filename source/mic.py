"""The system microphone (PortAudio, through sounddevice) as a live audio source.

sounddevice is imported only when a microphone is asked for: importing it loads the
PortAudio library, which streaming files never needs and a machine may lack. Every way
of finding nothing to record from is one `NoMicrophone` with a line that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whisperfarm.streaming.decode import AudioInfo
from whisperfarm.streaming.errors import NoMicrophone
from whisperfarm.streaming.live_audio import LiveAudio

log = logging.getLogger(__name__)

CHANNELS = 1
"""The farm hears mono; PortAudio mixes the device down, the way every recorder asks."""
NONE_FOUND = "PortAudio finds no audio input device"


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio numbers and names it."""

    index: int
    name: str
    channels: int
    sample_rate: int
    default: bool = False

    def describe(self) -> str:
        """One line of `--list-devices`."""
        mark = "  (default)" if self.default else ""
        return f"{self.index:>3}  {self.name}  [{self.channels} ch, {self.sample_rate} Hz]{mark}"


def input_devices() -> list[InputDevice]:
    """The input devices PortAudio sees; raises `NoMicrophone` if it cannot look."""
    sd = _sounddevice()
    try:
        return devices_from(sd.query_devices(), sd.default.device[0])
    except sd.PortAudioError as exc:
        raise NoMicrophone(f"PortAudio cannot list devices ({exc})") from None


def devices_from(devices: Iterable[Mapping[str, Any]], default_input: int) -> list[InputDevice]:
    """The inputs among PortAudio's device descriptions (`sounddevice.query_devices()`)."""
    return [
        InputDevice(
            index=int(d["index"]),
            name=str(d["name"]),
            channels=int(d["max_input_channels"]),
            sample_rate=round(d["default_samplerate"]),
            default=d["index"] == default_input,
        )
        for d in devices
        if d["max_input_channels"] > 0
    ]


def pick_device(devices: list[InputDevice], wanted: str | None) -> InputDevice:
    """The device `--mic-device` names: an index, or a (case-insensitive) part of a name.

    Unset: PortAudio's default input, else the first one. A name that fits several
    devices must be the whole name of one of them.
    """
    if not devices:
        raise NoMicrophone(NONE_FOUND)
    if wanted is None:
        return next((d for d in devices if d.default), devices[0])
    if wanted.strip().isdigit():
        found = [d for d in devices if d.index == int(wanted)]
    else:
        key = wanted.casefold()
        found = [d for d in devices if key in d.name.casefold()]
        found = [d for d in found if d.name.casefold() == key] or found
    if len(found) == 1:
        return found[0]
    if not found:
        raise NoMicrophone(f"no input device {wanted!r} (--list-devices shows them)")
    names = ", ".join(repr(d.name) for d in found)
    raise NoMicrophone(f"{wanted!r} could be any of {names}: give its index")


@contextlib.contextmanager
def open_microphone(device: InputDevice, name: str) -> Iterator[LiveAudio]:
    """Record from `device` into a `LiveAudio` until the block ends (call on the loop).

    PortAudio calls back on its own thread with each block it captured; the block moves
    to the loop with `call_soon_threadsafe`, so the buffer is only touched there.
    """
    sd = _sounddevice()
    loop = asyncio.get_running_loop()
    audio = LiveAudio(name, AudioInfo(device.sample_rate, CHANNELS, None))
    overflows = 0

    def captured(data: Any, frames: int, when: Any, status: Any) -> None:
        nonlocal overflows
        if status.input_overflow and not overflows:
            log.warning("the microphone dropped audio: the machine did not keep up")
        overflows += bool(status.input_overflow)
        loop.call_soon_threadsafe(audio.feed, bytes(data))

    try:
        stream = sd.RawInputStream(
            device=device.index,
            samplerate=device.sample_rate,
            channels=CHANNELS,
            dtype="int16",
            callback=captured,
        )
        stream.start()
    except sd.PortAudioError as exc:
        raise NoMicrophone(f"cannot record from {device.name!r} ({exc})") from None
    try:
        yield audio
    finally:
        stream.close()
        audio.stop()


def _sounddevice() -> Any:
    """The sounddevice module (untyped: its calls are checked by the tests, not mypy)."""
    try:
        import sounddevice
    except OSError:  # sounddevice is installed, the PortAudio library it loads is not
        raise NoMicrophone(
            "the PortAudio library is missing (Debian, Ubuntu: apt-get install libportaudio2)"
        ) from None
    return sounddevice
