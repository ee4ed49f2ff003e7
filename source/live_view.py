"""What a person sees of a live stream: committed lines, and the tail still being decided.

stdout carries the transcript, one committed segment per line, as each settles, so
`whisperfarm-source --mic > notes.txt` writes a clean transcript while it records. On a
terminal the partial tail (text the farm may still revise) sits on one line below them,
dimmed and rewritten in place as it changes; it is cut to the terminal's width from the
left, because the newest words are the ones being watched. Notes and errors go to stderr
through the `Console`, the partial line cleared first so the two never mix.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from typing import TextIO

from source.progress import PROG, Console, reconnect_note
from whisperfarm.protocol import Final, Partial, Segment, SegmentData

CLEAR_LINE = "\r\x1b[K"
DIM, PLAIN = "\x1b[2m", "\x1b[0m"


class LiveView:
    """`StreamEvents` of one live stream (see the module docstring)."""

    def __init__(
        self,
        console: Console,
        out: TextIO,
        label: str,
        *,
        tty: bool,
        width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self._console, self._out, self.label = console, out, label
        self._tty, self._width = tty, width
        self._partial = ""
        """The latest partial's text."""
        self._drawn = ""
        """What the partial line shows now (empty: the cursor is at the start of a clear line)."""
        self._printed = -1
        """The id of the last segment printed."""

    def accepted(self, job_id: str, resume_from_frame: int) -> None:
        if resume_from_frame:
            self._note(f"resumed job {job_id}")
        else:
            self._note(f"live as job {job_id} (Ctrl-C ends the stream)")

    def sent(self, frames: int) -> None:
        pass  # live audio is sent as it comes: there is no progress to show

    def uploaded(self) -> None:
        self._note("ended, waiting for the last words…")

    def partial(self, partial: Partial) -> None:
        self._partial = " ".join(partial.text.split())
        self._draw_partial()

    def segment(self, segment: Segment) -> None:
        """A committed line; the partial held these words, so it waits for the next one."""
        self._partial = ""
        self._print_committed([segment])

    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None:
        self._note(reconnect_note(attempt, retries, delay, reason))

    def interrupted(self) -> None:
        self._note("ending the stream (Ctrl-C again quits without the transcript)")

    def finish(self, final: Final) -> None:
        """Print what the final commits that no `segment` message brought (none, normally)."""
        self._partial = ""
        self._print_committed(final.segments)

    def done(self, saved: list[str]) -> None:
        self._note(f"done, saved {', '.join(saved)}")

    def failed(self, message: str) -> None:
        self._around_partial(lambda: self._console.error(f"{self.label}: {message}"))

    def _print_committed(self, segments: Iterable[Segment | SegmentData]) -> None:
        lines = []
        for segment in segments:
            if segment.id > self._printed:
                self._printed = segment.id
                if text := segment.text.strip():
                    lines.append(f"{text}\n")
        if lines:
            self._clear_partial()
            self._out.write("".join(lines))
            self._draw_partial()

    def _note(self, text: str) -> None:
        self._around_partial(lambda: self._console.note(f"{PROG}: {self.label}: {text}"))

    def _around_partial(self, show: Callable[[], None]) -> None:
        """A stderr line where the partial was, then the partial again below it."""
        self._clear_partial()
        show()
        self._draw_partial()

    def _clear_partial(self) -> None:
        if self._drawn:
            self._out.write(CLEAR_LINE)
            self._out.flush()
            self._drawn = ""

    def _draw_partial(self) -> None:
        """The partial line as it is now (on a terminal); flushes what was written before."""
        tail = self._fit(self._partial) if self._tty else ""
        if tail != self._drawn:
            self._out.write(f"{CLEAR_LINE}{DIM}{tail}{PLAIN}" if tail else CLEAR_LINE)
            self._drawn = tail
        self._out.flush()

    def _fit(self, text: str) -> str:
        """The end of `text` within one terminal line (a wrapped line cannot be rewritten)."""
        room = max(self._width() - 1, 10)
        return text if len(text) <= room else "…" + text[-(room - 1) :]
