"""The GUI's side of a live stream: PCM from a page in, partials and segments out.

`LiveRelay` is the one place the GUI opens live streams to the broker (`options_for`
builds every stream's options, the broker token included), so who a stream belongs to
can change in one spot. A `LiveSession` owns one `StreamClient` over a `LiveAudio`
buffer: the audio the page feeds is kept until the broker acknowledges it, so a dropped
broker connection resumes the job without losing what was said meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal, Protocol

from gui.settings import GuiSettings
from whisperfarm.protocol import Final, Partial, Segment
from whisperfarm.streaming.client import ClientOptions, StreamClient
from whisperfarm.streaming.decode import AudioInfo
from whisperfarm.streaming.errors import (
    ConnectionLost,
    FarmOverloaded,
    FarmUnreachable,
    SourceError,
)
from whisperfarm.streaming.live_audio import LiveAudio

log = logging.getLogger(__name__)

ErrorKind = Literal["overloaded", "broker_down", "failed"]
"""What a page tells its reader: retry later, the broker is away, or this stream failed."""
STREAM_NAME = "mic-%Y%m%d-%H%M%S"
"""A live job's name (`time.strftime`), as the CLI names a microphone recording."""
CHANNELS = 1


class LiveSink(Protocol):
    """Where one session's results go (the page's WebSocket)."""

    def accepted(self, job_id: str) -> None: ...
    def partial(self, text: str) -> None:
        """The uncommitted tail, replacing the previous one ("" clears it)."""
        ...

    def segment(self, segment: Segment) -> None:
        """Committed text: never revised."""
        ...

    def final(self, final: Final) -> None: ...
    def error(self, kind: ErrorKind, detail: str, retry_after: float | None) -> None: ...
    def reconnecting(self) -> None:
        """The connection to the broker dropped; the audio is kept while it is resumed."""
        ...

    def resumed(self) -> None:
        """The broker took the stream back after a drop."""
        ...


class _Events:
    """`StreamEvents` for a live session: hands the reader-facing ones to the sink."""

    def __init__(self, sink: LiveSink) -> None:
        self._sink = sink
        self._job_id: str | None = None

    def accepted(self, job_id: str, resume_from_frame: int) -> None:
        if self._job_id is None:
            self._job_id = job_id
            self._sink.accepted(job_id)
        else:
            self._sink.resumed()

    def sent(self, frames: int) -> None:
        pass

    def uploaded(self) -> None:
        pass

    def segment(self, segment: Segment) -> None:
        self._sink.segment(segment)

    def partial(self, partial: Partial) -> None:
        self._sink.partial(partial.text)

    def reconnecting(self, attempt: int, retries: int, delay: float, reason: str) -> None:
        log.info("live stream: %s; resuming (%d/%d)", reason, attempt, retries)
        self._sink.reconnecting()


class LiveSession:
    """One live stream: `feed` PCM, then `stop` (the final follows) or `cancel`."""

    def __init__(self, audio: LiveAudio, client: StreamClient, sink: LiveSink) -> None:
        self._audio, self._client, self._sink = audio, client, sink
        self._task = asyncio.create_task(self._run(), name="live session")

    @property
    def frames(self) -> int:
        """Frames fed so far."""
        return self._audio.frames

    def feed(self, pcm: bytes) -> None:
        """More mono s16le audio at the session's rate (whole frames)."""
        self._audio.feed(pcm)

    def stop(self) -> None:
        """The speaker stopped: what was fed still goes out, then the final comes."""
        self._audio.stop()

    async def final(self) -> Final | None:
        """Wait for the outcome: the final, or None when the stream failed (the sink heard why)."""
        return await asyncio.shield(self._task)

    async def cancel(self) -> None:
        """Drop the stream now; the broker keeps its job as interrupted."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> Final | None:
        try:
            final = await self._client.transcribe()
        except SourceError as exc:
            kind, retry_after = _classify(exc)
            log.info("live stream ended: %s", exc.message)
            self._sink.error(kind, exc.message, retry_after)
            return None
        except Exception:  # a bug: the page must still hear that its stream is over
            log.error("live stream failed unexpectedly", exc_info=True)
            self._sink.error("failed", "unexpected error in the GUI (see its log)", None)
            return None
        self._sink.final(final)
        return final


class LiveRelay:
    """Opens live streams to the broker for the GUI's pages."""

    def __init__(self, settings: GuiSettings) -> None:
        self._settings = settings

    def options_for(self, language: str | None, person: str | None = None) -> ClientOptions:
        """Every live stream's options: the one place that says how the GUI speaks to the broker."""
        settings = self._settings
        return ClientOptions(
            url=settings.stream_url,
            language=language,
            retries=settings.retries,
            connect_timeout=settings.connect_timeout,
            token=settings.broker_bearer,
            person=person,
            live=True,
        )

    def open(
        self, sink: LiveSink, language: str | None, sample_rate: int, person: str | None = None
    ) -> LiveSession:
        """Start a live stream of mono s16le at `sample_rate` for `person` (call on the
        event loop)."""
        audio = LiveAudio(time.strftime(STREAM_NAME), AudioInfo(sample_rate, CHANNELS, None))
        client = StreamClient(audio, self.options_for(language, person), _Events(sink))
        return LiveSession(audio, client, sink)


def _classify(exc: SourceError) -> tuple[ErrorKind, float | None]:
    if isinstance(exc, FarmOverloaded):
        return "overloaded", exc.retry_after
    if isinstance(exc, FarmUnreachable | ConnectionLost):
        return "broker_down", None
    return "failed", None
