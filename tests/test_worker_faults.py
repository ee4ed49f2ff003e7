"""A worker killed mid-stream: its streams move to another worker from the spool."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import zmq

from tests.farm import start_broker, start_worker, wait_for
from tests.wsclient import stream_pcm, tone
from whisperfarm import wire
from whisperfarm.wire import Command, Message


async def test_killed_worker_streams_are_redispatched_and_finish(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--heartbeat-interval", "0.5")
    slow = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "5", engine="null",
                        slots=4)  # fmt: skip
    try:
        broker.wait_workers(1)
        streams = [asyncio.create_task(stream_pcm(broker.ws, tone(2.0 + i))) for i in range(3)]
        busy = lambda: broker.farm()["workers"][0]["busy"] == 3  # noqa: E731
        await asyncio.to_thread(wait_for, busy, 20, "3 busy slots")
        await asyncio.sleep(0.5)  # let some audio reach the doomed worker
        slow.process.stop(signal.SIGKILL)
        rescue = start_worker(tmp_path, broker.zmq, engine="null")
        replies = await asyncio.wait_for(asyncio.gather(*streams), 60)
        for i, reply in enumerate(replies):
            assert reply.last["type"] == "final", reply.messages
            assert f"{2.0 + i:.1f} s of audio" in reply.last["text"]
            job = broker.job(reply.last["job_id"])
            assert job["status"] == "done" and job["attempt"] == 2
        assert broker.metric("whisperfarm_broker_redispatches_total") == 3
        assert broker.metric("whisperfarm_broker_workers_lost_total") == 1
        rescue.process.stop()
    finally:
        slow.process.stop()
        broker.process.stop()


async def test_hung_worker_is_replaced_and_its_late_results_are_dropped(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--heartbeat-interval", "0.3")
    hung = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "1", engine="null")
    try:
        broker.wait_workers(1)
        stream = asyncio.create_task(stream_pcm(broker.ws, tone(2.0)))
        busy = lambda: broker.farm()["workers"][0]["busy"] == 1  # noqa: E731
        await asyncio.to_thread(wait_for, busy, 20, "a busy worker")
        hung.process.popen.send_signal(signal.SIGSTOP)
        gone = lambda: broker.farm()["workers"] == []  # noqa: E731
        await asyncio.to_thread(wait_for, gone, 10, "the hung worker to be declared dead")
        rescue = start_worker(tmp_path, broker.zmq, engine="null")
        reply = await asyncio.wait_for(stream, 30)
        hung.process.popen.send_signal(signal.SIGCONT)  # wakes up with a stale result
        assert reply.last["type"] == "final" and "2.0 s of audio" in reply.last["text"]
        assert [m["type"] for m in reply.messages].count("final") == 1
        two = lambda: len(broker.farm()["workers"]) == 2  # noqa: E731
        await asyncio.to_thread(wait_for, two, 20, "the woken worker to re-register")
        assert broker.job(reply.last["job_id"])["attempt"] == 2
        rescue.process.stop()
    finally:
        hung.process.popen.send_signal(signal.SIGCONT)
        hung.process.stop()
        broker.process.stop()


async def test_streams_wait_for_a_worker_then_fail_after_the_timeout(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--no-worker-timeout", "3")
    try:
        waiting = asyncio.create_task(stream_pcm(broker.ws, tone(1.0)))
        doomed = await stream_pcm(broker.ws, tone(0.5))
        assert doomed.last["code"] == "no_worker" and "within 3 s" in doomed.last["detail"]
        assert (await waiting).last["code"] == "no_worker"
        queued = asyncio.create_task(stream_pcm(broker.ws, tone(1.0)))
        await asyncio.sleep(1)
        worker = start_worker(tmp_path, broker.zmq, engine="null")
        reply = await asyncio.wait_for(queued, 30)
        assert reply.last["type"] == "final" and "1.0 s of audio" in reply.last["text"]
        worker.process.stop()
    finally:
        broker.process.stop()


async def test_a_draining_worker_finishes_its_stream_and_takes_no_new_one(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    leaving = start_worker(tmp_path, broker.zmq, "--null-delay-per-second", "2",
                           "--drain-timeout", "30", engine="null")  # fmt: skip
    try:
        broker.wait_workers(1)
        held = asyncio.create_task(stream_pcm(broker.ws, tone(2.0)))
        busy = lambda: broker.farm()["workers"][0]["busy"] == 1  # noqa: E731
        await asyncio.to_thread(wait_for, busy, 20, "a busy worker")
        leaving.process.popen.send_signal(signal.SIGTERM)
        draining = lambda: broker.farm()["workers"][0]["draining"]  # noqa: E731
        await asyncio.to_thread(wait_for, draining, 10, "the broker to see the drain")
        staying = start_worker(tmp_path, broker.zmq, engine="null")
        fresh = await stream_pcm(broker.ws, tone(1.0))
        assert fresh.last["type"] == "final"
        assert (
            broker.job(fresh.last["job_id"])["worker"]
            != broker.job((await held).last["job_id"])["worker"]
        )
        finished = (await held).last
        assert finished["type"] == "final" and "2.0 s of audio" in finished["text"]
        assert broker.job(finished["job_id"])["attempt"] == 1, "finished where it started"
        assert leaving.process.popen.wait(30) == 0
        staying.process.stop()
    finally:
        leaving.process.stop()
        broker.process.stop()


def _refuse_the_first_assign(endpoint: str, refused: list[str]) -> None:
    """A worker that says READY with one slot, then answers its first ASSIGN as full
    (what a worker whose count of slots disagrees with the broker's does) and stays."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    ready = {"engine": "null", "model": "none", "device": "cpu", "slots": 1,
             "metrics_port": 0, "name": "refuser", "pid": 0}  # fmt: skip
    sock.send_multipart([b"", *wire.encode(Message(Command.READY, body=ready))])
    try:
        while sock.poll(20_000):
            message = wire.decode(sock.recv_multipart()[1:])
            if message.command is Command.ASSIGN and not refused:
                refused.append(message.job_id)
                body = {"attempt": message.attempt, "error": "full", "refused": True}
                sock.send_multipart(
                    [b"", *wire.encode(Message(Command.FAILED, message.job_id, body))]
                )
                return
    finally:
        sock.close()
        ctx.term()


async def test_a_refused_stream_is_requeued_and_finishes_elsewhere(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    refused: list[str] = []
    refuser = threading.Thread(target=_refuse_the_first_assign, args=(broker.zmq, refused))
    refuser.start()
    worker = None
    try:
        broker.wait_workers(1)
        stream = asyncio.create_task(stream_pcm(broker.ws, tone(2.0)))
        await asyncio.to_thread(refuser.join, 30)
        assert refused, "the refuser got the stream first"
        worker = start_worker(tmp_path, broker.zmq, engine="null")
        reply = await asyncio.wait_for(stream, 60)
        assert reply.last["type"] == "final" and "2.0 s of audio" in reply.last["text"]
        job = broker.job(refused[0])
        assert job["status"] == "done" and job["attempt"] == 2
        assert broker.metric("whisperfarm_broker_redispatches_total") == 1
    finally:
        if worker is not None:
            worker.process.stop()
        broker.process.stop()
