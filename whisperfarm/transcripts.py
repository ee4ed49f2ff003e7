"""Transcript rendering: one `Transcript` value, four file formats.

The broker stores every format next to the job and the source CLI writes txt/json, so
the rendering lives in the shared contract rather than in either component.

With speaker labels (`start.diarize`), txt has one line per turn (`S1: …`, consecutive
segments of one speaker joined), srt prefixes each cue's text with `S1: ` and vtt opens
it with a voice tag (`<v S1>`); json keeps `speaker` on every segment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel

from whisperfarm.protocol import SegmentData

FORMATS = ("txt", "json", "srt", "vtt")
MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


class Transcript(BaseModel):
    """What a finished job produced."""

    job_id: str
    name: str = ""
    text: str
    segments: list[SegmentData]
    language: str | None = None
    duration: float = 0.0


def join_segments(segments: list[SegmentData]) -> str:
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def _timestamp(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


class Turn(NamedTuple):
    """One speaker's consecutive segments, joined."""

    speaker: str
    start: float
    end: float
    text: str


def speaker_number(label: str) -> int | None:
    """`n` of a speaker label "S<n>" (the worker names speakers so); None for another shape."""
    number = label.removeprefix("S")
    return int(number) if label.startswith("S") and number.isdigit() else None


def turns(segments: list[SegmentData]) -> list[Turn]:
    """The segments with text as turns ("" for the speaker of unlabelled ones)."""
    out: list[tuple[str, list[SegmentData]]] = []
    for s in segments:
        if not s.text.strip():
            continue
        who = s.speaker or ""
        if out and out[-1][0] == who:
            out[-1][1].append(s)
        else:
            out.append((who, [s]))
    return [Turn(who, group[0].start, group[-1].end, join_segments(group)) for who, group in out]


def _labelled(t: Transcript) -> bool:
    return any(s.speaker for s in t.segments)


def to_txt(t: Transcript) -> str:
    if not _labelled(t):
        return t.text.strip() + "\n"
    return "".join(f"{turn.speaker}: {turn.text}\n" for turn in turns(t.segments))


def to_json(t: Transcript) -> str:
    return t.model_dump_json(indent=2) + "\n"


def to_srt(t: Transcript) -> str:
    blocks = [
        f"{n}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n"
        f"{f'{s.speaker}: ' if s.speaker else ''}{s.text.strip()}\n"
        for n, s in enumerate(t.segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n"
        f"{f'<v {s.speaker}>' if s.speaker else ''}{s.text.strip()}\n"
        for s in t.segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


RENDERERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}


def render(t: Transcript, fmt: str) -> str:
    """Render in one of `FORMATS`; raises KeyError for anything else."""
    return RENDERERS[fmt](t)
