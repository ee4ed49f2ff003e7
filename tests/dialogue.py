"""Dialogues with known turns: espeak-ng voices (or recorded clips) one after another.

Speaker-label tests and `bench/diarize.py` need audio where who speaks when is known
exactly. Each turn is synthesized (or read from `tests/fixtures/audio`), resampled to
16 kHz mono and joined with a pause, and the turns' times are returned as the reference.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from tests.speech import ESPEAK_SPEED, FIXTURE_DIR, require_tool

RATE: Final = 16_000
PAUSE_S: Final = 0.6
"""Between turns: a natural gap, shorter than Whisper's own segment breaks need."""

VOICES: Final[dict[str, tuple[str, int]]] = {
    "A": ("en-us+m3", 40),
    "B": ("en-us+f2", 80),
    "C": ("en-us+klatt4", 60),
}
"""espeak-ng voice and pitch per speaker. espeak-ng's voices share one synthesizer and
sound alike to a speaker model (`en-gb+f4` scores 0.71–0.76 against `A`, as close as two
takes of one real reader): these three score 0.19–0.51 against each other, 0.89+ with
themselves, as different people do."""

LINES: Final[list[str]] = [
    "Good morning, thank you for coming in today to talk about the new project.",
    "Thanks for having me. I have been looking forward to this conversation all week.",
    "Let us start with the schedule. When do you think the first version will be ready?",
    "If everything goes well, we should have a working prototype by the end of next month.",
    "That sounds reasonable. What do you need from the rest of the team to get there?",
    "Mostly time with the designers, and a quiet room where we can test the early builds.",
    "I can arrange both of those. Is there anything else that worries you about the plan?",
    "Only the budget for the second phase, but we can talk about that another day.",
    "Very well. Let us meet again next week and see how far the first steps have gone.",
]
"""Turns of a conversation, spoken in order by the speakers of a dialogue in rotation."""


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float


def espeak_pcm(text: str, speaker: str) -> np.ndarray:
    """`text` in `speaker`'s voice (`VOICES`), 16 kHz mono int16."""
    espeak = require_tool("espeak-ng")
    sox = require_tool("sox")
    voice, pitch = VOICES[speaker]
    with tempfile.TemporaryDirectory(prefix="dialogue-") as tmp:
        raw, out = Path(tmp) / "espeak.wav", Path(tmp) / "16k.wav"
        speak = [espeak, "-v", voice, "-p", str(pitch), "-s", str(ESPEAK_SPEED), "-w", str(raw)]
        subprocess.run(
            [*speak, "--stdin"], input=text, text=True, check=True, capture_output=True, timeout=60
        )
        subprocess.run(
            [sox, "-G", str(raw), "-r", str(RATE), "-c", "1", str(out)], check=True, timeout=60
        )
        return read_wav(out)


def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV's samples."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise ValueError(f"{path} is not 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def join_turns(parts: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, list[Turn]]:
    """The parts one after another with `PAUSE_S` between them, and where each is."""
    gap = np.zeros(int(PAUSE_S * RATE), dtype=np.int16)
    pieces: list[np.ndarray] = [gap]
    turns: list[Turn] = []
    at = len(gap)
    for speaker, pcm in parts:
        trimmed = np.trim_zeros(pcm)
        turns.append(Turn(speaker, at / RATE, (at + len(trimmed)) / RATE))
        pieces += [trimmed, gap]
        at += len(trimmed) + len(gap)
    return np.concatenate(pieces), turns


def espeak_dialogue(speakers: str, turns: int) -> tuple[np.ndarray, list[Turn]]:
    """`turns` lines of `LINES` spoken by `speakers` ("AB", "ABC") in rotation."""
    parts = [
        (
            speakers[i % len(speakers)],
            espeak_pcm(LINES[i % len(LINES)], speakers[i % len(speakers)]),
        )
        for i in range(turns)
    ]
    return join_turns(parts)


def recorded_dialogue() -> tuple[np.ndarray, list[Turn]]:
    """The committed recordings in turns: the LibriVox reader (three clips) and President
    Kennedy, alternating — two real voices."""
    austen = sorted(FIXTURE_DIR.glob("sense_and_sensibility_*.wav"))
    kennedy = read_wav(FIXTURE_DIR / "jfk.wav")
    parts = [("A", read_wav(austen[0])), ("B", kennedy), ("A", read_wav(austen[1]))]
    parts += [("B", kennedy[: len(kennedy) // 2]), ("A", read_wav(austen[2]))]
    return join_turns(parts)
