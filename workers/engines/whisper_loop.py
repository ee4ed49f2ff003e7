"""One request's way through its audio, 30 s at a time, for the openai-whisper engine.

This is faster-whisper's `WhisperModel.generate_segments` (itself openai-whisper's
`transcribe` loop) without the options the farm never uses (clips, VAD, hallucination
skipping), so both engines cut segments, fall back to higher temperatures, skip silence,
time words and carry the prompt on by the same rules — which is what makes their
transcripts of the same audio agree. Decoding one window is a callback: the engine
routes it through the cross-stream `BatchGate`; so is aligning its words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from whisper.audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from whisper.decoding import DecodingResult
from whisper.tokenizer import Tokenizer
from whisper.utils import get_end

from workers.engines import (
    DecodedSegment,
    DecodedWord,
    DecodeRequest,
    fallback_temperatures,
    fitted_mel_frames,
)

COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
PROMPT_RESET_ON_TEMPERATURE = 0.5
"""faster-whisper's defaults, the farm's reference behaviour."""
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH
INPUT_STRIDE = 2  # mel frames per output token
TIME_PRECISION = INPUT_STRIDE / FRAMES_PER_SECOND  # 0.02 s per timestamp token

TorchFeatures = torch.Tensor
"""What the model decodes for one window: its log-mel (n_mels, frames: 3000, or fewer for a
fitted window), or for a retry its encoder output (frames / 2, state)."""
DecodeFn = Callable[[TorchFeatures, list[int], float], DecodingResult]
"""`decode(window, prompt_tokens, temperature)`: one window, through the batch gate."""
AlignFn = Callable[[list[dict[str, Any]], TorchFeatures, int, float], None]
"""`align(segments, window_encoded, frames, last_speech_end)`: openai-whisper's
`add_word_timestamps` on one window's segments (dicts with `seek`, `start`, `end`,
`tokens`), given the encoder output its decode made (not encoded again); it adds their
`words` and moves their times to the words'."""


def mel_of(audio: np.ndarray, n_mels: int, device: torch.device) -> torch.Tensor:
    """Log-mel of the whole request plus one hop of zeros, as faster-whisper computes it
    (openai-whisper pads 30 s, which costs a 30 s STFT per request and changes nothing:
    the last window is padded in mel space either way)."""
    mel: torch.Tensor = log_mel_spectrogram(
        torch.from_numpy(audio), n_mels, padding=HOP_LENGTH, device=device
    )
    return mel


def content_frames(mel: torch.Tensor) -> int:
    """Frames that hold audio: all but the one the hop of padding adds."""
    return int(mel.shape[-1]) - 1


def decode_with_fallback(
    decode: DecodeFn,
    window: TorchFeatures,
    prompt: list[int],
    temperatures: Sequence[float] = fallback_temperatures(0.0),
) -> tuple[DecodingResult, float]:
    """Decode at the first temperature, retrying hotter while the text looks wrong.

    Like faster-whisper: a retry is needed when the text is too repetitive (compression
    ratio) or too unlikely (log probability), unless the window is silence; when every
    temperature fails, the most likely result under the compression threshold wins,
    reported at the last temperature (which resets the prompt).
    """
    results: list[DecodingResult] = []
    below_threshold: list[DecodingResult] = []
    temperature = 0.0
    for temperature in temperatures:
        result = decode(window, prompt, temperature)
        window = result.audio_features  # a retry reuses the encoder output
        results.append(result)
        too_repetitive = result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
        if not too_repetitive:
            below_threshold.append(result)
        unlikely = result.avg_logprob < LOG_PROB_THRESHOLD
        silence = result.no_speech_prob > NO_SPEECH_THRESHOLD and unlikely
        if silence or not (too_repetitive or unlikely):
            return result, temperature
    best = max(below_threshold or results, key=lambda r: r.avg_logprob)
    return best, temperature


@dataclass
class _Piece:
    start: float
    end: float
    tokens: list[int]


