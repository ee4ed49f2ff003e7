"""Shared pieces of the benchmarks: real speech, a farm on loopback, process stats, tables.

Benchmarks run both sides of a comparison in one run, on the same files and machine, and
print a table plus ratio lines; they assert nothing about speed (see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.farm import Broker, Worker, start_broker, start_worker, wait_for  # noqa: E402
from tests.speech import fixture_clips, word_error_rate  # noqa: E402
from tests.wsclient import Reply, stream_pcm  # noqa: E402

SAMPLE_RATE = 16_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
GAP_S = 1.0
"""Silence between two recordings in a benchmark file."""


@dataclass
class Speech:
    """One benchmark input: 16 kHz mono audio, what was said, and a file holding it."""

    name: str
    audio: np.ndarray
    reference: str
    path: Path

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def pcm(self) -> bytes:
        pcm: bytes = (np.clip(self.audio, -1, 1) * 32767).astype("<i2").tobytes()
        return pcm


def _clips() -> list[tuple[np.ndarray, str]]:
    from faster_whisper.audio import decode_audio

    return [(decode_audio(str(p), sampling_rate=SAMPLE_RATE), t) for p, t in fixture_clips()]


def real_speech(count: int, seconds: float, out_dir: Path) -> list[Speech]:
    """`count` files of about `seconds` each, made of the committed real recordings
    (LibriVox readers, President Kennedy) one after another, each file starting at a
    different clip, with `GAP_S` of silence between clips (with 0.3 s, tiny.en drops a
    whole sentence at a window edge of some files, raw engine and farm alike)."""
    clips = _clips()
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    made = []
    for n in range(count):
        parts: list[np.ndarray] = []
        texts: list[str] = []
        i = n
        while sum(p.shape[0] for p in parts) < seconds * SAMPLE_RATE:
            audio, text = clips[i % len(clips)]
            parts += [audio, gap]
            texts.append(text)
            i += 1
        audio = np.concatenate(parts[:-1]).astype(np.float32)
        path = out_dir / f"speech-{n}.wav"
        speech = Speech(path.stem, audio, " ".join(texts), path)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(speech.pcm)
        made.append(speech)
    return made


# ---- the farm ------------------------------------------------------------------------------


@contextmanager
def farm(
    tmp: Path,
    engine: str,
    *worker_args: str,
    workers: int = 1,
    broker_args: Sequence[str] = (),
    data_dir: Path | None = None,
) -> Iterator[tuple[Broker, list[Worker]]]:
    """A broker and `workers` workers on loopback, ready; stopped afterwards."""
    broker = start_broker(tmp, "--max-active", "2000", *broker_args, data_dir=data_dir)
    started = [
        start_worker(tmp, broker.zmq, *worker_args, engine=engine, slots=_slots(worker_args))
        for _ in range(workers)
    ]
    try:
        broker.wait_workers(workers, timeout=300)
        yield broker, started
    finally:
        for worker in started:
            worker.process.stop(timeout=30)
        broker.process.stop(timeout=30)


def _slots(args: Sequence[str]) -> int:
    return int(args[list(args).index("--slots") + 1]) if "--slots" in args else 4


def effective_batch(worker: Worker) -> tuple[int, int]:
    """(windows per forward pass, passes at once) the worker settled on: `--max-batch`
    capped by its memory budget (`--batch-memory-mb`), and `--parallel-batches`; read from
    its metrics."""
    text = httpx.get(worker.metrics_url(), timeout=10).text

    def gauge(name: str) -> int:
        found = re.search(rf"^whisperfarm_worker_{name} (\S+)$", text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    return gauge("max_batch"), gauge("parallel_batches")


def worker_pid(worker: Worker) -> int:
    return worker.process.popen.pid


async def stream_all(broker: Broker, inputs: Sequence[Speech]) -> tuple[list[Reply], float]:
    """Every input at once, unpaced; returns the replies and the wall time."""
    started = time.perf_counter()
    replies = await asyncio.gather(*(stream_pcm(broker.ws, s.pcm, name=s.name) for s in inputs))
    return list(replies), time.perf_counter() - started


def stream_cli(broker: Broker, inputs: Sequence[Speech], out_dir: Path) -> float:
    """Every input at once through the source CLI (`python -m source`), as a user runs it;
    returns the wall time, the CLI's start-up and exit included."""
    command = [sys.executable, "-m", "source", "--quiet", "--url", broker.ws,
               "--out", str(out_dir), *(str(s.path) for s in inputs)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the CLI exited with {done.returncode}: {done.stderr.decode()[-2000:]}")
    return wall


def final_text(reply: Reply) -> str | None:
    last = reply.last
    return str(last["text"]) if last.get("type") == "final" else None


# ---- process statistics ----------------------------------------------------------------------


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its peak (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---- output ------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain Markdown table (pastes into RESULTS.md as is)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in cells])


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def machine() -> str:
    """One line about where the numbers come from."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({model}), load average at start {load:.2f}"


def dump(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2))


__all__ = ["Speech", "final_text", "wait_for", "word_error_rate"]
