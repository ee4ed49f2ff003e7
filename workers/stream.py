"""Per-stream decoder state: what to decode next and which segments are final.

Audio arrives while the upload goes on. The policy: buffer the resampled audio; once
`chunk_seconds` of uncommitted audio is buffered, decode it and commit the segments that
end more than `COMMIT_MARGIN_S` before the end of the decoded audio (text near the edge
may change once the next words arrive), drop the committed audio and keep the rest. The
next window restarts where the last committed segment ended, with the committed text (and
the engine's tokens for it, timestamps included) as its prompt and the detected language
carried on; until some text is committed, the prompt is the client's (`start.prompt`).
At the end everything left is decoded and committed. A stream shorter than
`chunk_seconds` is thus decoded in one engine call over the whole audio — the same call
a user would make on the original file (with faster-whisper's `vad_filter`, below).

With voice activity (`start.vad`, on by default; `workers.speech_clip`), a window's audio is
scored with Silero in its decoding thread and only its speech, padded and joined, is decoded:
silence, noise and hum are never turned into words, and cost no decode. The decode's times
come back in the window's time, so the rules above hold unchanged in buffer time — a segment
near the edge still waits for the next window, committed audio is dropped, and a window with
no speech (not decoded: no segments) keeps only its last `COMMIT_MARGIN_S`, where speech may
be starting.

This is kept free of asyncio and sockets so the policy can grow (live mode: an unstable
tail, voice activity) and be tested on its own; `workers.runner` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisperfarm.protocol import SegmentData, Word
from whisperfarm.transcripts import join_segments
from whisperfarm.wire_bodies import AssignBody
from workers.audio import SAMPLE_RATE, SEEK_HOP, Pcm, Resampler
from workers.engines import (
    DecodedSegment,
    DecodedWord,
    DecodeRequest,
    DecodeResult,
    Task,
)
from workers.pcm_buffer import PcmBuffer
from workers.speakers.labels import SegmentAudio
from workers.speech_clip import SpeechFinder

COMMIT_MARGIN_S = 5.0
"""Segments ending this close to the end of the decoded audio wait for the next window."""
PROMPT_CHARS = 600
"""Committed text passed on as the next window's prompt (Whisper keeps ~220 tokens)."""
MAX_WINDOW_CHUNKS = 2
"""A window this many chunks long commits all its segments when none ends before the
edge, so the buffer stays bounded even if the engine keeps returning one long segment."""
CONTEXT_TOKENS = 223
"""Committed tokens passed on: what Whisper itself keeps (max_length // 2 - 1)."""


@dataclass(frozen=True)
class Window:
    """A decode to do: the stream's int16 audio and options, and whether it is the last.

    A window queued behind others holds only its int16 samples (a view of the stream's
    buffer, no copy); the float32 copy is made when the engine reads the request's
    `audio`, in the decoding thread, and is freed with the decode. Its voice activity is
    scored there too (`speech`): never on the event loop.
    """

    pcm: Pcm
    language: str | None
    task: Task
    initial_prompt: str | None
    context: tuple[int, ...]
    final: bool
    temperature: float = 0.0
    word_timestamps: bool = False
    start: int = 0
    """Stream position (16 kHz samples) of `pcm[0]`."""
    speech: SpeechFinder | None = None
    """The stream's voice activity: decode only the window's speech
    (`runner.decode_speech`); None: all of its audio."""

    @property
    def samples(self) -> int:
        return len(self.pcm)

    def to_request(self) -> DecodeRequest:
        """The engine's request (its float32 audio is made when first read)."""
        return DecodeRequest(
            self.pcm,
            self.language,
            self.task,
            self.initial_prompt,
            self.context,
            self.temperature,
            self.word_timestamps,
        )


