"""What a person sees while files stream: a live board on a terminal, plain lines elsewhere.

stdout carries transcripts only, so `whisperfarm-source x.mp3 > x.txt` stays clean; all
the rest goes to stderr. On a terminal each file owns one line that is redrawn in place
(ANSI cursor moves), and segments, notes and errors scroll above the board. When stderr
is a pipe or a log, in-place redraws would be noise, so each change of state becomes one
plain line instead; `--quiet` keeps only errors.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TextIO

from whisperfarm.protocol import Segment
from whisperfarm.streaming.decode import AudioInfo

PROG = "whisperfarm-source"
REDRAW_INTERVAL = 0.1
"""Seconds between two redraws caused by upload progress alone (state changes redraw at once)."""


class Mode(StrEnum):
    TTY = "tty"
    PLAIN = "plain"
    QUIET = "quiet"


class Console:
    """Owns stderr and stdout for the whole run, so concurrent streams never interleave a line."""

    def __init__(
        self,
        err: TextIO,
        out: TextIO,
        mode: Mode,
        *,
        width: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._err, self._out = err, out
        self._width = width or (lambda: shutil.get_terminal_size().columns)
        self._clock = clock
        self._rows: list[FileProgress] = []
        self._drawn = 0
        self._last_redraw = -REDRAW_INTERVAL

    @classmethod
    def for_terminal(cls, quiet: bool) -> Console:
        """The console for this process, looked up at call time (tests swap sys.stderr)."""
        mode = Mode.QUIET if quiet else Mode.TTY if sys.stderr.isatty() else Mode.PLAIN
        return cls(sys.stderr, sys.stdout, mode)

    def track(self, label: str, info: AudioInfo, *, several: bool) -> FileProgress:
        """Start showing one file; its line stays on the board until the run ends."""
        progress = FileProgress(self, label, info, several=several)
        if self.mode is Mode.TTY:
            self._rows.append(progress)
            self.refresh(force=True)
        return progress

    def error(self, message: str) -> None:
        """A failure: shown in every mode, `--quiet` included."""
        self._scroll(self._err, f"{PROG}: {message}")

    def note(self, text: str) -> None:
        """A line above the board (TTY) or on its own (plain); nothing when quiet."""
        if self.mode is not Mode.QUIET:
            self._scroll(self._err, text)

    def status(self, text: str) -> None:
        """A change of state, spelled out only where there is no board to show it."""
        if self.mode is Mode.PLAIN:
            self._scroll(self._err, f"{PROG}: {text}")

    def transcript(self, text: str) -> None:
        self._scroll(self._out, text)

    def refresh(self, *, force: bool = False) -> None:
        """Redraw the board, at most every `REDRAW_INTERVAL` unless `force`."""
        if self.mode is not Mode.TTY:
            return
        now = self._clock()
        if not force and now - self._last_redraw < REDRAW_INTERVAL:
            return
        self._last_redraw = now
        self._clear()
        self._draw()

    def _scroll(self, stream: TextIO, text: str) -> None:
        self._clear()
        stream.write(text + "\n")
        stream.flush()
        self._draw()

    def _clear(self) -> None:
        """Move to the board's first line and erase down, so the next write replaces it."""
        if self._drawn:
            self._err.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if self.mode is not Mode.TTY or not self._rows:
            return
        # One column short of the width: a line that wraps would break the cursor arithmetic.
        width = max(self._width() - 1, 10)
        label_width = max(len(row.label) for row in self._rows)
        for row in self._rows:
            self._err.write(row.line(label_width)[:width] + "\n")
        self._err.flush()
        self._drawn = len(self._rows)


class FileProgress:
    """One file's progress; the stream client reports to it (`client.StreamEvents`)."""

    def __init__(self, console: Console, label: str, info: AudioInfo, *, several: bool) -> None:
        self.label = label
        self.state = "waiting…"
        self._console = console
        self._info = info
        self._prefix = f"{label} " if several else ""

    def line(self, label_width: int) -> str:
        return f"{self.label:<{label_width}}  {self.state}"

    def accepted(self, job_id: str, resume_from_frame: int) -> None:
        if resume_from_frame:
            at = resume_from_frame / self._info.sample_rate
            self._console.status(f"{self.label}: resumed job {job_id} at {at:.1f} s")
        else:
            self._console.status(f"{self.label}: streaming as job {job_id}")
        self.sent(resume_from_frame, force=True)

    def sent(self, frames: int, *, force: bool = False) -> None:
        """Frames sent so far; the percentage is against the duration hint, if any."""
        expected = self._info.expected_frames
        if expected:
            state = f"uploading {min(100, frames * 100 // expected)}%"
        else:
            state = f"uploading {frames / self._info.sample_rate:.1f} s"
        if state != self.state:
            self.state = state
            self._console.refresh(force=force)

    def uploaded(self) -> None:
        self._set("transcribing…", f"{self.label}: uploaded, transcribing…")

    def segment(self, segment: Segment) -> None:
        span = f"[{_clock(segment.start)} → {_clock(segment.end)}]"
        self._console.note(f"{self._prefix}{span} {segment.text.strip()}")

    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None:
        self.state = f"reconnecting ({attempt}/{retries})…"
        self._console.note(
            f"{PROG}: {self.label}: connection lost ({reason}), "
            f"resuming in {delay:g} s (retry {attempt}/{retries})"
        )

    def done(self, saved: list[str]) -> None:
        self._set("done", f"{self.label}: done, saved {', '.join(saved)}")

    def failed(self, message: str) -> None:
        self.state = "failed"
        self._console.error(f"{self.label}: {message}")

    def _set(self, state: str, status: str) -> None:
        self.state = state
        self._console.status(status)
        self._console.refresh(force=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{secs:04.1f}"
