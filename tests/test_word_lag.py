"""Word lag (bench/word_lag.py), the figure bench/live.py reports: pure logic on made-up
message sequences, so each rule of the definition has a case that breaks when it is wrong."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.word_lag import final_words, first_correct, sent_at, word_lags

PACKET_S = 0.0625


def word(text: str, end: float) -> dict[str, Any]:
    return {"word": text, "start": end - 0.2, "end": end, "probability": 0.9}


def partial(text: str) -> dict[str, Any]:
    return {"type": "partial", "text": text, "start": 0.0, "end": 0.0}


def segment(text: str, *words: dict[str, Any]) -> dict[str, Any]:
    return {"type": "segment", "text": text, "words": list(words)}


def final(*segments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "final",
        "text": " ".join(s["text"] for s in segments),
        "segments": segments,
    }


HELLO = segment(" Hello, world.", word(" Hello,", 0.5), word(" world.", 1.0))
AGAIN = segment(" Cold-hearted again!", word(" Cold-hearted", 1.5), word(" again!", 2.0))
SENT = [PACKET_S * (i + 1) + 0.01 for i in range(40)]
"""Each packet sent 10 ms after its audio ended: the audio up to t was sent at ≈ t."""


def lags(messages: list[dict[str, Any]], arrived: list[float]) -> tuple[list[float], list[float]]:
    result = word_lags(messages, arrived, SENT, PACKET_S)
    return result.partial, result.commit


def test_a_word_counts_from_the_first_partial_that_shows_it_and_commits_from_its_segment() -> None:
    messages = [partial("hello"), partial("Hello world"), HELLO, partial(""), final(HELLO)]
    partials, commits = lags(messages, [0.8, 1.3, 2.1, 2.1, 2.5])
    assert partials == pytest.approx([0.8 - 0.51, 1.3 - 1.01])
    assert commits == pytest.approx([2.1 - 0.51, 2.1 - 1.01])


def test_a_word_shown_wrong_counts_once_it_is_shown_right() -> None:
    messages = [partial("hollow"), partial("hello word"), partial("hello world"), HELLO,
                final(HELLO)]  # fmt: skip
    partials, _ = lags(messages, [0.7, 1.2, 1.6, 2.0, 2.2])
    assert partials == pytest.approx([1.2 - 0.51, 1.6 - 1.01])


def test_a_right_word_after_a_wrong_one_does_not_count_until_the_wrong_one_is_fixed() -> None:
    messages = [partial("yellow world"), partial("hello world"), HELLO, final(HELLO)]
    partials, _ = lags(messages, [1.2, 1.5, 2.0, 2.2])
    assert partials == pytest.approx([1.5 - 0.51, 1.5 - 1.01])


def test_a_word_shown_right_then_revised_keeps_its_first_time() -> None:
    messages = [partial("hello world"), partial("hello word"), HELLO, final(HELLO)]
    partials, commits = lags(messages, [1.2, 1.5, 2.0, 2.2])
    assert partials == pytest.approx([1.2 - 0.51, 1.2 - 1.01])
    assert commits == pytest.approx([2.0 - 0.51, 2.0 - 1.01])


def test_words_after_a_commit_count_from_partials_shown_after_the_committed_text() -> None:
    messages = [HELLO, partial("cold hearted"), partial("cold hearted again"), AGAIN,
                final(HELLO, AGAIN)]  # fmt: skip
    partials, commits = lags(messages, [1.2, 1.7, 2.3, 2.6, 2.8])
    # "cold-hearted" is two words, both ending where the word ends.
    assert partials == pytest.approx([1.2 - 0.51, 1.2 - 1.01, 1.7 - 1.51, 1.7 - 1.51, 2.3 - 2.01])
    assert commits == pytest.approx([1.2 - 0.51, 1.2 - 1.01, 2.6 - 1.51, 2.6 - 1.51, 2.6 - 2.01])


def test_case_and_punctuation_do_not_make_a_word_wrong() -> None:
    messages = [partial("HELLO WORLD"), HELLO, final(HELLO)]
    partials, _ = lags(messages, [1.2, 2.0, 2.2])
    assert partials == pytest.approx([1.2 - 0.51, 1.2 - 1.01])


def test_the_audio_up_to_t_was_sent_with_the_packet_that_holds_t() -> None:
    sent = [1.0, 2.0, 3.0]
    assert sent_at(0.0, sent, PACKET_S) == 1.0
    assert sent_at(0.0625, sent, PACKET_S) == 1.0
    assert sent_at(0.07, sent, PACKET_S) == 2.0
    assert sent_at(0.125, sent, PACKET_S) == 2.0
    assert sent_at(0.1875, sent, PACKET_S) == 3.0
    assert sent_at(9.0, sent, PACKET_S) == 3.0, "past the audio: the last packet"


def test_a_word_never_shown_right_has_an_infinite_lag() -> None:
    assert first_correct([(1.0, ["a", "x"]), (2.0, ["a"])], ["a", "b"]) == [1.0, math.inf]


def test_a_final_without_word_timestamps_is_refused() -> None:
    bare = {"type": "segment", "text": " Hello world."}
    with pytest.raises(ValueError, match="word timestamps"):
        final_words(final(bare))
    with pytest.raises(ValueError):  # no final at all
        word_lags([HELLO], [1.0], SENT, PACKET_S)
