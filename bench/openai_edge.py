"""The OpenAI edge against the native source CLI: the same files, the same farm, one run.

    .venv/bin/python bench/openai_edge.py [--files 6] [--seconds 20] [--rounds 2] [--json out.json]

One broker + one tiny.en worker (faster-whisper). Each round sends every file at once
twice, interleaved: through `POST /v1/audio/transcriptions` (the `openai` SDK, one
thread per file) and through `whisperfarm-source` (one process, all files). Prints the
wall time of each side (best of the rounds), the ratio edge/CLI (target: ≤ 1.10) and
each side's word error rate against the reference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import OpenAI

from bench.common import ROOT, Speech, dump, farm, machine, real_speech, table
from tests.farm import Broker
from tests.speech import word_error_rate


def through_openai(broker: Broker, files: list[Speech]) -> tuple[float, list[str]]:
    api = OpenAI(base_url=broker.http + "/v1", api_key="unused", max_retries=0, timeout=600)

    def one(speech: Speech) -> str:
        with speech.path.open("rb") as f:
            return api.audio.transcriptions.create(model="whisper-1", file=f).text

    started = time.perf_counter()
    with ThreadPoolExecutor(len(files)) as pool:
        texts = list(pool.map(one, files))
    return time.perf_counter() - started, texts


def through_cli(broker: Broker, files: list[Speech], out: Path) -> tuple[float, list[str]]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "source", "--url", broker.ws, "--out", str(out), "--quiet",
         *(str(s.path) for s in files)],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    return elapsed, [(out / f"{s.path.stem}.txt").read_text().strip() for s in files]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = real_speech(args.files, args.seconds, tmp)
        audio_s = sum(s.seconds for s in files)
        worker_args = ("--model", "tiny.en", "--slots", str(len(files)))
        best = {"openai": float("inf"), "cli": float("inf")}
        wer: dict[str, float] = {}
        with farm(tmp, "faster-whisper", *worker_args) as (broker, _):
            for n in range(args.rounds):
                for side in ("openai", "cli"):
                    out = tmp / f"out-{n}"
                    out.mkdir(exist_ok=True)
                    if side == "openai":
                        wall, texts = through_openai(broker, files)
                    else:
                        wall, texts = through_cli(broker, files, out)
                    best[side] = min(best[side], wall)
                    wer[side] = sum(
                        word_error_rate(s.reference, t) for s, t in zip(files, texts, strict=True)
                    ) / len(files)
        rows = [
            [side, f"{best[side]:.2f}", f"{audio_s / best[side]:.1f}", f"{wer[side]:.3f}"]
            for side in ("openai", "cli")
        ]
        print(f"{len(files)} files, {audio_s:.0f} s of speech, best of {args.rounds} rounds")
        print(table(["side", "wall s", "audio s / wall s", "mean WER"], rows))
        ratio = best["openai"] / best["cli"]
        print(f"OpenAI edge / source CLI wall time: {ratio:.3f} (target ≤ 1.10)")
        dump(args.json, {"best": best, "wer": wer, "ratio": ratio, "audio_s": audio_s})
    return 0


if __name__ == "__main__":
    sys.exit(main())
