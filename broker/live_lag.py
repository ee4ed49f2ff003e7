"""When a live stream's audio arrived, so that what is sent about it can be timed.

A live `partial` or `segment` speaks for the stream up to its `end` (stream seconds). The lag
the broker reports for it (`whisperfarm_broker_live_partial_lag_seconds`,
`whisperfarm_broker_live_commit_lag_seconds`) is the moment it is sent minus the moment the
broker had received the audio up to that `end`: the server's share of what a speaker waits for,
whatever the client's network adds. `ArrivalTimes` keeps one entry per packet (where the packet
ends, in stream seconds; when it arrived, on the monotonic clock) and answers "when had the
audio up to t arrived".

It stays small. What is committed is forgotten: the segments of a stream come in order, and
nothing sent after one is about audio before its end. And it never holds more than `horizon`
stream seconds, since a silent stream may commit nothing for hours: asked about older audio, it
answers with the oldest arrival it kept, so the lag it gives is a lower bound — and, a client
pacing at real time, already past the top bucket, where it lands anyway.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable

from broker import metrics

HORIZON_S = 60.0
"""Stream seconds kept: two Whisper windows, longer than the largest lag bucket (30 s)."""
TOLERANCE_S = 0.001
"""Stream times travel rounded to the millisecond: a packet ending this close to t reaches t."""


class ArrivalTimes:
    """One live stream's packet arrivals, from the broker's event loop (not thread-safe)."""

    def __init__(
        self, horizon: float = HORIZON_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._horizon = horizon
        self._clock = clock
        self._ends: deque[float] = deque()
        self._times: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._ends)

    def arrived(self, end: float) -> None:
        """A packet that ends `end` stream seconds in has just been received. Audio that
        does not reach past what came before (an empty packet, audio sent again after a
        resume) keeps its first arrival."""
        if self._ends and end <= self._ends[-1]:
            return
        self._ends.append(end)
        self._times.append(self._clock())
        while end - self._ends[0] > self._horizon:
            self._drop_oldest()

    def arrival(self, t: float) -> float | None:
        """When the audio up to `t` stream seconds had arrived (the arrival of the first
        packet reaching `t`); None before any packet. A `t` past every packet (a word's end
        estimated a little beyond the audio) is answered with the last arrival."""
        if not self._ends:
            return None
        index = bisect.bisect_left(self._ends, t - TOLERANCE_S)
        return self._times[min(index, len(self._times) - 1)]

    def lag(self, end: float) -> float | None:
        """Now minus the arrival of the audio up to `end`; None before any packet."""
        arrived = self.arrival(end)
        return None if arrived is None else max(0.0, self._clock() - arrived)

    def forget_before(self, t: float) -> None:
        """Drop what only audio before `t` needs (the last entry stays, for `arrival`)."""
        while len(self._ends) > 1 and self._ends[0] < t - TOLERANCE_S:
            self._drop_oldest()

    def partial_sent(self, end: float) -> None:
        """Observe the lag of a partial that covers the stream up to `end`, sent now."""
        lag = self.lag(end)
        if lag is not None:
            metrics.LIVE_PARTIAL_LAG.observe(lag)

    def segment_sent(self, end: float) -> None:
        """Observe the lag of a committed segment ending at `end`, sent now, and forget
        the arrivals before it."""
        lag = self.lag(end)
        if lag is not None:
            metrics.LIVE_COMMIT_LAG.observe(lag)
        self.forget_before(end)

    def _drop_oldest(self) -> None:
        self._ends.popleft()
        self._times.popleft()
