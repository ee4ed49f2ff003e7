"""Broker load: K concurrent real-time streams against a broker with null-engine workers.

    .venv/bin/python bench/broker_load.py [--streams 1000] [--seconds 10] [--workers 4]
        [--client-procs 2] [--ramp 5] [--json out.json]

Each stream sends 1000-frame 16 kHz s16le packets paced at real time (one every 62.5 ms)
for `--seconds`, then `end`, and waits for its `final`. Clients run in `--client-procs`
processes (asyncio, one connection per stream, one pacing timer per process that writes
pre-built frames: see `Pacer`), starting evenly over `--ramp` seconds.
The null workers answer instantly, so the time from `end` to `final` is what the broker
(and the worker round trip) adds. Prints packets/s sustained, p50/p99 added latency and
where it goes, the broker's own event-loop lag (its metric), broker CPU and peak RSS (its
disk agent's included), how late clients fell behind their pacing, and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, dump, farm, machine, rss_mb, table
from tests.exposition import samples
from tests.farm import Broker
from tests.wsclient import start_message

PACKET_FRAMES = 1000
PACKET_S = PACKET_FRAMES / 16_000
PACKET = bytes(PACKET_FRAMES * 2)


class PacedStream:
    """One stream's upload: packets written as pre-built WebSocket frames by the `Pacer`."""

    def __init__(self, ws: ClientConnection, packets: int, result: dict[str, Any]) -> None:
        self.ws, self.packets, self.result = ws, packets, result
        self.sent = 0
        self.started = self.next_at = time.perf_counter()
        self.ended_at: float | None = None
        self.frame = masked_binary_frame(PACKET)

    def send_next(self, now: float) -> bool:
        """Write the packet that is due; returns whether more are to come."""
        self.result["lag"] = max(self.result["lag"], now - self.next_at)
        self.ws.transport.write(self.frame)
        self.sent += 1
        self.result["packets"] = self.sent
        self.next_at = self.started + self.sent * PACKET_S
        return self.sent < self.packets

    async def end(self) -> None:
        self.ended_at = self.result["last"] = time.perf_counter()
        self.result["end_wall"] = time.time()  # to line up with the broker's job record
        await self.ws.send(json.dumps({"type": "end"}))


def masked_binary_frame(payload: bytes) -> bytes:
    """A client's binary WebSocket frame (RFC 6455 § 5.2), masked with a random key."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x82, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + mask + masked


class Pacer:
    """Every stream of a process paced by one timer, not a coroutine and a sleep per packet.

    The load generator shares the 2-core machine with the broker it measures; with a
    `websockets` `send` and an `asyncio.sleep` per packet, 16 000 packets a second cost
    the clients half a core, taken from the broker. Here each tick writes every due
    stream's packet, a frame built once per stream, straight to its transport. All
    streams have the same period, so a deque in due order stays in due order.
    """

    TICK_S = 0.005

    def __init__(self) -> None:
        self.due: collections.deque[PacedStream] = collections.deque()
        self.wakeup = asyncio.Event()
        self._ends: set[asyncio.Task[None]] = set()

    def add(self, stream: PacedStream) -> None:
        """Send the first packet now; the next is due after every stream already here."""
        self._advance(stream, time.perf_counter())
        self.wakeup.set()

    def _advance(self, stream: PacedStream, now: float) -> None:
        if stream.send_next(now):
            self.due.append(stream)
        else:
            task = asyncio.create_task(stream.end())
            self._ends.add(task)
            task.add_done_callback(self._ends.discard)

    async def run(self) -> None:
        """Until cancelled: each tick, write every due packet; `end` after a stream's last."""
        while True:
            if not self.due:
                self.wakeup.clear()
                await self.wakeup.wait()
            now = time.perf_counter()
            while self.due and self.due[0].next_at <= now:
                stream = self.due.popleft()
                if stream.ws.state is State.OPEN:  # else its own coroutine reports the error
                    self._advance(stream, now)
            await asyncio.sleep(self.TICK_S)


async def one_stream(url: str, packets: int, delay: float, pacer: Pacer) -> dict[str, Any]:
    """Start after `delay`, have the pacer send the packets and `end`; report latency."""
    await asyncio.sleep(delay)
    result: dict[str, Any] = {"error": None, "latency": None, "lag": 0.0, "packets": 0}
    stream: PacedStream | None = None
    try:
        async with websockets.connect(
            url, max_size=None, open_timeout=60, compression=None, ping_interval=None
        ) as ws:
            await ws.send(start_message(name="load"))
            accepted = json.loads(await ws.recv())
            if accepted.get("type") != "accepted":
                result["error"] = accepted.get("code", "not accepted")
                return result
            result["job_id"] = accepted["job_id"]
            stream = PacedStream(ws, packets, result)
            result["first"] = stream.started
            pacer.add(stream)
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "final" and stream.ended_at is not None:
                    result["latency"] = time.perf_counter() - stream.ended_at
                    result["final_wall"] = time.time()
                    break
                if message.get("type") in ("final", "error"):
                    result["error"] = message.get("code", "final before end")
                    break
    except Exception as exc:
        result["error"] = type(exc).__name__
    if result["latency"] is None and result["error"] is None:
        result["error"] = "closed without final"
    return result


