"""Soak: mixed good and bad clients against a real farm, with random worker kills.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 8] [--workers 2] [--kill-every 20]

Starts a broker and `--workers` null-engine workers on loopback (the null engine echoes
the audio seconds it received, so a final proves that no audio was lost or doubled),
then keeps `--clients` concurrent clients busy until time is up: most stream a tone and
check their final; the rest misbehave (garbage, wrong packet sizes, a drop mid-stream
followed by a resume, a drop with no resume). Every `--kill-every` seconds a random
worker gets SIGKILL and a new one is started. Prints jobs sent / finished / lost and the
broker's RSS over time; exits 1 if any job was lost or answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.farm import Broker, Worker, start_broker, start_worker
from tests.wsclient import packets, start_message, stream_pcm, tone


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def good_client(broker: Broker, tally: Counter[str]) -> None:
    seconds = round(random.uniform(0.5, 8.0), 1)
    tally["sent"] += 1
    reply = await stream_pcm(broker.ws, tone(seconds))
    if reply.last.get("type") == "final" and f"{seconds:.1f} s of audio" in reply.last["text"]:
        tally["finished"] += 1
    elif reply.last.get("code") == "overloaded":
        tally["sent"] -= 1
        tally["overloaded"] += 1
    else:
        tally["lost"] += 1
        print("LOST or wrong:", seconds, reply.messages[-2:], flush=True)


async def resuming_client(broker: Broker, tally: Counter[str]) -> None:
    """Drop mid-upload, then resume from the broker's frame and finish."""
    pcm = tone(4.0)
    sent = packets(pcm)
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        first = json.loads(await ws.recv())
        if first.get("type") != "accepted":
            return
        job_id = first["job_id"]
        for packet in sent[: random.randint(1, len(sent) - 1)]:
            await ws.send(packet)
    tally["sent"] += 1
    await asyncio.sleep(0.2)
    async with websockets.connect(broker.ws) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        accepted = json.loads(await ws.recv())
        if accepted.get("type") != "accepted":
            tally["lost"] += 1
            print("resume refused:", accepted, flush=True)
            return
        for packet in sent[accepted["resume_from_frame"] // 1000 :]:
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        final = {}
        async for raw in ws:
            final = json.loads(raw)
    ok = final.get("type") == "final" and "4.0 s of audio" in final.get("text", "")
    tally["finished" if ok else "lost"] += 1
    if not ok:
        print("LOST after a resume:", str(final)[:300], flush=True)


async def bad_client(broker: Broker, tally: Counter[str]) -> None:
    frames: list[str | bytes] = random.choice(
        [["not json"], [b"\x00" * 3], [start_message(), b"\x00" * 1999], [start_message()]]
    )
    tally["bad"] += 1
    async with websockets.connect(broker.ws) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            if frames == [start_message()]:
                return  # drops without end: becomes interrupted, then failed
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass  # the broker hung up on the garbage, as it should


async def client_loop(broker: Broker, deadline: float, tally: Counter[str]) -> None:
    kinds = [good_client] * 6 + [resuming_client, bad_client]
    while time.monotonic() < deadline:
        try:
            await random.choice(kinds)(broker, tally)
        except (OSError, websockets.ConnectionClosed) as exc:
            tally["client_errors"] += 1
            print("client error:", exc, flush=True)


async def killer(tmp: Path, broker: Broker, workers: list[Worker], every: float,
                 deadline: float, tally: Counter[str]) -> None:  # fmt: skip
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        victim = workers.pop(random.randrange(len(workers)))
        victim.process.stop(signal.SIGKILL)
        workers.append(start_worker(tmp, broker.zmq, engine="null", slots=4))
        tally["kills"] += 1


async def soak(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="whisperfarm-soak-"))
    broker = start_broker(tmp, "--max-active", str(args.clients * 2), "--idle-timeout", "10")
    workers = [start_worker(tmp, broker.zmq, engine="null") for _ in range(args.workers)]
    broker.wait_workers(args.workers)
    deadline = time.monotonic() + args.minutes * 60
    tally: Counter[str] = Counter()
    tasks = [asyncio.create_task(client_loop(broker, deadline, tally)) for _ in range(args.clients)]
    tasks.append(
        asyncio.create_task(killer(tmp, broker, workers, args.kill_every, deadline, tally))
    )
    print("minute  sent  finished  lost  bad  kills  broker_rss_mb", flush=True)
    start = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(min(60.0, max(1.0, deadline - time.monotonic())))
        print(f"{(time.monotonic() - start) / 60:6.1f} {tally['sent']:5d} {tally['finished']:9d} "
              f"{tally['lost']:5d} {tally['bad']:4d} {tally['kills']:6d} "
              f"{rss_mb(broker.process.popen.pid):13.1f}", flush=True)  # fmt: skip
    await asyncio.gather(*tasks, return_exceptions=True)
    for worker in workers:
        worker.process.stop()
    broker.process.stop()
    in_flight = tally["sent"] - tally["finished"] - tally["lost"]
    print(f"\njobs sent {tally['sent']}, finished {tally['finished']}, lost {tally['lost']}, "
          f"in flight at the end {in_flight}, bad clients {tally['bad']}, worker kills "
          f"{tally['kills']}, overloaded (retried) {tally['overloaded']}")  # fmt: skip
    return 1 if tally["lost"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=20.0)
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
