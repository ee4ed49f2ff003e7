"""A very large file through the OpenAI edge: the broker's memory stays flat.

    .venv/bin/python bench/openai_big_upload.py [--mb 2048] [--json out.json]

Writes a WAV of `--mb` MiB (48 kHz stereo s16: a quiet tone), starts a broker with
`--max-upload-mb` above it and a `null` worker, posts the file to
`/v1/audio/transcriptions` streamed from disk, and prints the broker's peak RSS (its
`VmHWM`) next to its RSS at rest, the wall time and the job's audio seconds. The file is
spooled as it arrives, decoded in a child process and fed in 1000-frame packets, so the
broker never holds it whole: the peak must not grow with the file's size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import dump, farm, machine, rss_mb

RATE, CHANNELS = 48_000, 2


def write_wav(path: Path, mib: int) -> float:
    """A tone of `mib` MiB of PCM, written a minute at a time; returns its seconds."""
    minute = (np.sin(np.arange(RATE * 60) * 2 * np.pi * 220 / RATE) * 300).astype("<i2")
    block = np.repeat(minute, CHANNELS).tobytes()
    left = mib * 1024 * 1024
    with wave.open(str(path), "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(2)
        out.setframerate(RATE)
        while left > 0:
            out.writeframes(block[: min(left, len(block))])
            left -= len(block)
    return mib * 1024 * 1024 / (RATE * CHANNELS * 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "big.wav"
        seconds = write_wav(path, args.mb)
        limit = ["--max-upload-mb", str(args.mb + 16), "--max-stream-seconds", str(seconds + 60)]
        with farm(tmp, "null", broker_args=limit) as (broker, _):
            pid = broker.process.popen.pid
            at_rest = rss_mb(pid)
            started = time.perf_counter()
            with path.open("rb") as f:
                response = httpx.post(
                    broker.http + "/v1/audio/transcriptions",
                    files={"file": ("big.wav", f, "audio/wav")}, data={"model": "whisper-1"},
                    timeout=3600,
                )  # fmt: skip
            wall = time.perf_counter() - started
            peak = rss_mb(pid, "VmHWM")
            job = broker.jobs()[0]
        print(f"file {args.mb} MiB ({seconds / 3600:.2f} h of 48 kHz stereo): HTTP "
              f"{response.status_code}, {wall:.0f} s; job {job['status']}, "
              f"{job['duration']:.0f} s of audio")  # fmt: skip
        print(f"broker RSS at rest {at_rest:.0f} MB, peak {peak:.0f} MB")
        dump(args.json, {"mb": args.mb, "wall": wall, "rss_rest": at_rest, "rss_peak": peak,
                         "status": response.status_code, "job": job})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
