"""One run of the CLI: probe every file, stream the readable ones at once, save, exit code.

This is the edge where typed outcomes become one-line messages and an exit status; the
modules below it raise and never print. A live run (`--mic`, `--realtime`) and the device
list have their own module (`live`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from source.live import list_devices, run_live
from source.outcome import settle
from source.output import make_out_dir, plan_stems, save_transcript, stdout_text, to_transcript
from source.progress import Console, FileProgress
from source.settings import SourceSettings
from whisperfarm.streaming.client import StreamClient
from whisperfarm.streaming.decode import AudioInfo, open_audio
from whisperfarm.streaming.errors import ExitCode, OutputError, UnreadableInput
from whisperfarm.streaming.sources import FileAudio


@dataclass(frozen=True)
class Upload:
    """A readable input and where its transcript goes."""

    path: Path
    info: AudioInfo
    stem: str

    @property
    def label(self) -> str:
        """The path as typed, so messages name the file the way the user did."""
        return str(self.path)


async def run(settings: SourceSettings, console: Console) -> ExitCode:
    """Transcribe every file in `settings.files`; the worst outcome is the exit code."""
    if settings.list_devices:
        return list_devices(console)
    if settings.live:
        return await run_live(settings, console)
    readable, codes = probe_all(settings.files, console)
    if not readable:
        return max(codes, default=ExitCode.OK)
    try:
        make_out_dir(settings.out)
    except OutputError as exc:
        console.error(exc.message)
        return exc.exit_code
    stems = plan_stems([path for path, _ in readable])
    uploads = [Upload(path, info, stem) for (path, info), stem in zip(readable, stems, strict=True)]
    batch = Batch(settings, console, several=len(settings.files) > 1, parallel=len(uploads))
    results = await asyncio.gather(*(batch.transcribe_one(u) for u in uploads))
    return max([*codes, *results])


def probe_all(
    paths: list[Path], console: Console
) -> tuple[list[tuple[Path, AudioInfo]], list[ExitCode]]:
    """Probe before connecting anything: an unreadable file never reaches the farm."""
    readable: list[tuple[Path, AudioInfo]] = []
    codes: list[ExitCode] = []
    for path in paths:
        try:
            readable.append((path, open_audio(path)))
        except UnreadableInput as exc:
            console.error(f"{path}: {exc.message}")
            codes.append(exc.exit_code)
    return readable, codes


class Batch:
    """The files of one run, streaming concurrently (at most `--jobs` at a time)."""

    def __init__(
        self, settings: SourceSettings, console: Console, *, several: bool, parallel: int
    ) -> None:
        self._out_dir = settings.out
        self._console = console
        self._several = several
        self._limit = asyncio.Semaphore(settings.jobs or parallel)
        self._options = settings.client_options()

    async def transcribe_one(self, upload: Upload) -> ExitCode:
        """Stream one file, print and save its transcript; never raises, returns the outcome."""
        progress = self._console.track(upload.label, upload.info, several=self._several)
        async with self._limit:
            return await settle(self._stream_and_save(upload, progress), progress, upload.path)

    async def _stream_and_save(self, upload: Upload, progress: FileProgress) -> list[Path]:
        client = StreamClient(FileAudio(upload.path, upload.info), self._options, progress)
        final = await client.transcribe()
        transcript = to_transcript(final, upload.path.name)
        self._console.transcript(stdout_text(transcript, upload.label, self._several))
        return save_transcript(transcript, self._out_dir, upload.stem)
