"""Speaker labels: their cost and accuracy on a real worker (faster-whisper tiny.en + CAM++).

    .venv/bin/python bench/diarize.py [--rounds 2] [--json FILE]

Dialogues with known turns (`tests/dialogue.py`): espeak-ng voices in turns — two voices
(two orders), three voices, one voice — and the committed recordings in turns (a LibriVox
reader and President Kennedy). One worker (1 slot) gets each dialogue unpaced, without
and with `diarize`, alternately, `--rounds` times. Reported per dialogue:

- diarization seconds (the worker's `whisperfarm_worker_diarize_seconds`) per audio minute,
  and as a share of the stream's processing time without labels (client wall time from
  `start` to `final`, best round);
- DER: frame-level (10 ms) diarization error rate of the final's segments against the
  turns, speakers mapped one-to-one at best, a 0.25 s collar around each reference turn
  edge not scored; "confusion" counts only frames both sides call speech, i.e. the
  speaker model's own errors, apart from where Whisper put segment edges;
- the worker's extra memory: VmRSS after its first labelled stream minus after a plain one
  (the speaker model loads with the first stream that asks for labels).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import dump, farm, machine, rss_mb, table, worker_pid
from tests.dialogue import RATE, Turn, espeak_dialogue, recorded_dialogue
from tests.wsclient import stream_pcm

FRAME_S = 0.01
COLLAR_S = 0.25
DIARIZE = "whisperfarm_worker_diarize_seconds_sum"


@dataclass
class Dialogue:
    name: str
    pcm: np.ndarray
    turns: list[Turn]

    @property
    def minutes(self) -> float:
        return len(self.pcm) / RATE / 60


def dialogues() -> list[Dialogue]:
    made = [
        Dialogue("espeak 2 voices (A B …)", *espeak_dialogue("AB", 9)),
        Dialogue("espeak 2 voices (B A …)", *espeak_dialogue("BA", 9)),
        Dialogue("espeak 3 voices", *espeak_dialogue("ABC", 9)),
        Dialogue("espeak 1 voice", *espeak_dialogue("A", 6)),
        Dialogue("recordings, 2 voices", *recorded_dialogue()),
    ]
    return made


def frames(spans: list[tuple[str, float, float]], total: int) -> list[set[str]]:
    """Who speaks in each 10 ms frame."""
    out: list[set[str]] = [set() for _ in range(total)]
    for who, start, end in spans:
        for i in range(max(0, round(start / FRAME_S)), min(total, round(end / FRAME_S))):
            out[i].add(who)
    return out


def der(turns: list[Turn], segments: list[dict[str, Any]], seconds: float) -> tuple[float, float]:
    """(DER, confusion share) of `segments` against `turns`; see the module docstring."""
    total = round(seconds / FRAME_S) + 1
    ref = frames([(t.speaker, t.start, t.end) for t in turns], total)
    hyp = frames([(s.get("speaker", "?"), s["start"], s["end"]) for s in segments], total)
    scored = np.ones(total, dtype=bool)
    for t in turns:
        for edge in (t.start, t.end):
            scored[
                max(0, round((edge - COLLAR_S) / FRAME_S)) : round((edge + COLLAR_S) / FRAME_S)
            ] = False
    refs = sorted({t.speaker for t in turns})
    hyps = sorted({h for f in hyp for h in f})
    best = (float("inf"), 0.0)
    for chosen in itertools.permutations(hyps + [None] * len(refs), len(refs)):
        mapping = {h: r for r, h in zip(refs, chosen, strict=True) if h is not None}
        missed = false = confused = speech = 0
        for i in np.flatnonzero(scored):
            r, h = ref[i], {mapping.get(x, "?" + x) for x in hyp[i]}
            speech += len(r)
            missed += max(0, len(r) - len(h))
            false += max(0, len(h) - len(r))
            confused += min(len(r), len(h)) - len(r & h)
        if speech and (missed + false + confused) / speech < best[0]:
            best = ((missed + false + confused) / speech, confused / speech)
    return best


async def once(url: str, dialogue: Dialogue, diarize: bool) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    reply = await stream_pcm(url, dialogue.pcm.astype("<i2").tobytes(), diarize=diarize)
    wall = time.perf_counter() - started
    final = reply.of("final")
    if not final:
        raise RuntimeError(f"{dialogue.name}: no final: {reply.messages[-1:]}")
    return final[0], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine())
    sets = dialogues()
    rows, data = [], []
    with (
        tempfile.TemporaryDirectory(prefix="bench-diarize-") as tmp,
        farm(Path(tmp), "faster-whisper", "--slots", "1") as (broker, workers),
    ):
        worker = workers[0]
        pid = worker_pid(worker)
        asyncio.run(once(broker.ws, sets[0], False))
        plain_rss = rss_mb(pid)
        asyncio.run(once(broker.ws, sets[0], True))
        labelled_rss = rss_mb(pid)
        for d in sets:
            walls, costs, finals = [], [], []
            for _ in range(args.rounds):
                _, wall = asyncio.run(once(broker.ws, d, False))
                walls.append(wall)
                before = worker.metric(DIARIZE)
                final, _ = asyncio.run(once(broker.ws, d, True))
                costs.append(worker.metric(DIARIZE) - before)
                finals.append(final)
            final = finals[-1]
            error, confusion = der(d.turns, final["segments"], len(d.pcm) / RATE)
            found = len({s["speaker"] for s in final["segments"]})
            row = {
                "dialogue": d.name,
                "audio_s": round(len(d.pcm) / RATE, 1),
                "speakers": f"{found} of {len({t.speaker for t in d.turns})}",
                "diarize_s_per_min": min(costs) / d.minutes,
                "added_pct": 100 * min(costs) / min(walls),
                "processing_s": min(walls),
                "der_pct": 100 * error,
                "confusion_pct": 100 * confusion,
            }
            data.append(row)
            rows.append(list(row.values()))
    headers = ["dialogue", "audio s", "speakers found", "diarize s / audio min", "added %",
               "processing s (no labels)", "DER %", "confusion %"]  # fmt: skip
    print(table(headers, rows))
    print(f"worker RSS: {plain_rss:.0f} MB after a plain stream, {labelled_rss:.0f} MB after "
          f"its first labelled one: +{labelled_rss - plain_rss:.0f} MB")  # fmt: skip
    dump(args.json, {"machine": machine(), "rows": data, "rss_mb": [plain_rss, labelled_rss]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
