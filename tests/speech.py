"""Speech fixtures for tests: real recordings, espeak-ng sentences and a WER helper.

Transcription tests cannot compare text exactly: the model may write "cold-hearted" where
the reference says "cold hearted", or add a comma. They compare word error rate (WER) on
lightly normalised text instead, against a threshold with headroom. Everything here is
chosen so that threshold is meaningful: every sentence and clip below was checked to
transcribe with WER ≤ 0.10 on the bundled tiny.en model, so a test allowing 0.15 fails on
real regressions (wrong sample rate, dropped channels, truncated audio), not on noise.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Final

import jiwer
import pytest

FIXTURE_DIR: Final = Path(__file__).parent / "fixtures" / "audio"
"""Committed real speech clips, with `references.json` and a README naming their sources."""

SENTENCES: Final[list[str]] = [
    "The children played happily in the garden while their parents cooked dinner.",
    "We should check the weather forecast before we decide to go for a long walk.",
    "She opened the heavy door slowly and looked around the quiet empty room.",
    "The old man sat on the bench and watched the birds fly over the lake.",
]
"""Plain English sentences that tiny.en transcribes from `synthesize()` without an error.

Each was checked at WER 0.00 as wav, mp3, m4a, ogg/opus, mp4, webm and 44.1 kHz stereo
flac, so a test allowing 0.15 has headroom. They hold no numbers or proper names: "ten"
vs "10" or "Stella" vs "Stela" would count as errors that say nothing about the farm.
Candidates that were dropped, to save the next person the search: "... leave the house
tonight" (webm gave "to hide"), "The train was late again ..." ("later"), "... put it in
the mailbox ..." ("mail outside"), "Our neighbours ..." (spelled "neighbors").
"""

ESPEAK_SPEED: Final = 150
"""Words per minute, below espeak-ng's default of 175: slower robot speech is clearer to
tiny.en, and every sentence in `SENTENCES` was verified at this speed."""

_APOSTROPHES: Final = re.compile(r"['\u2018\u2019\u02bc`]")
_NON_WORD: Final = re.compile(r"[^0-9a-z]+")


def normalize_text(text: str) -> str:
    """Reduce `text` to lower-case words separated by single spaces.

    Only spelling noise is removed, so WER counts words the model got wrong rather than
    punctuation or casing it chose. Apostrophes are dropped ("don't" → "dont", with curly
    quotes treated alike) so a contraction stays one word; hyphens, dashes and every other
    punctuation mark become spaces, so "cold-hearted" equals "cold hearted". Nothing is
    spelled out: "10" and "ten" remain different words, as they are to a reader.
    Accents are folded (NFKD, combining marks dropped) so "café" equals "cafe".
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    no_apostrophes = _APOSTROPHES.sub("", folded)
    return " ".join(_NON_WORD.sub(" ", no_apostrophes).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of `hypothesis` against `reference`, both passed through `normalize_text`.

    jiwer rejects an empty reference (WER is undefined: there is nothing to divide by).
    Here an empty reference scores 0.0 against an empty hypothesis and 1.0 against
    anything else, so a silent clip that produces text fails a threshold instead of
    raising inside the test.
    """
    ref = normalize_text(reference)
    hyp = normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def require_tool(name: str) -> str:
    """Path of the system tool `name`, or end the test.

    On CI (`CI=true`) a missing tool means a broken image, so the test fails loudly; on a
    developer machine it is skipped, with the reason shown, rather than reported as a bug.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"system tool {name!r} is not installed (not found on PATH)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure", pytrace=False)
    print(f"skipping: {reason}", file=sys.stderr)
    pytest.skip(reason)


@functools.cache
def _ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """Encoder names this ffmpeg build offers (builds differ: libx264 is often left out)."""
    listing = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(
        fields[1]
        for line in listing.splitlines()
        if len(fields := line.split()) >= 2 and len(fields[0]) == 6
    )