def client_process(
    url: str, count: int, packets: int, ramp: float, offset: int, total: int
) -> list[dict[str, Any]]:
    """One client process: `count` streams, their starts spread over the ramp; the last
    item is this process's CPU seconds."""

    async def run() -> list[dict[str, Any]]:
        delays = [ramp * (offset + i) / total for i in range(count)]
        pacer = Pacer()
        streams = [one_stream(url, packets, d, pacer) for d in delays]
        pacing = asyncio.create_task(pacer.run())
        results = list(await asyncio.gather(*streams))
        pacing.cancel()
        return results

    # uvloop: the load generator should cost the shared machine as little as it can.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(run())
    return [*results, {"cpu": time.process_time()}]


class Sampler(threading.Thread):
    """Samples the RSS of the broker (with its disk agent) while the load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_rss, self.stop = pids, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, sum(rss_mb(pid) for pid in self.pids))


def run_load(
    args: argparse.Namespace, broker: Broker, worker_pids: list[int]
) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """Run the clients; returns their results, CPU % by side, and the broker's peak RSS."""
    url, broker_pid = broker.ws, broker.process.popen.pid
    packets = round(args.seconds / PACKET_S)
    share = [
        args.streams // args.client_procs + (i < args.streams % args.client_procs)
        for i in range(args.client_procs)
    ]
    offsets = [sum(share[:i]) for i in range(len(share))]
    agents = broker.disk_agent_pids()  # its writes are the broker's
    sampler = Sampler([broker_pid, *agents])
    sampler.start()
    pids = (broker_pid, *agents, *worker_pids)
    cpu0 = [cpu_seconds(pid) for pid in pids]
    wall0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.client_procs) as pool:
        jobs = [pool.apply_async(client_process, (url, n, packets, args.ramp, off, args.streams))
                for n, off in zip(share, offsets, strict=True)]  # fmt: skip
        results = [r for job in jobs for r in job.get()]
    wall = time.perf_counter() - wall0
    used = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    sampler.stop.set()
    broker_used = used[: 1 + len(agents)]
    cpu = {
        "broker": 100 * sum(broker_used) / wall,
        "disk_agent": 100 * sum(broker_used[1:]) / wall,
        "workers": 100 * sum(used[1 + len(agents) :]) / wall,
        "clients": 100 * sum(r["cpu"] for r in results if "cpu" in r) / wall,
    }
    return [r for r in results if "cpu" not in r], cpu, sampler.peak_rss


STAGES = {  # name: (from, to), wall-clock times from the client's results and the job record
    "to_broker": ("end_wall", "upload_ended_at"),
    "to_worker_done": ("upload_ended_at", "decode_ended"),
    "to_stored": ("decode_ended", "finished_at"),
    "to_client": ("finished_at", "final_wall"),
}