def split_by_timestamps(
    tokenizer: Tokenizer, tokens: list[int], time_offset: float, segment_size: int, seek: int
) -> tuple[list[_Piece], int]:
    """Cut a window's tokens into timed segments; returns them and where to seek next."""
    begin = tokenizer.timestamp_begin
    single_ending = len(tokens) >= 2 and tokens[-2] < begin <= tokens[-1]
    consecutive = [
        i for i in range(1, len(tokens)) if tokens[i] >= begin and tokens[i - 1] >= begin
    ]
    if not consecutive:
        timestamps = [t for t in tokens if t >= begin]
        duration = segment_size / FRAMES_PER_SECOND
        if timestamps and timestamps[-1] != begin:
            duration = (timestamps[-1] - begin) * TIME_PRECISION
        return [_Piece(time_offset, time_offset + duration, tokens)], seek + segment_size
    slices = consecutive + ([len(tokens)] if single_ending else [])
    pieces, last = [], 0
    for current in slices:
        part = tokens[last:current]
        start = time_offset + (part[0] - begin) * TIME_PRECISION
        pieces.append(_Piece(start, time_offset + (part[-1] - begin) * TIME_PRECISION, part))
        last = current
    if single_ending:
        return pieces, seek + segment_size
    return pieces, seek + (tokens[last - 1] - begin) * INPUT_STRIDE


def initial_tokens(request: DecodeRequest, tokenizer: Tokenizer) -> list[int]:
    """The stream's own tokens for what came before, or its text prompt encoded."""
    if request.context:
        return list(request.context)
    if request.initial_prompt:
        return list(tokenizer.encode(" " + request.initial_prompt.strip()))
    return []


def transcribe_mel(
    mel: torch.Tensor,
    tokenizer: Tokenizer,
    decode: DecodeFn,
    prompt: list[int],
    temperatures: Sequence[float] = fallback_temperatures(0.0),
    align: AlignFn | None = None,
    fit_window: int | None = None,
) -> list[DecodedSegment]:
    """Seek through `mel` window by window, each padded to 30 s, or with `fit_window` to
    the frames `fitted_mel_frames` gives (`DecodeRequest.fit_window`); with `align`,
    segments carry words, and the next window starts after the last word (as in
    openai-whisper and faster-whisper)."""
    frames = content_frames(mel)
    all_tokens, reset_since, seek, last_speech = list(prompt), 0, 0, 0.0
    segments: list[DecodedSegment] = []
    while seek < frames:
        time_offset = seek / FRAMES_PER_SECOND
        segment_size = min(N_FRAMES, frames - seek)
        padded = N_FRAMES if fit_window is None else fitted_mel_frames(segment_size, fit_window)
        window = pad_or_trim(mel[:, seek : seek + segment_size], padded)
        context = all_tokens[reset_since:]
        result, temperature = decode_with_fallback(decode, window, context, temperatures)
        speechless = result.no_speech_prob > NO_SPEECH_THRESHOLD
        if speechless and not result.avg_logprob > LOG_PROB_THRESHOLD:
            seek += segment_size
            continue
        pieces, next_seek = split_by_timestamps(
            tokenizer, result.tokens, time_offset, segment_size, seek
        )
        found = [
            {"seek": seek, "start": p.start, "end": p.end, "tokens": p.tokens, "text": text}
            for p in pieces
            if (text := tokenizer.decode([t for t in p.tokens if t < tokenizer.eot])).strip()
            and p.start != p.end
        ]
        if align is not None and found:
            align(found, result.audio_features, segment_size, last_speech)
            last_speech = get_end(found)
            if not _single_ending(tokenizer, result.tokens) and last_speech > time_offset:
                next_seek = round(last_speech * FRAMES_PER_SECOND)
        seek = next_seek
        for data in found:
            all_tokens.extend(data["tokens"])
            segments.append(_decoded(data, result, temperature))
        if temperature > PROMPT_RESET_ON_TEMPERATURE:
            reset_since = len(all_tokens)
    return segments


def _single_ending(tokenizer: Tokenizer, tokens: list[int]) -> bool:
    """The window's text ends on one timestamp: it ran to the end of the window."""
    return len(tokens) >= 2 and tokens[-2] < tokenizer.timestamp_begin <= tokens[-1]


def _decoded(data: dict[str, Any], result: DecodingResult, temperature: float) -> DecodedSegment:
    """A segment of a window, with the figures of the decode that produced it."""
    words = data.get("words")
    return DecodedSegment(
        data["start"],
        data["end"],
        data["text"],
        tuple(data["tokens"]),
        seek=data["seek"],
        temperature=temperature,
        avg_logprob=result.avg_logprob,
        compression_ratio=result.compression_ratio,
        no_speech_prob=result.no_speech_prob,
        words=None if words is None else tuple(DecodedWord(**w) for w in words),
    )