class StreamState:
    """Buffers one stream's audio, builds decode windows and commits their segments."""

    def __init__(self, spec: AssignBody, chunk_seconds: float, engine_vad: bool = False) -> None:
        """`engine_vad`: the engine is worth sparing non-speech (`engines.wants_vad`);
        the stream's windows then decode only speech, unless it asked otherwise (`vad`)."""
        self.spec = spec
        self.language = spec.language
        self.segments: list[SegmentData] = []
        self.frames_in = 0
        self.ended = False
        self.decode_started: float | None = None
        self.decode_ended: float | None = None
        self._format = spec.audio_format()
        self._resampler = Resampler(self._format)
        self._chunk = int(chunk_seconds * SAMPLE_RATE)
        self._next_decode_at = self._chunk
        self._audio = PcmBuffer()
        self._offset = 0  # stream position (16 kHz samples) of the buffer's first sample
        self._context: tuple[int, ...] = ()
        self._speech = SpeechFinder(spec.vad_threshold) if spec.vad and engine_vad else None
        self.speech_audio = SegmentAudio() if spec.diarize else None
        """Each committed segment's samples, kept for its speaker label."""

    # ---- audio in -----------------------------------------------------------------------

    def feed(self, pcm: bytes) -> None:
        """Add one packet of raw PCM (any rate/channels announced in the spec)."""
        self._append(self._resampler.feed(pcm))
        self.frames_in += self._format.frames_in(len(pcm))

    def end(self) -> None:
        """No more audio: flush the resampler so the tail is decoded too."""
        if not self.ended:
            self._append(self._resampler.flush())
            self.ended = True

    def _append(self, samples: Pcm) -> None:
        if len(samples):
            self._audio.append(samples)

    @property
    def duration(self) -> float:
        """Seconds of audio received, measured on the input (exact, unlike 16 kHz counts)."""
        return self.frames_in / self.spec.sample_rate

    @property
    def buffered_seconds(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    # ---- windows ------------------------------------------------------------------------

    def wants_decode(self) -> bool:
        """Enough uncommitted audio for a window while the upload is still going on."""
        return not self.ended and len(self._audio) >= self._next_decode_at

    def next_window(self, final: bool) -> Window | None:
        """The uncommitted audio as one window; None when a final window has nothing."""
        pcm = self._audio.view()
        if final and not len(pcm):
            return None
        spec = self.spec
        return Window(
            pcm,
            self.language,
            spec.task,
            self._prompt(),
            self._context,
            final,
            spec.temperature,
            spec.word_timestamps,
            self._offset,
            self._speech,
        )

    def _prompt(self) -> str | None:
        """The committed text's tail; before any, the prompt the client gave."""
        text = join_segments(self.segments)
        if not text:
            return self.spec.prompt
        tail = text[-PROMPT_CHARS:]
        return tail if len(text) <= PROMPT_CHARS else tail.partition(" ")[2] or tail

    # ---- results ------------------------------------------------------------------------

    def record_inference(self, started: float, ended: float) -> None:
        """Wall-clock span of the stream's inference: first start, last end."""
        if self.decode_started is None:
            self.decode_started = started
        self.decode_ended = ended

    def commit(self, window: Window, result: DecodeResult) -> list[SegmentData]:
        """Apply a window's result; returns the segments that became final."""
        if self.language is None:
            self.language = result.language
        decoded = window.samples
        if window.final:
            keep, cut = result.segments, decoded
        else:
            keep, cut = self._committable(result.segments, decoded)
        committed = [self._to_stream_time(s) for s in keep]
        if self.speech_audio is not None:
            for s in keep:
                self.speech_audio.keep(window.pcm, s.start, s.end)
        tokens = self._context + tuple(t for s in keep for t in s.tokens)
        self._context = tokens[-CONTEXT_TOKENS:]
        self._drop(cut)
        self._next_decode_at = self._chunk if cut else decoded + self._chunk // 2
        return committed

    def _committable(
        self, segments: list[DecodedSegment], decoded: int
    ) -> tuple[list[DecodedSegment], int]:
        """Segments safely before the window's edge, and how much audio they free."""
        limit = decoded / SAMPLE_RATE - COMMIT_MARGIN_S
        keep = [s for s in segments if s.end <= limit]
        if keep:
            return keep, min(decoded, round(keep[-1].end * SAMPLE_RATE))
        if not segments:  # no speech in the window: only the edge may still hold some
            return [], max(0, round(limit * SAMPLE_RATE))
        if decoded >= MAX_WINDOW_CHUNKS * self._chunk:  # waited long enough: take it all
            return segments, decoded
        return [], 0  # one long segment across the edge: wait for more audio

    def _to_stream_time(self, segment: DecodedSegment) -> SegmentData:
        base = self._offset / SAMPLE_RATE
        words = segment.words
        data = SegmentData(
            id=self.spec.first_segment_id + len(self.segments),
            start=round(base + segment.start, 3),
            end=round(base + segment.end, 3),
            text=segment.text.strip(),
            seek=None if segment.seek is None else self._offset // SEEK_HOP + segment.seek,
            tokens=list(segment.tokens) or None,
            temperature=segment.temperature,
            avg_logprob=segment.avg_logprob,
            compression_ratio=segment.compression_ratio,
            no_speech_prob=segment.no_speech_prob,
            words=None if words is None else [_shifted(w, base) for w in words],
        )
        self.segments.append(data)
        return data

    def _drop(self, samples: int) -> None:
        """Forget committed audio; audio that arrived during the decode stays."""
        if samples <= 0:
            return
        self._audio.drop(samples)
        self._offset += samples
        if self._speech is not None:
            self._speech.forget_before(self._offset)

    @property
    def text(self) -> str:
        return join_segments(self.segments)

    def label_speakers(self, speakers: list[str]) -> None:
        """Give each segment its speaker (one label per segment, in order)."""
        self.segments = [
            s.model_copy(update={"speaker": who})
            for s, who in zip(self.segments, speakers, strict=True)
        ]


def _shifted(word: DecodedWord, base: float) -> Word:
    """A window's word in stream time."""
    return Word(
        word=word.word,
        start=round(base + float(word.start), 3),
        end=round(base + float(word.end), 3),
        probability=round(float(word.probability), 4),
    )