def stage_latencies(results: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the time from `end` to `final` goes, from the clients' clocks and the
    broker's job records (one host, one clock): the client's `end` reaching the broker,
    the worker's round trip, storing the transcript, and the final reaching the client.
    Also each stage's mean over the slowest 1 % of streams: which stage makes the p99."""
    by_id = {j["id"]: j for j in jobs if j["status"] == "done"}
    rows = [
        r | by_id[r["job_id"]]
        for r in results
        if r["error"] is None and r.get("job_id") in by_id
        and all(by_id[r["job_id"]].get(key) for key in ("decode_ended", "upload_ended_at"))
    ]  # fmt: skip
    out: dict[str, Any] = {}
    slowest = sorted(rows, key=lambda row: row["latency"])[-max(1, len(rows) // 100) :]
    for name, (begin, end) in STAGES.items():
        values = sorted(row[end] - row[begin] for row in rows)
        for q in (50, 99):
            index = min(len(values) - 1, q * len(values) // 100)
            out[f"{name}_p{q}_ms"] = values[index] * 1000 if values else float("nan")
        tail = [row[end] - row[begin] for row in slowest]
        out[f"{name}_slowest_ms"] = statistics.fmean(tail) * 1000 if tail else float("nan")
    if slowest:  # all at once (one stall) or spread out (the steady state)?
        first_end = min(row["end_wall"] for row in rows)
        ends = [row["end_wall"] - first_end for row in slowest]
        out["slowest_ended_after_s"] = [min(ends), max(ends)]
    return out


def loop_lag_bounds(metrics_text: str) -> dict[str, float]:
    """From the broker's own event-loop lag histogram (a 100 ms timer, over its whole
    run): the bucket bounds (ms) that its p50, its p99 and its worst sample fall under."""
    buckets = [
        (float(sample.labels["le"]), sample.value)
        for sample in samples(metrics_text, "whisperfarm_broker_event_loop_lag_seconds_bucket")
    ]
    total = buckets[-1][1] if buckets else 0.0

    def bound(share: float) -> float:
        return next((le * 1000 for le, count in buckets if count >= share * total), float("nan"))

    return {"loop_lag_p50_ms": bound(0.5), "loop_lag_p99_ms": bound(0.99),
            "loop_lag_max_ms": bound(1.0), "loop_lag_samples": total}  # fmt: skip


def summarize(results: list[dict[str, Any]], cpu: dict[str, float], rss: float) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None]
    latencies = sorted(r["latency"] for r in ok)
    sent = sum(r["packets"] for r in results)
    span = max(r.get("last", 0) for r in results) - min(r.get("first", 1e18) for r in results)

    def quantile(q: float) -> float:
        if not latencies:
            return float("nan")
        return float(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)

    return {
        "streams": len(results), "completed": len(ok), "errors": len(results) - len(ok),
        "error_kinds": sorted({str(r["error"]) for r in results if r["error"]}),
        "packets_per_s": sent / span if span > 0 else 0.0,
        "p50_ms": quantile(0.50), "p99_ms": quantile(0.99),
        "max_client_lag_ms": max(r["lag"] for r in results) * 1000,
        "broker_cpu_percent": cpu["broker"], "disk_agent_cpu_percent": cpu["disk_agent"],
        "workers_cpu_percent": cpu["workers"],
        "clients_cpu_percent": cpu["clients"], "broker_peak_rss_mb": rss,
        "mean_latency_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    parser.add_argument("--workers", type=int, default=4, help="null-engine workers")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which streams start")
    parser.add_argument(
        "--data-dir", type=Path,
        help="the broker's data dir (default: a temp dir under $TMPDIR); e.g. a tmpfs "
        "path to see the broker without the disk's sync time",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    slots = min(256, -(-args.streams // args.workers))
    with (
        tempfile.TemporaryDirectory(prefix="bench-load-") as tmp_name,
        farm(
            Path(tmp_name),
            "null",
            "--slots",
            str(slots),
            workers=args.workers,
            broker_args=["--data-dir", str(args.data_dir / Path(tmp_name).name)]
            if args.data_dir
            else [],
        ) as (broker, ws),
    ):
        pids = [w.process.popen.pid for w in ws]
        results, cpu, rss = run_load(args, broker, pids)
        jobs = broker.get("/v1/jobs", limit=args.streams).json()["jobs"]
        stages = stage_latencies(results, jobs) | loop_lag_bounds(broker.get("/metrics").text)
    if args.data_dir:
        shutil.rmtree(args.data_dir / Path(tmp_name).name, ignore_errors=True)
    summary = summarize(results, cpu, rss) | stages
    print(table(
        ["streams", "completed", "errors", "packets/s", "p50 added latency ms",
         "p99 added latency ms", "broker CPU %", "broker peak RSS MB", "max client lag ms"],
        [[summary["streams"], summary["completed"], summary["errors"], summary["packets_per_s"],
          summary["p50_ms"], summary["p99_ms"], summary["broker_cpu_percent"],
          summary["broker_peak_rss_mb"], summary["max_client_lag_ms"]]],
    ))  # fmt: skip
    used = [summary[f"{side}_cpu_percent"] for side in ("broker", "workers", "clients")]
    print(f"\nCPU over the run (100 % = one core of {os.cpu_count()}): broker {used[0]:.0f} % "
          f"(of which its disk agent {summary['disk_agent_cpu_percent']:.0f} %), "
          f"null workers {used[1]:.0f} %, load clients {used[2]:.0f} %")  # fmt: skip
    plateau = args.streams / PACKET_S
    print(f"\nreal-time demand with all {args.streams} streams on: {plateau:.0f} packets/s; "
          f"clients fell at most {summary['max_client_lag_ms']:.0f} ms behind "
          f"(a packet every {PACKET_S * 1000:.1f} ms)")  # fmt: skip
    print("where the time after `end` goes (ms): p50 / p99 / mean of the slowest 1 %")
    for name, label in (
        ("to_broker", "client's end → broker has it"),
        ("to_worker_done", "broker → worker done"),
        ("to_stored", "worker done → transcript stored"),
        ("to_client", "stored → client has the final"),
    ):
        print(f"  {label:34} {stages[f'{name}_p50_ms']:6.1f} / {stages[f'{name}_p99_ms']:6.1f}"
              f" / {stages[f'{name}_slowest_ms']:6.1f}")  # fmt: skip
    lag = [stages[f"loop_lag_{key}_ms"] for key in ("p50", "p99", "max")]
    print(f"the broker's event loop woke late (its own metric, {stages['loop_lag_samples']:.0f} "
          f"samples of a 100 ms timer): p50 ≤ {lag[0]:g} ms, p99 ≤ {lag[1]:g} ms, "
          f"worst ≤ {lag[2]:g} ms")  # fmt: skip
    if "slowest_ended_after_s" in stages:
        first, last = stages["slowest_ended_after_s"]
        print(f"the slowest 1 % sent `end` {first:.2f}–{last:.2f} s after the first stream did "
              f"(ends spread over {args.ramp:g} s)")  # fmt: skip
    if summary["error_kinds"]:
        print(f"errors: {summary['error_kinds']}")
    dump(args.json, summary)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
