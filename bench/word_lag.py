"""Lag of a word, as the architecture defines it (ARCHITECTURE.md, "Live mode", 6).

For each word of a live stream's `final`: the first time the client showed it correctly —
in a partial or a segment, with every word before it as in the final — minus the time the
client had sent the audio where the word ends. The commit lag is the same, counting only
committed text (segments). Text is compared as `tests.speech.normalize_text` words, so case
and punctuation that a partial writes differently from the final do not count as errors.

What the client shows: the committed segments so far, then the latest partial (each partial
replaces the one before, `text: ""` clears it). A partial stays on screen until the next
one, even after a segment committed some of its words: a client does not know which; for the
lag it changes nothing, since a word shown twice puts every word after it out of place.

Where a word ends: the final's word timestamps (the stream asks for `word_timestamps`).
They come from the same decodes that committed the words — cross-attention alignment, good to
about a tenth of a second on clear speech — and need nothing but the farm. A forced aligner
would be more exact but is one more model to install, for an error far below the lags that
matter (the targets are 1–3.5 s). A word the timestamps put a little late makes its lag look
a little shorter; one put past the audio is clamped to the last packet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.speech import normalize_text


@dataclass(frozen=True)
class TimedWord:
    """A word of the final (normalised) and where its audio ends, in stream seconds."""

    word: str
    end: float


@dataclass(frozen=True)
class Screen:
    """What the client shows from `at` on: committed words, and those plus the partial."""

    at: float
    committed: tuple[str, ...]
    shown: tuple[str, ...]


@dataclass(frozen=True)
class WordLags:
    """Per word of the final, in order: its partial lag and its commit lag (seconds)."""

    words: list[TimedWord]
    partial: list[float]
    commit: list[float]


def final_words(final: dict[str, Any]) -> list[TimedWord]:
    """The final's words with their end times (a word that normalises to two, like
    "cold-hearted", gives two with the same end; one that is only punctuation, none)."""
    words = [
        TimedWord(token, float(word["end"]))
        for segment in final["segments"]
        for word in segment.get("words") or ()
        for token in normalize_text(word["word"]).split()
    ]
    text = normalize_text(final["text"]).split()
    if [w.word for w in words] != text:
        raise ValueError("the final's words do not spell its text (no word timestamps?)")
    return words


def screens(messages: Sequence[dict[str, Any]], arrived: Sequence[float]) -> list[Screen]:
    """What the client showed after each `partial` and `segment` it received."""
    committed: list[str] = []
    partial: list[str] = []
    shown = []
    for message, at in zip(messages, arrived, strict=True):
        kind = message.get("type")
        if kind == "segment":
            committed += normalize_text(message["text"]).split()
        elif kind == "partial":
            partial = normalize_text(message["text"]).split()
        else:
            continue
        shown.append(Screen(at, tuple(committed), tuple(committed + partial)))
    return shown


def first_correct(
    shown: Sequence[tuple[float, Sequence[str]]], words: Sequence[str]
) -> list[float]:
    """For each of `words`, the first time (of `shown`: (time, words on screen), in time
    order) at which it and every word before it were on screen as in `words`; inf if never."""
    times = [math.inf] * len(words)
    for at, screen in shown:
        for index, (want, have) in enumerate(zip(words, screen, strict=False)):
            if want != have:
                break
            times[index] = min(times[index], at)
    return times


def sent_at(t: float, sent: Sequence[float], packet_s: float) -> float:
    """When the client had sent the audio up to `t` stream seconds: the send time of the
    packet holding it (packet i carries [i, i + 1) × `packet_s`), the last one for a `t`
    past the audio."""
    index = math.ceil(t / packet_s - 1e-6) - 1
    return sent[min(max(index, 0), len(sent) - 1)]


def word_lags(
    messages: Sequence[dict[str, Any]],
    arrived: Sequence[float],
    sent: Sequence[float],
    packet_s: float,
) -> WordLags:
    """Partial and commit lag of every word of the stream's final. `messages` are what the
    client received, `arrived` when (same clock as `sent`), `sent` when each packet went."""
    (final,) = [m for m in messages if m.get("type") == "final"]
    words = final_words(final)
    tokens = [w.word for w in words]
    on_screen = screens(messages, arrived)
    shown = first_correct([(s.at, s.shown) for s in on_screen], tokens)
    committed = first_correct([(s.at, s.committed) for s in on_screen], tokens)
    spoken = [sent_at(w.end, sent, packet_s) for w in words]
    return WordLags(
        words,
        [at - said for at, said in zip(shown, spoken, strict=True)],
        [at - said for at, said in zip(committed, spoken, strict=True)],
    )