def _pick_encoder(ffmpeg: str, *choices: str) -> str:
    """The first of `choices` this ffmpeg has; fail (or skip) the test if none."""
    available = _ffmpeg_encoders(ffmpeg)
    for choice in choices:
        if choice in available:
            return choice
    reason = f"ffmpeg has none of the encoders {choices}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


_BLACK_VIDEO: Final = ["-f", "lavfi", "-i", "color=c=black:s=64x64:r=10"]
"""A tiny video input, so .mp4/.webm fixtures are real video files with an audio track."""


def _codec_args(ffmpeg: str, suffix: str) -> list[str]:
    """ffmpeg output options for the container named by `suffix`."""
    match suffix:
        case ".wav":
            return ["-c:a", "pcm_s16le"]
        case ".flac":
            return ["-c:a", "flac"]
        case ".mp3":
            return ["-c:a", "libmp3lame", "-q:a", "4"]
        case ".ogg" | ".opus":
            return ["-c:a", "libopus", "-b:a", "48k"]
        case ".m4a":
            return ["-c:a", "aac", "-b:a", "96k"]
        case ".mp4":
            video = _pick_encoder(ffmpeg, "libx264", "mpeg4")
            return ["-map", "0:v", "-map", "1:a", "-c:v", video, "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "96k", "-shortest"]  # fmt: skip
        case ".webm":
            video = _pick_encoder(ffmpeg, "libvpx-vp9", "libvpx")
            return ["-map", "0:v", "-map", "1:a", "-c:v", video, "-deadline", "realtime",
                    "-cpu-used", "8", "-c:a", "libopus", "-b:a", "48k", "-shortest"]  # fmt: skip
        case _:
            raise ValueError(f"synthesize() cannot write {suffix or 'suffix-less'} files")


def synthesize(
    text: str,
    out_path: Path,
    *,
    rate: int | None = None,
    channels: int | None = None,
    voice: str = "en-us",
) -> Path:
    """Speak `text` with espeak-ng into `out_path`, in the format its suffix names.

    Real speech made at test time keeps binary fixtures out of the repository and lets a
    test pick any container: .wav, .flac, .mp3, .ogg/.opus, .m4a, .mp4 (black 64x64
    video plus the audio) and .webm. `rate` and `channels` resample and re-channel the
    audio (e.g. 44100 Hz stereo) to exercise the decoder's conversions; left as None,
    espeak-ng's 22050 Hz mono is kept where the codec allows it (Opus picks 48 kHz).
    """
    espeak = require_tool("espeak-ng")
    ffmpeg = require_tool("ffmpeg")
    suffix = out_path.suffix.lower()
    codec = _codec_args(ffmpeg, suffix)
    video_in = _BLACK_VIDEO if suffix in {".mp4", ".webm"} else []
    audio_opts = [
        *(["-ar", str(rate)] if rate else []),
        *(["-ac", str(channels)] if channels else []),
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synthesize-") as tmp:
        spoken = Path(tmp) / "espeak.wav"
        # Text goes in on stdin so one that starts with "-" is not read as an option.
        _run([espeak, "-v", voice, "-s", str(ESPEAK_SPEED), "-w", str(spoken), "--stdin"], text)
        _run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
              *video_in, "-i", str(spoken), *audio_opts, *codec, str(out_path)])  # fmt: skip
    return out_path


def _run(command: list[str], stdin: str | None = None) -> None:
    """Run a tool, raising with its stderr: a bare CalledProcessError hides why it failed."""
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} exited with {done.returncode}: {done.stderr.strip()}"
        )


def fixture_clips() -> list[tuple[Path, str]]:
    """The committed real recordings and their reference transcripts, sorted by file name.

    Synthetic speech is too clean to be the only test input; these are real human voices
    (LibriVox readers, President Kennedy), short enough to keep the repository small.
    """
    references: dict[str, str] = json.loads(
        (FIXTURE_DIR / "references.json").read_text(encoding="utf-8")
    )
    return [(FIXTURE_DIR / name, text) for name, text in sorted(references.items())]
