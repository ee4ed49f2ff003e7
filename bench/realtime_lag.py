"""The Realtime edge's delta lag, measured beside the native protocol's (bench/live.py).

A Realtime session (`WS /v1/realtime?intent=transcription`, the real `openai` SDK, server VAD)
sends the same speech as a native live stream, as 24 kHz PCM in appends of the native packets'
duration, paced at real time. Its `...transcription.delta` events carry committed text only,
so the lag of a word is the arrival of the delta holding it minus the time the client had
sent the audio where the word ends: the native protocol's commit lag, through this edge.

Where a word ends: the Realtime events carry no word times, so the words of the session's
deltas are matched (difflib, on `normalize_text` words) to the words of the native stream's
final for the same audio, which has word timestamps; a word the two decodes wrote
differently has no time and is left out (their count is reported).
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequestParam

from bench.word_lag import final_words, sent_at
from tests.farm import Broker
from tests.speech import normalize_text

RATE: Literal[24000] = 24_000
PREFIX_PADDING_MS = 300
"""The session's `prefix_padding_ms` (OpenAI's default): `speech_started.audio_start_ms`
is where the turn's voice began, less this."""
TAIL_S = 2.0
"""Silence sent after the speech, so server VAD ends the last turn."""
WAIT_S = 30.0
"""How long after its audio a session may take to end its last turn."""
SESSION: RealtimeTranscriptionSessionCreateRequestParam = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "prefix_padding_ms": PREFIX_PADDING_MS},
        }
    },
}


@dataclass
class RealtimeRun:
    """One session: its deltas with when they arrived, and when each append went
    (seconds from the first append)."""

    deltas: list[tuple[float, str]] = field(default_factory=list)
    starts: list[tuple[float, float]] = field(default_factory=list)
    """When each `speech_started` arrived, and where it says its turn's voice began
    (stream seconds)."""
    stops: list[tuple[float, float]] = field(default_factory=list)
    """When each `speech_stopped` arrived, and where it says its turn's audio ended."""
    sent: list[float] = field(default_factory=list)
    turns: int = 0
    error: str | None = None


def to_24k(audio: np.ndarray, rate: int) -> bytes:
    """16 kHz float audio as 24 kHz 16-bit PCM (linear interpolation: a benchmark input)."""
    times = np.arange(round(len(audio) * RATE / rate)) * rate / RATE
    resampled = np.interp(times, np.arange(len(audio)), audio)
    pcm: bytes = (np.clip(resampled, -1, 1) * 32767).astype("<i2").tobytes()
    return pcm


async def realtime_session(broker: Broker, pcm: bytes, packet_s: float) -> RealtimeRun:
    """Send `pcm` (24 kHz) at real time in appends of `packet_s`; collect the deltas."""
    run = RealtimeRun()
    loop = asyncio.get_running_loop()
    client = AsyncOpenAI(base_url=broker.http + "/v1", api_key="unused")
    chunk = round(packet_s * RATE) * 2
    audio = pcm + bytes(round(TAIL_S * RATE) * 2)
    async with client.realtime.connect(
        model="whisper-1", extra_query={"intent": "transcription"}
    ) as connection:
        await connection.send({"type": "session.update", "session": SESSION})
        began = loop.time()
        settled = asyncio.Event()
        listener = asyncio.create_task(_listen(connection, run, began, settled))
        for index, at in enumerate(range(0, len(audio), chunk)):
            await asyncio.sleep(max(0.0, began + index * packet_s - loop.time()))
            encoded = base64.b64encode(audio[at : at + chunk]).decode()
            await connection.input_audio_buffer.append(audio=encoded)
            run.sent.append(loop.time() - began)
        try:
            await asyncio.wait_for(settled.wait(), WAIT_S)
        except TimeoutError:
            run.error = run.error or "the last turn did not end"
        listener.cancel()
    return run


async def _listen(connection: Any, run: RealtimeRun, began: float, settled: asyncio.Event) -> None:
    """Deltas as they come; `settled` is set while every turn that started has ended."""
    loop = asyncio.get_running_loop()
    started = 0
    while True:
        event = json.loads(await connection.recv_bytes())
        kind = event["type"]
        if kind == "conversation.item.input_audio_transcription.delta":
            run.deltas.append((loop.time() - began, event["delta"]))
        elif kind == "input_audio_buffer.speech_started":
            begun = (event["audio_start_ms"] + PREFIX_PADDING_MS) / 1000
            run.starts.append((loop.time() - began, begun))
            started += 1
            settled.clear()
        elif kind == "input_audio_buffer.speech_stopped":
            run.stops.append((loop.time() - began, event["audio_end_ms"] / 1000))
        elif kind == "conversation.item.input_audio_transcription.completed":
            run.turns += 1
            if run.turns == started:
                settled.set()
        elif kind == "error":
            run.error = event["error"]["message"]
            settled.set()
            return


def delta_lags(
    run: RealtimeRun, native_final: dict[str, Any], packet_s: float
) -> tuple[list[float], int]:
    """The lag of each word of the session's deltas that matches a word of the native
    final (whose word times say where it ends), and how many did not match."""
    timed = final_words(native_final)
    words: list[tuple[str, float]] = [
        (word, at) for at, delta in run.deltas for word in normalize_text(delta).split()
    ]
    matcher = difflib.SequenceMatcher(
        a=[w for w, _ in words], b=[t.word for t in timed], autojunk=False
    )
    lags = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            arrived = words[block.a + k][1]
            lags.append(arrived - sent_at(timed[block.b + k].end, run.sent, packet_s))
    return lags, len(words) - len(lags)


def event_lags(marks: list[tuple[float, float]], run: RealtimeRun, packet_s: float) -> list[float]:
    """Each event's arrival minus when the client had sent the audio at the place the event
    names (`RealtimeRun.starts`: how soon a client learns that someone speaks; `.stops`:
    that they stopped)."""
    return [arrived - sent_at(at, run.sent, packet_s) for arrived, at in marks]
