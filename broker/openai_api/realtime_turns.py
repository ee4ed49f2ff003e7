"""The farm's live replies as a Realtime session's turns.

A turn opens, with server VAD, where the worker's voice activity says an utterance began
(`Partial.speech_from`: `input_audio_buffer.speech_started`, before any of its words are
decoded), or else with the first words the worker hears after the last turn (a partial or
a segment: speech too short for the onset, or no server VAD). Each committed segment is
a `conversation.item.input_audio_transcription.delta`: committed text never changes, so
a client that appends deltas holds exactly the turn's text; the partial, which may still
change, is never sent. Deltas stream while the speaker talks, so most come before their
turn's `committed` and `conversation.item.added`: clients key them by `item_id`.

A turn ends where the worker closes an utterance: with server VAD, at a pause of
`silence_duration_ms`; at the client's `input_audio_buffer.commit` (the first close that
covers the audio sent before it); or at `clear` (with what was committed). It ends in two
parts: when the worker begins the close (`Partial.closing_at`), `turn_stopped`'s events
(`speech_stopped`, `committed`, the item added); when the close's last words are in
(`Partial.closed`), `turn_transcribed`'s (`completed`, the item done). The next turn may
begin between the two: the speaker goes on while the worker transcribes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker import metrics
from broker.openai_api.errors import error_details
from broker.openai_api.realtime_events import (
    CONTENT_INDEX,
    event,
    new_id,
    turn_stopped,
    turn_transcribed,
)
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
    """Stream seconds where it began (its voice, or its first words)."""
    speech_started: bool
    texts: list[str] = field(default_factory=list)
    previous: str | None = None
    """The item before it, once it stopped."""
    stopped_at: float = 0.0
    """Stream seconds where its audio ended, once it stopped."""


class Turns:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._turn: _Turn | None = None
        """The turn the speaker is in."""
        self._stopped: _Turn | None = None
        """The turn whose audio is over while the worker transcribes its last words."""
        self._previous: str | None = None
        self._commit_at: float | None = None
        """Stream seconds before which a pending client commit wants everything."""

    # ---- the farm's replies -----------------------------------------------------------------

    def on_segment(self, segment: Segment) -> list[str]:
        """Committed words: the stopped turn's while its close is under way (the worker
        sends nothing of the next utterance's before that close is done), else the open
        turn's (opened here if none is)."""
        events = [] if self._stopped is not None else self._open(segment.start)
        text = segment.text.strip()
        if text:
            turn = self._stopped or self._current()
            delta = (" " if turn.texts else "") + text
            turn.texts.append(text)
            events.append(
                event("conversation.item.input_audio_transcription.delta",
                      item_id=turn.item_id, content_index=CONTENT_INDEX, delta=delta)
            )  # fmt: skip
        return events

    def on_partial(self, partial: Partial) -> list[str]:
        if partial.closing_at is not None:
            return self._stop(partial.closing_at) if self._ends_turn(partial.closing_at) else []
        if partial.closed:
            if self._stopped is not None:
                return self._transcribed()
            if self._ends_turn(partial.end):  # a worker that does not say when it closes
                return [*self._stop(partial.end), *self._transcribed()]
            return []
        if partial.speech_from is not None and self._session.vad is not None:
            return self._open(partial.speech_from)
        return self._open(partial.start) if partial.text else []

    def failed(self, message: str) -> list[str]:
        """The stream failed: the open turns' transcriptions failed with it."""
        turns = [t for t in (self._stopped, self._turn) if t is not None]
        self._stopped = self._turn = None
        details = error_details(message, "server_error", "transcription_failed")
        for _ in turns:
            metrics.REALTIME_TURNS.labels(outcome="failed").inc()
        return [
            event("conversation.item.input_audio_transcription.failed", item_id=turn.item_id,
                  content_index=CONTENT_INDEX, error=details)
            for turn in turns
        ]  # fmt: skip

    # ---- the client's requests --------------------------------------------------------------

    def commit(self, at: float) -> None:
        """The client committed the audio before `at` (stream seconds)."""
        self._commit_at = at

    def clear(self, at: float) -> list[str]:
        """The client dropped what was not committed: a turn ends with what was (the
        worker drops a close under way, so the stopped turn has all it will get)."""
        events = self._transcribed() if self._stopped is not None else []
        turn = self._turn
        if turn is None:
            return events
        if not turn.texts:
            self._turn = None  # it never said anything that stays
            return events
        return [*events, *self._stop(at), *self._transcribed()]

    # ---- turns ------------------------------------------------------------------------------

    def _current(self) -> _Turn:
        assert self._turn is not None
        return self._turn

    def _ends_turn(self, at: float) -> bool:
        """Whether the worker's close at `at` ends a turn: the first close that covers a
        pending client commit (a turn with no words yet is made for it), or, with server
        VAD, any close of an open turn."""
        if self._commit_at is not None and at >= self._commit_at - CLOSE_SLACK_S:
            self._commit_at = None
            if self._turn is None:
                self._turn = _Turn(new_id("item"), at, speech_started=False)
            return True
        return self._session.vad is not None and self._turn is not None

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

    def _stop(self, at: float) -> list[str]:
        """The open turn's audio ends at `at`: it waits for its last words, and the next
        turn may begin meanwhile."""
        events = self._transcribed() if self._stopped is not None else []  # (a close lost)
        turn = self._current()
        self._turn, self._stopped = None, turn
        turn.previous, self._previous = self._previous, turn.item_id
        turn.stopped_at = at
        stopped = round(at * 1000) if turn.speech_started else None
        return [*events, *turn_stopped(turn.item_id, turn.previous, stopped)]

    def _transcribed(self) -> list[str]:
        turn = self._stopped
        assert turn is not None
        self._stopped = None
        metrics.REALTIME_TURNS.labels(outcome="completed").inc()
        text = " ".join(turn.texts)
        return turn_transcribed(turn.item_id, turn.previous, text, turn.stopped_at - turn.start)
