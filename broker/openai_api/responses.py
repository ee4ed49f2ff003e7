"""A finished transcript in the shapes OpenAI's audio endpoints answer with.

`json` is `{"text"}`; `text`, `srt` and `vtt` are the farm's own renderings;
`verbose_json` adds the task, language, duration, the segments with the engine's own
decoding figures (as far as the worker reported them) and, when asked, the words;
`diarized_json` (speaker labels, asked of the worker as `start.diarize`) has segments of
type `transcript.text.segment`, each with its `speaker` lettered as OpenAI letters them
("A", "B"… for the farm's "S1", "S2"…).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from starlette.responses import JSONResponse, PlainTextResponse, Response

from whisperfarm.languages import NAMES
from whisperfarm.transcripts import MEDIA_TYPES, Transcript, render, speaker_number

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = (
    "json",
    "text",
    "srt",
    "vtt",
    "verbose_json",
    "diarized_json",
)


def respond(
    transcript: Transcript, fmt: ResponseFormat, task: str, granularities: Sequence[str]
) -> Response:
    if fmt == "json":
        return JSONResponse({"text": transcript.text})
    if fmt == "verbose_json":
        return JSONResponse(verbose(transcript, task, granularities))
    if fmt == "diarized_json":
        return JSONResponse(diarized(transcript))
    rendered = render(transcript, "txt" if fmt == "text" else fmt)
    return PlainTextResponse(rendered, media_type=MEDIA_TYPES["txt" if fmt == "text" else fmt])


def verbose(transcript: Transcript, task: str, granularities: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": _language_name(transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [_segment(s.model_dump()) for s in transcript.segments]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words or []
        ]
    return body


def diarized(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's `TranscriptionDiarized`: segments with speakers, usage in seconds."""
    segments = [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{s.id}",
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "speaker": openai_speaker(s.speaker or "S1"),
        }
        for s in transcript.segments
    ]
    return {
        "task": "transcribe",
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": segments,
        "usage": {"type": "duration", "seconds": transcript.duration},
    }


def openai_speaker(label: str) -> str:
    """ "S1" → "A", "S2" → "B"… (past "Z", the farm's label as it is)."""
    number = speaker_number(label)
    if number is not None and 1 <= number <= 26:
        return chr(ord("A") + number - 1)
    return label


def _language_name(code: str | None) -> str:
    """OpenAI names the language in English, lower case ("english"), not by its code."""
    return NAMES.get(code or "", code or "").lower()


def _segment(data: dict[str, Any]) -> dict[str, Any]:
    """A stored segment as OpenAI's `TranscriptionSegment`."""
    return {
        "id": data["id"],
        "seek": data.get("seek", 0),
        "start": data["start"],
        "end": data["end"],
        "text": data["text"],
        "tokens": data.get("tokens") or [],
        "temperature": data.get("temperature", 0.0),
        "avg_logprob": data.get("avg_logprob", 0.0),
        "compression_ratio": data.get("compression_ratio", 0.0),
        "no_speech_prob": data.get("no_speech_prob", 0.0),
    }


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying `event` as its JSON data."""
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
