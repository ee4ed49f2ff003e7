"""Soak: mixed good and bad clients against a real farm, with random worker kills.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 8] [--workers 2] [--kill-every 20]
        [--kill-agent-every 0]

Starts a broker and `--workers` null-engine workers on loopback (the null engine echoes
the audio seconds it received, so a final proves that no audio was lost or doubled),
then keeps `--clients` concurrent clients busy until time is up: most stream a tone and
check their final; the rest misbehave (garbage, wrong packet sizes, a drop mid-stream
followed by a resume, a drop with no resume). Every `--kill-every` seconds a random
worker gets SIGKILL and a new one is started; with `--kill-agent-every`, the broker's
disk agent too (clients resume the uploads it interrupts). Prints jobs sent / finished /
lost and the broker's RSS over time; exits 1 if any job was lost or answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

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
    pcm = tone(seconds)
    reply = await stream_pcm(broker.ws, pcm)
    if reply.last.get("code") == "overloaded":
        tally["sent"] -= 1
        tally["overloaded"] += 1
        return
    job_id = reply.messages[0].get("job_id", "")  # none if refused at once: never resumed
    last = await resumed_while_interrupted(broker, job_id, packets(pcm), reply.last, tally)
    tally_final(tally, last, seconds)


def tally_final(tally: Counter[str], last: dict[str, Any], seconds: float) -> None:
    """A final with all the audio, a clear error for a job that the farm could not keep
    (an agent killed between `end` and a durable spool), or a loss."""
    if last.get("type") == "final" and f"{seconds:.1f} s of audio" in last["text"]:
        tally["finished"] += 1
    elif last.get("type") == "error" and "cannot store audio" in last.get("detail", ""):
        tally["refused"] += 1
    else:
        tally["lost"] += 1
        print("LOST or wrong:", seconds, str(last)[:300], flush=True)


async def resumed_while_interrupted(
    broker: Broker, job_id: str, sent: list[bytes], last: dict[str, Any], tally: Counter[str]
) -> dict[str, Any]:
    """While `last` says the broker's disk agent restarted (`interrupted`), resume the
    upload; the last message of the last attempt."""
    while last.get("code") == "interrupted":
        tally["interrupted"] += 1
        last = await resume_upload(broker, job_id, sent)
    return last


async def resume_upload(broker: Broker, job_id: str, sent: list[bytes]) -> dict[str, Any]:
    """Resume `job_id`, send what the broker lacks, `end`; the last message it sent."""
    async with websockets.connect(broker.ws) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        accepted: dict[str, Any] = json.loads(await ws.recv())
        if accepted.get("type") != "accepted":
            return accepted
        with contextlib.suppress(websockets.ConnectionClosed):  # cut again: read why
            for packet in sent[accepted["resume_from_frame"] // 1000 :]:
                await ws.send(packet)
            await ws.send(json.dumps({"type": "end"}))
        last = accepted
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                last = json.loads(raw)
        return last


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
    last = await resume_upload(broker, job_id, sent)
    last = await resumed_while_interrupted(broker, job_id, sent, last, tally)
    if last.get("type") == "error" and last.get("code") == "not_found":
        tally["lost"] += 1
        print("resume refused:", last, flush=True)
        return
    tally_final(tally, last, 4.0)


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


async def agent_killer(broker: Broker, every: float, deadline: float,
                       tally: Counter[str]) -> None:  # fmt: skip
    """SIGKILL the broker's disk agent (its one child process) every `every` seconds."""
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        for child in broker.disk_agent_pids():
            os.kill(child, signal.SIGKILL)
            tally["agent_kills"] += 1


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
    if args.kill_agent_every > 0:
        tasks.append(
            asyncio.create_task(agent_killer(broker, args.kill_agent_every, deadline, tally))
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
    in_flight = tally["sent"] - tally["finished"] - tally["lost"] - tally["refused"]
    print(f"\njobs sent {tally['sent']}, finished {tally['finished']}, lost {tally['lost']}, "
          f"in flight at the end {in_flight}, bad clients {tally['bad']}, worker kills "
          f"{tally['kills']}, overloaded (retried) {tally['overloaded']}")  # fmt: skip
    if args.kill_agent_every > 0:
        print(f"disk agent kills {tally['agent_kills']}: uploads interrupted and resumed "
              f"{tally['interrupted']}, jobs refused with 'cannot store audio' (killed between "
              f"end and a durable spool) {tally['refused']}")  # fmt: skip
    return 1 if tally["lost"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument(
        "--kill-agent-every", type=float, default=0.0,
        help="also SIGKILL the broker's disk agent every so many seconds (0: never)",
    )  # fmt: skip
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
