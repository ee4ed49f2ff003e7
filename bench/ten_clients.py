"""Ten clients at once: ~40 s of real speech each, no pacing, one worker.

    .venv/bin/python bench/ten_clients.py [--clients 10] [--seconds 40]
        [--engine faster-whisper] [--max-batch 8] [--json out.json]

Each client streams its own file (real recordings one after another, every file starting
with a different one) as fast as the broker takes it. Prints the overall real-time
factor (audio seconds / wall seconds from the first start to the last final), each
client's WER against what was said, and — measured in the same run — the raw engine
transcribing the same files one after another (beam 5, default threads), so the
farm/raw ratio is side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    dump,
    effective_batch,
    farm,
    final_text,
    machine,
    real_speech,
    stream_all,
    table,
)
from bench.common import word_error_rate as wer
from bench.throughput import raw_run

MAX_WER = 0.15
"""A transcript counts as correct at or below this WER (the tests' threshold)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--engine", default="faster-whisper")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each counts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-ten-") as tmp_name:
        tmp = Path(tmp_name)
        files = real_speech(args.clients, args.seconds, tmp)
        audio = sum(s.seconds for s in files)
        worker = ["--model", "tiny.en", "--model-cache-dir", str(tmp / "models"),
                  "--slots", str(args.clients), "--max-batch", str(args.max_batch)]  # fmt: skip
        walls, raws = [], []
        with farm(tmp, args.engine, *worker) as (broker, workers):
            batch, passes = effective_batch(workers[0])
            asyncio.run(stream_all(broker, files[:1]))  # warm-up
            for _ in range(args.repeat):  # alternate, so load from elsewhere hits both alike
                replies, wall = asyncio.run(stream_all(broker, files))
                raw_wall, raw_texts = raw_run(args.engine, files, tmp / "models")
                walls.append(wall)
                raws.append(raw_wall)
        wall, raw = min(walls), min(raws)
    texts = [final_text(r) for r in replies]
    rows = [
        [s.name, round(s.seconds, 1), "final" if t is not None else str(r.last)[:60],
         wer(s.reference, t or ""), wer(s.reference, raw_text), wer(raw_text, t or "")]
        for s, t, r, raw_text in zip(files, texts, replies, raw_texts, strict=True)
    ]  # fmt: skip
    print(table(["client file", "audio s", "result", "WER", "raw engine's WER",
                 "farm vs raw WER"], rows))  # fmt: skip
    correct = sum(
        t is not None and wer(s.reference, t) <= MAX_WER for s, t in zip(files, texts, strict=True)
    )
    print(f"\n{args.clients} clients, {audio:.0f} s of audio, {args.engine}, "
          f"--max-batch {args.max_batch} ({batch} windows per forward pass, "
          f"{passes} passes at once)")  # fmt: skip
    print(f"farm: {audio / wall:.1f}x real time ({wall:.1f} s); {correct}/{len(files)} complete "
          f"and correct (WER <= {MAX_WER})")  # fmt: skip
    print(f"raw engine, files one after another: {audio / raw:.1f}x real time ({raw:.1f} s)")
    print(f"farm/raw = {raw / wall:.2f}")
    dump(args.json, {"audio_s": audio, "farm_wall_s": wall, "raw_wall_s": raw,
                     "correct": correct, "wer": [row[3] for row in rows]})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
