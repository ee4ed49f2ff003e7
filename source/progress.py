"""What a person sees while files stream: progress bars on a terminal, plain lines elsewhere.

stdout carries transcripts only, so `whisperfarm-source x.mp3 > x.txt` stays clean; all
the rest goes to stderr. On a terminal each file owns one tqdm bar, one line redrawn in
place, and segments, notes and errors scroll above the bars (`tqdm.write`). When stderr
is a pipe or a log, in-place redraws would be noise, so each change of state becomes one
plain line instead; `--quiet` keeps only errors.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from whisperfarm.protocol import Partial, Segment
from whisperfarm.streaming.decode import AudioInfo

PROG = "whisperfarm-source"
REDRAW_INTERVAL = 0.1
"""Seconds between two redraws caused by upload progress alone (state changes redraw at once)."""
BAR_WIDTH = 20
"""Characters of the bar itself; the file name and its state come before it."""


class Mode(StrEnum):
    TTY = "tty"
    PLAIN = "plain"
    QUIET = "quiet"


class Console:
    """Owns stderr and stdout for the whole run, so concurrent streams never interleave a line.

    Use it as a context manager: leaving it closes the bars top to bottom, which is the
    order in which tqdm leaves each one on its own line.
    """

    def __init__(
        self,
        err: TextIO,
        out: TextIO,
        mode: Mode,
        *,
        size: Callable[[], os.terminal_size] = shutil.get_terminal_size,
    ) -> None:
        self.mode = mode
        self._err, self._out = err, out
        self._size = size
        self._rows: list[FileProgress] = []

    @classmethod
    def for_terminal(cls, quiet: bool) -> Console:
        """The console for this process, looked up at call time (tests swap sys.stderr)."""
        mode = Mode.QUIET if quiet else Mode.TTY if sys.stderr.isatty() else Mode.PLAIN
        return cls(sys.stderr, sys.stdout, mode)

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for row in self._rows:
            row.close()

    def track(self, label: str, info: AudioInfo, *, several: bool) -> FileProgress:
        """Start showing one file; its bar stays on screen until the run ends."""
        progress = FileProgress(self, label, info, several=several)
        if self.mode is Mode.TTY:
            self._rows.append(progress)
            progress.bar = self._new_bar(info, progress.description())
            for row in self._rows[:-1]:  # a longer name realigns the bars above it
                row.show()
        return progress

    @property
    def label_width(self) -> int:
        return max((len(row.label) for row in self._rows), default=0)

    def error(self, message: str) -> None:
        """A failure: shown in every mode, `--quiet` included."""
        self._scroll(self._err, f"{PROG}: {message}")

    def note(self, text: str) -> None:
        """A line above the bars (TTY) or on its own (plain); nothing when quiet."""
        if self.mode is not Mode.QUIET:
            self._scroll(self._err, text)

    def status(self, text: str) -> None:
        """A change of state, spelled out only where there is no bar to show it."""
        if self.mode is Mode.PLAIN:
            self._scroll(self._err, f"{PROG}: {text}")

    def transcript(self, text: str) -> None:
        self._scroll(self._out, text)

    def _new_bar(self, info: AudioInfo, description: str) -> tqdm[None]:
        """A bar for one file, counting seconds of audio sent (of the duration hint, if any)."""
        total = info.expected_frames / info.sample_rate if info.expected_frames else None
        columns, lines = self._size()  # shutil's, not tqdm's: it falls back from a 0x0 pty
        return tqdm(
            desc=description,
            file=self._err,
            position=len(self._rows) - 1,
            total=total,
            # One column short of the width: a line that wraps breaks tqdm's cursor arithmetic.
            ncols=max(columns - 1, 10),
            nrows=lines,
            bar_format=f"{{desc}} {{percentage:3.0f}}%|{{bar:{BAR_WIDTH}}}|"
            if total
            else "{desc} {n:.1f} s",
            mininterval=REDRAW_INTERVAL,
            miniters=0,
            leave=True,
        )

    def _scroll(self, stream: TextIO, text: str) -> None:
        if self._rows:
            tqdm.write(text, file=stream)
        else:
            stream.write(text + "\n")
        stream.flush()


class FileProgress:
    """One file's progress; the stream client reports to it (`client.StreamEvents`).

    On a terminal it drives the file's bar; elsewhere it only reports through the
    console's status lines.
    """

    def __init__(self, console: Console, label: str, info: AudioInfo, *, several: bool) -> None:
        self.label = label
        self.state = "waiting…"
        self.bar: tqdm[None] | None = None
        """The file's bar, on a terminal only (the console sets it)."""
        self._console = console
        self._info = info
        self._prefix = f"{label} " if several else ""

    def description(self) -> str:
        return f"{self.label:<{self._console.label_width}}  {self.state}"

    def show(self) -> None:
        """Redraw the bar now with the current state (a change of state cannot wait)."""
        if self.bar is not None:
            self.bar.set_description_str(self.description())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def accepted(self, job_id: str, resume_from_frame: int) -> None:
        if resume_from_frame:
            at = resume_from_frame / self._info.sample_rate
            self._console.status(f"{self.label}: resumed job {job_id} at {at:.1f} s")
        else:
            self._console.status(f"{self.label}: streaming as job {job_id}")
        self.state = "uploading"
        self.sent(resume_from_frame)
        self.show()

    def sent(self, frames: int) -> None:
        """Frames sent so far; the bar redraws at most every `REDRAW_INTERVAL` for this."""
        if self.bar is None:
            return
        seconds = frames / self._info.sample_rate
        if self.bar.total:  # past the duration hint, a bar would lose its percentage
            seconds = min(seconds, self.bar.total)
        self.bar.update(seconds - self.bar.n)

    def uploaded(self) -> None:
        if self.bar is not None and self.bar.total:  # all of it, whatever the hint said
            self.bar.update(self.bar.total - self.bar.n)
        self._set("transcribing…", f"{self.label}: uploaded, transcribing…")

    def segment(self, segment: Segment) -> None:
        span = f"[{_clock(segment.start)} → {_clock(segment.end)}]"
        self._console.note(f"{self._prefix}{span} {segment.text.strip()}")

    def partial(self, partial: Partial) -> None:
        pass  # a file sent as fast as it goes is not live: the client refuses partials for it

    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None:
        self.state = f"reconnecting ({attempt}/{retries})…"
        self.show()
        self._console.note(
            f"{PROG}: {self.label}: {reconnect_note(attempt, retries, delay, reason)}"
        )

    def done(self, saved: list[str]) -> None:
        self._set("done", f"{self.label}: done, saved {', '.join(saved)}")

    def failed(self, message: str) -> None:
        self.state = "failed"
        self.show()
        self._console.error(f"{self.label}: {message}")

    def _set(self, state: str, status: str) -> None:
        self.state = state
        self._console.status(status)
        self.show()


def reconnect_note(attempt: int, retries: int, delay: float, reason: str) -> str:
    return f"connection lost ({reason}), resuming in {delay:g} s (retry {attempt}/{retries})"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{secs:04.1f}"
