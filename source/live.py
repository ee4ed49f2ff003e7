"""A live run: the microphone (`--mic`) or one file played at real time (`--realtime`).

The words show while they are spoken (`live_view`), and the transcript is saved as a
file's is. Ctrl-C ends a live stream the way a speaker stops: the audio captured so far
still goes out, then `end`, and the final is saved. A second Ctrl-C quits at once
(`KeyboardInterrupt`: exit 130, nothing saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from source.live_view import LiveView
from source.mic import input_devices, open_microphone, pick_device
from source.outcome import settle
from source.output import make_out_dir, plan_stems, save_transcript, to_transcript
from source.progress import Console
from source.settings import SourceSettings
from whisperfarm.streaming.client import StreamClient
from whisperfarm.streaming.decode import open_audio
from whisperfarm.streaming.errors import ExitCode, NoMicrophone, SourceError, UnreadableInput
from whisperfarm.streaming.sources import FileAudio, LiveSource, PacedAudio

MIC_LABEL = "microphone"


def list_devices(console: Console) -> ExitCode:
    """`--list-devices`: one line per input device on stdout."""
    try:
        devices = input_devices()
        if not devices:
            raise NoMicrophone("PortAudio finds no audio input device")
    except NoMicrophone as exc:
        console.error(exc.message)
        return exc.exit_code
    for device in devices:
        console.transcript(device.describe())
    return ExitCode.OK


async def run_live(settings: SourceSettings, console: Console) -> ExitCode:
    """Stream the one live source of `settings`; its outcome is the exit code."""
    with contextlib.ExitStack() as stack:  # a microphone stays open until the end
        code = await _run_live(settings, console, stack)
    return code


async def _run_live(
    settings: SourceSettings, console: Console, stack: contextlib.ExitStack
) -> ExitCode:
    try:
        label, stem, source = _open_source(settings, stack)
        make_out_dir(settings.out)
    except UnreadableInput as exc:
        console.error(f"{settings.files[0]}: {exc.message}")
        return exc.exit_code
    except SourceError as exc:
        console.error(exc.message)
        return exc.exit_code
    view = LiveView(console, sys.stdout, label, tty=sys.stdout.isatty())
    stack.enter_context(_interrupt_stops(source, view))
    return await settle(_stream_and_save(settings, source, stem, view), view, label)


def _open_source(
    settings: SourceSettings, stack: contextlib.ExitStack
) -> tuple[str, str, LiveSource]:
    """(label, output stem, source); a microphone records until `stack` closes."""
    if settings.mic:
        device = pick_device(input_devices(), settings.mic_device)
        stem = time.strftime("mic-%Y%m%d-%H%M%S")
        return MIC_LABEL, stem, stack.enter_context(open_microphone(device, stem))
    [path] = settings.files
    info = open_audio(path)
    [stem] = plan_stems([path])
    return str(path), stem, PacedAudio(FileAudio(path, info))


async def _stream_and_save(
    settings: SourceSettings, source: LiveSource, stem: str, view: LiveView
) -> list[Path]:
    final = await StreamClient(source, settings.client_options(), view).transcribe()
    view.finish(final)
    return save_transcript(to_transcript(final, source.name), settings.out, stem)


@contextlib.contextmanager
def _interrupt_stops(source: LiveSource, view: LiveView) -> Iterator[None]:
    """The first Ctrl-C stops the source; the handler then goes, so the next one interrupts.

    Only the main thread can take signals (tests run the CLI in others): elsewhere, and
    where the loop has no signal handlers, Ctrl-C keeps its default meaning.
    """
    loop = asyncio.get_running_loop()

    def first_interrupt() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        view.interrupted()
        source.stop()

    try:
        loop.add_signal_handler(signal.SIGINT, first_interrupt)
    except (RuntimeError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
