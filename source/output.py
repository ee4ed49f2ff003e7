"""Saving transcripts: the output directory, unique names per run, atomic writes, stdout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from whisperfarm.files import write_atomic
from whisperfarm.protocol import Final
from whisperfarm.streaming.errors import OutputError
from whisperfarm.transcripts import Transcript, render

SAVED_FORMATS = ("txt", "json")


def make_out_dir(out_dir: Path) -> None:
    """Create the output directory before streaming: a transcript must have somewhere to go."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the output directory {out_dir}: {exc.strerror or exc}"
        ) from None


def plan_stems(paths: Sequence[Path]) -> list[str]:
    """One output stem per input, in order, never two alike within one run.

    `a/x.mp3` and `b/x.wav` would both write `x.txt`; the second becomes `x-2`. Stems
    are compared case-folded because `X.txt` and `x.txt` are one file on macOS and
    Windows. Files left by an earlier run are overwritten on purpose: rerunning a file
    should refresh its transcript, not pile up copies.
    """
    taken: set[str] = set()
    stems: list[str] = []
    for path in paths:
        stem, n = path.stem, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{path.stem}-{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def save_transcript(transcript: Transcript, out_dir: Path, stem: str) -> list[Path]:
    """Write `<stem>.txt` and `<stem>.json` into `out_dir`; raise `OutputError` on failure."""
    written = []
    for fmt in SAVED_FORMATS:
        target = out_dir / f"{stem}.{fmt}"
        try:
            write_atomic(target, render(transcript, fmt))
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written


def stdout_text(transcript: Transcript, label: str, several: bool) -> str:
    """The transcript as printed on stdout (a line per turn with speaker labels);
    prefixed by the file when several stream."""
    text = render(transcript, "txt").strip()
    return f"{label}: {text}" if several else text


def to_transcript(final: Final, name: str) -> Transcript:
    return Transcript(
        job_id=final.job_id,
        name=name,
        text=final.text,
        segments=final.segments,
        language=final.language,
        duration=final.duration,
    )
