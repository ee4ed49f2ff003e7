"""The farm's live replies as a Realtime session's turns.

A turn opens, with server VAD, where the worker's voice activity says an utterance began
(`Partial.speech_from`: `input_audio_buffer.speech_started`, before any of its words are
decoded), or else with the first words the worker hears after the last turn (a partial or
a segment: speech too short for the onset, or no server VAD). Each committed segment is
a `conversation.item.input_audio_transcription.delta`: committed text never changes, so
a client that appends deltas holds exactly the turn's text; the partial, which may still
change, is never sent. Deltas stream while the speaker talks, so they come before their
turn's `committed` and `conversation.item.added`: clients key them by `item_id`.

A turn ends where the worker closes an utterance (`Partial.closed`): with server VAD, at
a pause of `silence_duration_ms`; at the client's `input_audio_buffer.commit` (the first
close that covers the audio sent before it); or at `clear` (with what was committed).
Then `turn_ended`'s events follow, one `completed` per turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker import metrics
from broker.openai_api.errors import error_details
from broker.openai_api.realtime_events import CONTENT_INDEX, event, new_id, turn_ended
from broker.openai_api.realtime_session import Session
from whisperfarm.protocol import Partial, Segment

CLOSE_SLACK_S = 0.15
"""A close this little before a commit's place answers it: the worker's resampler may
hold the last milliseconds back, and a close so near the commit (a pause's close) left
nothing but that silence after it."""


@dataclass
class _Turn:
    item_id: str
    start: float
    """Stream seconds where its first words begin."""
    speech_started: bool
    texts: list[str] = field(default_factory=list)


class Turns:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._turn: _Turn | None = None
        self._previous: str | None = None
        self._commit_at: float | None = None
        """Stream seconds before which a pending client commit wants everything."""

    # ---- the farm's replies -----------------------------------------------------------------

    def on_segment(self, segment: Segment) -> list[str]:
        events = self._open(segment.start)
        text = segment.text.strip()
        if text:
            turn = self._current()
            delta = (" " if turn.texts else "") + text
            turn.texts.append(text)
            events.append(
                event("conversation.item.input_audio_transcription.delta",
                      item_id=turn.item_id, content_index=CONTENT_INDEX, delta=delta)
            )  # fmt: skip
        return events

    def on_partial(self, partial: Partial) -> list[str]:
        if not partial.closed:
            if partial.speech_from is not None and self._session.vad is not None:
                return self._open(partial.speech_from)
            return self._open(partial.start) if partial.text else []
        if self._commit_at is not None and partial.end >= self._commit_at - CLOSE_SLACK_S:
            self._commit_at = None
            if self._turn is None:
                self._turn = _Turn(new_id("item"), partial.end, speech_started=False)
            return self._end(partial.end)
        if self._session.vad is not None and self._turn is not None:
            return self._end(partial.end)
        return []

    def failed(self, message: str) -> list[str]:
        """The stream failed: the open turn's transcription failed with it."""
        if self._turn is None:
            return []
        turn, self._turn = self._turn, None
        metrics.REALTIME_TURNS.labels(outcome="failed").inc()
        details = error_details(message, "server_error", "transcription_failed")
        return [
            event("conversation.item.input_audio_transcription.failed", item_id=turn.item_id,
                  content_index=CONTENT_INDEX, error=details)
        ]  # fmt: skip

    # ---- the client's requests --------------------------------------------------------------

    def commit(self, at: float) -> None:
        """The client committed the audio before `at` (stream seconds)."""
        self._commit_at = at

    def clear(self, at: float) -> list[str]:
        """The client dropped what was not committed: the open turn ends with what was."""
        turn = self._turn
        if turn is None:
            return []
        if not turn.texts:
            self._turn = None  # it never said anything that stays
            return []
        return self._end(at)

    # ---- turns ------------------------------------------------------------------------------

    def _current(self) -> _Turn:
        assert self._turn is not None
        return self._turn

    def _open(self, start: float) -> list[str]:
        if self._turn is not None:
            return []
        vad = self._session.vad
        self._turn = _Turn(new_id("item"), start, speech_started=vad is not None)
        if vad is None:
            return []
        start_ms = max(0, round(start * 1000) - vad.prefix_padding_ms)
        return [event("input_audio_buffer.speech_started", audio_start_ms=start_ms,
                      item_id=self._turn.item_id)]  # fmt: skip

    def _end(self, at: float) -> list[str]:
        turn = self._current()
        self._turn = None
        previous, self._previous = self._previous, turn.item_id
        stopped = round(at * 1000) if turn.speech_started else None
        metrics.REALTIME_TURNS.labels(outcome="completed").inc()
        return turn_ended(turn.item_id, previous, " ".join(turn.texts), at - turn.start, stopped)
