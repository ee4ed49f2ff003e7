"""A file stream window's speech, cut out for decoding, and its times mapped back.

Whisper turns silence, noise and hum into words ("You", "Thank you."), and a window of
silence costs a decode as long as one of speech. With `start.vad` (the default), a file
stream's window is decoded the way faster-whisper's `vad_filter` decodes a file: its speech,
padded and joined, becomes one shorter audio; the segment, word and `seek` times of its
decode are mapped back to the window with faster-whisper's own `SpeechTimestampsMap`; and a
window without speech is not decoded at all.

The rules and options are faster-whisper's (`FILE_VAD`): a silence shorter than
`min_silence_duration_ms` does not end speech, `speech_pad_ms` of audio is kept on each side,
a gap narrower than two pads is split between its neighbours. So the farm keeps the audio of
a file that `WhisperModel.transcribe(vad_filter=True)` keeps, and the benchmarks' raw engine
filters with the same options. They are applied here (`speech_chunks`), not by
`get_speech_timestamps`, because that function scores the audio it is handed from a fresh
Silero state: a stream is scored one window at a time, each sample once, with the state
carried over (`workers.vad.VoiceActivity`), which gives the whole file's probabilities.
`collect_chunks` does not fit either: it joins float32 audio, and a window holds the stream
buffer's int16, made float32 only in the engine's thread (`DecodeRequest.audio`).

Scoring runs in the decode thread (`SpeechFinder.clip`, called from `runner.decode_speech`),
never on the worker's event loop, where hundreds of packets a second arrive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from faster_whisper.vad import SpeechTimestampsMap, VadOptions

from workers.audio import SAMPLE_RATE, SEEK_HOP, Pcm
from workers.engines import DecodedSegment, DecodedWord, DecodeResult
from workers.vad import FRAME, VoiceActivity

FILE_VAD = VadOptions()
"""faster-whisper's own `vad_filter` defaults (threshold 0.5, 2 s of silence ends speech,
400 ms of padding); `start.vad_threshold` replaces the threshold."""

Chunk = dict[str, int]
"""{"start": sample, "end": sample}: the shape faster-whisper's VAD helpers take."""


def vad_options(threshold: float | None) -> VadOptions:
    """`FILE_VAD` with a stream's own threshold (None: the default)."""
    return replace(FILE_VAD, threshold=threshold or FILE_VAD.threshold)


def speech_chunks(spans: list[tuple[int, int]], length: int, options: VadOptions) -> list[Chunk]:
    """The chunks of audio `length` samples long to decode, from its speech `spans` (sample
    pairs, frames of `FRAME` with Silero's hysteresis, as `VoiceActivity.speech_spans`
    gives them; they may reach past either end): `get_speech_timestamps`'s rules (module
    docstring). Speech followed by less than `min_silence_duration_ms` before the end is
    still going on: it runs to the end. One corner differs: faster-whisper ends speech only
    at a frame below the low threshold, so a pause whose late frames all sit between the two
    thresholds stays speech there and ends here (a stream keeps each frame's flag, not its
    probability)."""
    min_silence = SAMPLE_RATE * options.min_silence_duration_ms // 1000
    min_speech = SAMPLE_RATE * options.min_speech_duration_ms // 1000
    pad = SAMPLE_RATE * options.speech_pad_ms // 1000
    merged: list[Chunk] = []
    for start, end in spans:
        # Silence ends speech once it has lasted `min_silence` after its first frame.
        if merged and start - merged[-1]["end"] - FRAME < min_silence:
            merged[-1]["end"] = end
        else:
            merged.append({"start": start, "end": end})
    if merged and (length - merged[-1]["end"]) // FRAME * FRAME < min_silence:
        merged[-1]["end"] = length  # the silence after it is too short yet to end it
    chunks = [
        {"start": max(0, c["start"]), "end": min(length, c["end"])}
        for c in merged
        if min(length, c["end"]) - max(0, c["start"]) > min_speech
    ]
    if chunks:
        chunks[0]["start"] = max(0, chunks[0]["start"] - pad)
        chunks[-1]["end"] = min(length, chunks[-1]["end"] + pad)
    for this, following in itertools.pairwise(chunks):
        silence = following["start"] - this["end"]
        shift = silence // 2 if silence < 2 * pad else pad
        this["end"] += shift
        following["start"] -= shift
    return chunks


@dataclass(frozen=True)
class SpeechClip:
    """A window's speech chunks joined into one audio, and the way back to window time."""

    pcm: Pcm
    chunks: list[Chunk]

    @classmethod
    def cut(cls, pcm: Pcm, chunks: list[Chunk]) -> SpeechClip:
        return cls(np.concatenate([pcm[c["start"] : c["end"]] for c in chunks]), chunks)

    def restore(self, result: DecodeResult) -> DecodeResult:
        """The clip's decode in the window's time, as `restore_speech_timestamps` does it
        (which cannot take our frozen segments): a word keeps to the chunk its middle is
        in, a segment with words spans them; `seek` is mapped too."""
        times = SpeechTimestampsMap(self.chunks, SAMPLE_RATE)
        return replace(result, segments=[_restored(s, times) for s in result.segments])


def _restored(segment: DecodedSegment, times: SpeechTimestampsMap) -> DecodedSegment:
    words = segment.words
    if words:
        words = tuple(_restored_word(w, times) for w in words)
        start, end = words[0].start, words[-1].end
    else:
        start = times.get_original_time(segment.start)
        end = times.get_original_time(segment.end, is_end=True)
    seek = segment.seek
    if seek is not None:
        frames_per_second = SAMPLE_RATE / SEEK_HOP
        seek = round(times.get_original_time(seek / frames_per_second) * frames_per_second)
    return replace(segment, start=start, end=end, seek=seek, words=words)


def _restored_word(word: DecodedWord, times: SpeechTimestampsMap) -> DecodedWord:
    chunk = times.get_chunk_index((word.start + word.end) / 2)
    return replace(
        word,
        start=times.get_original_time(word.start, chunk),
        end=times.get_original_time(word.end, chunk),
    )


class SpeechFinder:
    """One file stream's voice activity, scored one window at a time, in its decode thread.

    Windows come one after another (a stream has one decode in flight), each starting
    where earlier ones cut the buffer and ending past them: each call scores only the
    audio no window had yet, with Silero's state carried on from the last."""

    def __init__(self, threshold: float | None = None) -> None:
        self.options = vad_options(threshold)
        self._activity = VoiceActivity(self.options.threshold)
        self._scored_to = 0
        """Stream position up to which audio was fed to `_activity`."""

    def clip(self, pcm: Pcm, start: int) -> SpeechClip | None:
        """The speech of `pcm`, the stream's audio from position `start` (never before
        audio an earlier window had); None: there is none."""
        self._activity.feed(pcm[self._scored_to - start :])
        self._scored_to = start + len(pcm)
        spans = self._activity.speech_spans(start, self._scored_to)
        relative = [(a - start, b - start) for a, b in spans]
        chunks = speech_chunks(relative, len(pcm), self.options)
        return SpeechClip.cut(pcm, chunks) if chunks else None

    def forget_before(self, sample: int) -> None:
        """The stream dropped its audio before `sample`: no window will hold it again."""
        self._activity.forget_before(sample)
