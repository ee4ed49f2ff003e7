"""Live decoding replayed on a virtual clock: word lags that do not move between runs.

    .venv/bin/python bench/live_replay.py [--files 4] [--seconds 40] [--step-ms 250]
        [--around 3] [--show INDEX] [--json out.json]

`bench/live.py` measures the farm as a client sees it, and its p95 lags move by half a
second at one stream (and up to 2× at six) between runs of the same code: the host's load
decides when each step starts and how long it takes. This script keeps only the decoder:
each of the bench's ~40 s files of real speech goes through one `LiveState` with the real
tiny.en engine; packets arrive on a virtual clock at real time, a step starts when the state
wants one and the stream's previous step is done (one stream alone on its worker, as
`bench/live.py` at N=1), and a step lasts what `step_seconds` says, not what it took (which
would bring the host's noise back). The words are the engine's own, so two versions of
`workers/live.py` compare on equal terms: same audio, same clock, same costs.

Same clock, but not the same decodes: any change moves where the steps fall in the audio,
and which decodes happen to agree changes with it, and the WER with them (`bench/RESULTS.md`
has how far, with the step size alone). Where the steps fall is set by the speech (the steps after a
pause count from it), so each file is replayed with `--around` step sizes spread 20 % apart
around `--step-ms`, and the figures are over all of them.

Per file, and over all words: the word lag (bench/word_lag.py) p50/p95 of partials and of
commits, the live WER, how busy the steps keep one decoder (seconds of decoding per second
of audio, by the cost model: what N streams need of a worker is about N times that), and
the words shown later than a second (they make the p95).
`--show INDEX` also prints that file's steps: when, what audio, what each committed and the
partial it left.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SAMPLE_RATE, Speech, dump, machine, real_speech, table
from bench.common import word_error_rate as wer
from bench.word_lag import word_lags
from whisperfarm.packets import BYTES_PER_SAMPLE, FRAMES_PER_PACKET
from whisperfarm.wire_bodies import AssignBody
from workers import engines
from workers.engines import Engine, fitted_frames
from workers.live import LiveOptions, LiveState, LiveStep
from workers.settings import WorkerSettings

PACKET_S = FRAMES_PER_PACKET / SAMPLE_RATE
ENCODE_FRAMES = (500, 1000, 3000)
ENCODE_S = (0.038, 0.094, 0.61)
"""One encoder pass over `ENCODE_FRAMES` mel frames, tiny.en (CTranslate2) on this machine
(`bench/RESULTS.md`, "How the live decoder was tuned"); between them, interpolated."""
DECODE_S_PER_AUDIO_S = 0.03
"""Greedy decoding with word timestamps per second of the step's audio: with the encoder
(a fitted 10 s window), a 4 s step takes 0.21 s, as measured."""
BEAM_COST = 1.3
"""Beam search (the engine's, for a step that closes) against greedy: 0.27 vs 0.21 s for a
4 s step."""
LATE_S = 1.0


@dataclass
class Replay:
    """One file replayed: its words' lags (in the final's order) and its live WER."""

    name: str
    words: list[str]
    partial: list[float]
    commit: list[float]
    wer: float
    busy: float
    """Seconds of decoding per second of audio (the cost model's): a worker's CPU share."""


def step_seconds(step: LiveStep) -> float:
    """What a step costs on the virtual clock (nothing without speech to decode)."""
    if step.request is None:
        return 0.0
    request = step.request
    frames = fitted_frames(len(request.source), request.fit_window or 3000)
    encode = float(np.interp(frames, ENCODE_FRAMES, ENCODE_S))
    seconds = encode + DECODE_S_PER_AUDIO_S * len(request.source) / SAMPLE_RATE
    return seconds * (1.0 if request.beam_size == 1 else BEAM_COST)


def replay(engine: Engine, speech: Speech, step_ms: int, show: bool) -> Replay:
    """`speech` streamed live on the virtual clock; lags from the messages as a client
    would get them."""
    spec = AssignBody(attempt=1, sample_rate=SAMPLE_RATE, live=True, word_timestamps=True)
    live = LiveState(spec, LiveOptions())
    pcm = speech.pcm
    packet_bytes = BYTES_PER_SAMPLE["s16le"] * FRAMES_PER_PACKET
    sent = [(i + 1) * PACKET_S for i in range(-(-len(pcm) // packet_bytes))]
    messages: list[dict[str, Any]] = []
    arrived: list[float] = []
    busy = 0.0

    def step(final: bool, now: float) -> float:
        nonlocal busy
        planned = live.next_step(final)
        result = None if planned.request is None else engine.transcribe([planned.request])[0]
        segments = live.apply(planned, result)
        cost = step_seconds(planned)
        busy += cost
        done = now + cost
        for segment in segments:
            messages.append({"type": "segment", "text": segment.text})
            arrived.append(done)
        messages.append({"type": "partial", "text": live.partial.text})
        arrived.append(done)
        if show and planned.request is not None:
            audio = f"{planned.base / SAMPLE_RATE:.2f}+{len(planned.pcm) / SAMPLE_RATE:.2f}"
            closes = " closes" if planned.closes else ""
            print(f"  {now:6.2f}→{done:6.2f} audio {audio}{closes} committed "
                  f"{[s.text for s in segments]} partial {live.partial.text!r}")  # fmt: skip
        return done

    busy_until = 0.0
    for index, now in enumerate(sent):
        live.feed(pcm[index * packet_bytes : (index + 1) * packet_bytes])
        if now >= busy_until and live.wants_step(step_ms):
            busy_until = step(False, now)
    live.end()
    end = step(True, max(sent[-1], busy_until))
    text = " ".join(s.text.strip() for s in live.segments)
    final = {"type": "final", "text": text,
             "segments": [s.model_dump() for s in live.segments]}  # fmt: skip
    lags = word_lags([*messages, final], [*arrived, end], sent, PACKET_S)
    return Replay(speech.name, [w.word for w in lags.words], lags.partial, lags.commit,
                  wer(speech.reference, text), busy / speech.seconds)  # fmt: skip


def row(name: str, replays: Sequence[Replay]) -> list[Any]:
    partial = [lag for r in replays for lag in r.partial]
    commit = [lag for r in replays for lag in r.commit]
    late = [f"{w} {lag:.1f}" for r in replays for w, lag in zip(r.words, r.partial, strict=True)
            if lag > LATE_S]  # fmt: skip
    return [
        name,
        f"{np.percentile(partial, 50):.2f} / {np.percentile(partial, 95):.2f}",
        f"{np.percentile(commit, 50):.2f} / {np.percentile(commit, 95):.2f}",
        f"{100 * np.mean([r.wer for r in replays]):.1f} %",
        f"{np.mean([r.busy for r in replays]):.3f}",
        ", ".join(late[:8]) + (" …" if len(late) > 8 else ""),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4, help="the recordings are four")
    parser.add_argument("--seconds", type=float, default=40.0, help="audio per file")
    parser.add_argument(
        "--step-ms",
        type=int,
        default=WorkerSettings().live_step_ms,
        help="as the worker's --live-step-ms (a stream alone)",
    )
    parser.add_argument("--around", type=int, default=3, help="step sizes per file")
    parser.add_argument("--show", type=int, help="print this file's steps (at --step-ms)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}; steps around {args.step_ms} ms; virtual clock")
    settings = WorkerSettings(engine="faster-whisper", model="tiny.en")
    engine = engines.load(settings)
    with tempfile.TemporaryDirectory(prefix="bench-live-replay-") as tmp:
        files = real_speech(args.files, args.seconds, Path(tmp))
        steps = [round(args.step_ms * (1 + (k - (args.around - 1) / 2) / 5))
                 for k in range(args.around)]  # fmt: skip
        replays = [[replay(engine, speech, step, index == args.show and step == args.step_ms)
                    for step in steps]
                   for index, speech in enumerate(files)]  # fmt: skip
    headers = ["file", "partial p50 / p95 s", "commit p50 / p95 s", "WER", "busy",
               f"words > {LATE_S} s"]  # fmt: skip
    rows = [row(r[0].name, r) for r in replays] + [row("all", [x for r in replays for x in r])]
    print(table(headers, rows))
    dump(args.json, {"step_ms": args.step_ms, "replays": [asdict(x) for r in replays for x in r]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
