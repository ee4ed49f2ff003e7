"""A stand-in for `workers.vad.VoiceActivity` with speech where a test says: `LiveState`
and `LiveRunner` tests decide when a pause or an utterance start is heard, without Silero."""

from __future__ import annotations

from workers.audio import SAMPLE_RATE


class ScriptedVoice:
    """`VoiceActivity` as `LiveState` uses it, with speech where the test says."""

    def __init__(self, *speech: tuple[float, float]) -> None:
        self.spans = [(round(a * SAMPLE_RATE), round(b * SAMPLE_RATE)) for a, b in speech]
        self.scored = 0

    def feed(self, samples: object) -> None:
        self.scored += len(samples)  # type: ignore[arg-type]

    def restart_at(self, position: int) -> None:
        self.scored = max(self.scored, position)

    def forget_before(self, position: int) -> None:
        pass

    def speech_spans(self, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
        stop = self.scored if end is None else min(end, self.scored)
        return [(max(a, start), min(b, stop)) for a, b in self.spans if b > start and a < stop]

    def has_speech(self, start: int = 0, end: int | None = None) -> bool:
        return bool(self.speech_spans(start, end))

    def trailing_silence(self) -> int:
        return self.scored - max((b for _, b in self.speech_spans()), default=0)
