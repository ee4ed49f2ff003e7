"""Worker memory: peak RSS of a worker serving 1 stream against one serving 10 at once.

    .venv/bin/python bench/memory.py [--engines faster-whisper,openai-whisper] [--seconds 20]

For each engine, two fresh workers (tiny.en, 10 slots, batching on) each get real speech:
the first one stream, the second ten at once. The worker's peak RSS (VmHWM, which also
catches a short spike during a forward pass) is read after its streams are final;
the difference is what 9 more concurrent streams cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Speech,
    dump,
    farm,
    final_text,
    machine,
    real_speech,
    rss_mb,
    stream_all,
    table,
    worker_pid,
)


def peak_rss(
    engine: str, files: list[Speech], tmp: Path, cache: Path, max_batch: int
) -> tuple[float, float]:
    """(RSS after the model loaded, peak RSS after serving `files` at once), in MB."""
    args = ["--model", "tiny.en", "--model-cache-dir", str(cache), "--slots", "10",
            "--max-batch", str(max_batch)]  # fmt: skip
    with farm(tmp, engine, *args) as (broker, workers):
        pid = worker_pid(workers[0])
        idle = rss_mb(pid)
        replies, _ = asyncio.run(stream_all(broker, files))
        if any(final_text(r) is None for r in replies):
            raise SystemExit(f"{engine}: a stream failed: {[r.last for r in replies]}")
        return idle, rss_mb(pid, "VmHWM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="faster-whisper,openai-whisper")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument(
        "--max-batch", type=lambda v: [int(x) for x in v.split(",")], default=[8, 1],
        help="comma-separated --max-batch values to measure (batching costs memory)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows: list[list[object]] = []
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        files = real_speech(10, args.seconds, tmp)
        for engine in args.engines.split(","):
            for max_batch in args.max_batch:
                idle, one = peak_rss(engine, files[:1], tmp, tmp / "models", max_batch)
                _, ten = peak_rss(engine, files, tmp, tmp / "models", max_batch)
                key = f"{engine} --max-batch {max_batch}"
                results[key] = {"idle_mb": idle, "one_mb": one, "ten_mb": ten}
                rows.append([engine, max_batch, idle, one, ten, ten - one])
    print(table(["engine", "--max-batch", "RSS loaded MB", "peak RSS 1 stream MB",
                 "peak RSS 10 streams MB", "10 − 1 MB"], rows))  # fmt: skip
    for key, r in results.items():
        print(f"{key}: RSS(10 streams) − RSS(1 stream) = {r['ten_mb'] - r['one_mb']:.0f} MB")
    dump(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
