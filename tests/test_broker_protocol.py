"""Protocol v1 against a real broker and a real `null`-engine worker on loopback.

Each bad input gets its documented error and close code, and a stream running beside it
still finishes: the broker keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.frames import Opcode

from tests.farm import Broker, Worker, sse_events, wait_for
from tests.wsclient import (
    Reply,
    client_frame,
    packets,
    read_all,
    send_raw,
    start_message,
    stream_pcm,
    tone,
)

pytestmark = pytest.mark.usefixtures("null_worker")


async def test_happy_path_stream_gets_acks_segments_and_one_final(broker: Broker) -> None:
    pcm = tone(2.5)
    reply = await stream_pcm(broker.ws, pcm, name="tone.wav")
    kinds = [m["type"] for m in reply.messages]
    assert kinds[0] == "accepted" and kinds.count("final") == 1 and kinds[-1] == "final"
    assert reply.close_code == 1000
    final = reply.last
    assert final["duration"] == pytest.approx(2.5)
    assert "[null engine]" in final["text"]
    assert reply.of("ack")[-1]["frames"] == 40_000
    job = broker.job(final["job_id"])
    assert job["status"] == "done" and job["frames"] == 40_000 and job["worker"]
    txt = broker.get(f"/v1/jobs/{job['id']}/transcript", format="txt")
    assert txt.status_code == 200 and "[null engine]" in txt.text
    for fmt in ("json", "srt", "vtt"):
        assert broker.get(f"/v1/jobs/{job['id']}/transcript", format=fmt).status_code == 200
    assert broker.get(f"/v1/jobs/{job['id']}/transcript", format="doc").status_code == 400
    assert broker.get("/v1/jobs/nope").status_code == 404


async def test_stereo_44k_packets_are_4000_bytes(broker: Broker) -> None:
    pcm = tone(1.0, rate=44_100, channels=2)
    sizes = {len(p) for p in packets(pcm, channels=2)[:-1]}
    assert sizes == {4000}
    reply = await stream_pcm(broker.ws, pcm, channels=2, sample_rate=44_100)
    assert reply.last["type"] == "final"
    assert reply.last["duration"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("frames", "code", "close"),
    [
        (["not json"], "bad_message", 1003),
        ([json.dumps({"type": "hello"})], "bad_message", 1003),
        ([json.dumps([1, 2])], "bad_message", 1003),
        ([json.dumps({"type": "end"})], "bad_message", 1003),
        ([b"\x00\x01" * 1000], "bad_packet", 1003),
        ([start_message(sample_rate=4000)], "unsupported_format", 1003),
        ([start_message(channels=9)], "unsupported_format", 1003),
        ([start_message(format="mulaw")], "unsupported_format", 1003),
        ([start_message(), b"\x00" * 1999], "bad_packet", 1003),
        ([start_message(), b"\x00" * 2002], "bad_packet", 1003),
        ([start_message(), b"\x00" * 1000, b"\x00" * 2000], "bad_packet", 1003),
        ([start_message(), b"\x00" * (2 * 1024 * 1024)], "too_large", 1009),
        ([start_message(), json.dumps({"type": "start"})], "bad_message", 1003),
        ([json.dumps({"type": "resume", "job_id": "0" * 32})], "not_found", 1003),
        (["{" * 70_000], "bad_message", 1003),
        ([start_message(word_timestamps="yes")], "bad_message", 1003),
        ([start_message(temperature=1.5)], "bad_message", 1003),
    ],
    ids=[
        "non-json", "unknown-type", "not-object", "end-first", "binary-before-start",
        "rate-too-low", "too-many-channels", "unknown-format", "half-frame", "oversized-packet",
        "short-packet-not-last", "huge-packet", "start-twice", "resume-unknown", "huge-json",
        "word-timestamps-not-boolean", "temperature-above-1",
    ],
)  # fmt: skip
async def test_bad_input_gets_its_error_and_a_parallel_stream_finishes(
    broker: Broker, frames: list[str | bytes], code: str, close: int
) -> None:
    good = asyncio.create_task(stream_pcm(broker.ws, tone(3.0)))
    reply = await send_raw(broker.ws, *frames)
    error = reply.of("error")
    assert error and error[0]["code"] == code, reply.messages
    assert error[0]["detail"]
    assert reply.close_code == close
    assert (await good).last["type"] == "final"
    assert broker.get("/healthz").status_code == 200


async def test_bad_packet_fails_the_job_with_a_reason(broker: Broker) -> None:
    reply = await send_raw(broker.ws, start_message(), b"\x00" * 3)
    job = broker.job(reply.messages[0]["job_id"])
    assert job["status"] == "failed" and "frame" in job["error"]


async def test_a_transcript_that_cannot_be_stored_fails_the_job_and_nothing_else(
    broker: Broker,
) -> None:
    """The transcript's file cannot be made (here: a directory in its place). The final
    goes out before the file is written, so the client has its transcript; the broker
    has none, so the job is failed with the reason and counted, and a stream beside it
    finishes with its transcript stored."""
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        (broker.data_dir / "jobs" / job_id / "transcript.json").mkdir(parents=True)
        good = asyncio.create_task(stream_pcm(broker.ws, tone(2.0)))
        for packet in packets(tone(1.0)):
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        reply = await read_all(ws, Reply())
    assert reply.last["type"] == "final" and "1.0 s of audio" in reply.last["text"]
    failed = lambda: broker.job(job_id)["status"] == "failed"  # noqa: E731
    await asyncio.to_thread(wait_for, failed, 10, "the job to be failed")
    assert "could not store the transcript" in broker.job(job_id)["error"]
    response = broker.get(f"/v1/jobs/{job_id}/transcript")
    assert response.status_code == 409, "no copy is served that the broker does not have"
    assert broker.metric("whisperfarm_broker_transcripts_not_stored_total") == 1
    other = (await good).last
    assert other["type"] == "final"
    assert broker.get(f"/v1/jobs/{other['job_id']}/transcript").status_code == 200


async def test_packets_after_end_in_the_same_read_are_not_the_uploads(broker: Broker) -> None:
    """The broker acts on `end` as the WebSocket frames are parsed: packets that came in
    the same read after it are dropped, not appended to the ended upload."""
    async with websockets.connect(broker.ws, compression=None) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        before, after = packets(tone(1.0)), packets(tone(0.5))
        ws.transport.write(
            b"".join(client_frame(Opcode.BINARY, p) for p in before)
            + client_frame(Opcode.TEXT, json.dumps({"type": "end"}).encode())
            + b"".join(client_frame(Opcode.BINARY, p) for p in after)
        )
        reply = await read_all(ws, Reply())
    assert reply.last["type"] == "final" and reply.last["duration"] == 1.0, reply.messages
    assert "1.0 s of audio" in reply.last["text"]
    assert broker.job(job_id)["frames"] == 16_000


async def test_empty_stream_still_gets_a_final(broker: Broker) -> None:
    reply = await stream_pcm(broker.ws, b"")
    assert reply.last["type"] == "final" and reply.last["duration"] == 0


async def test_disconnect_mid_stream_interrupts_then_fails_after_idle_timeout(
    broker: Broker,
) -> None:
    parallel = asyncio.create_task(stream_pcm(broker.ws, tone(4.0)))
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        for packet in packets(tone(1.0)):
            await ws.send(packet)
    job = broker.wait_job(job_id, {"interrupted"}, timeout=10)
    assert "disconnected" in job["error"]
    assert (await parallel).last["type"] == "final"
    job = broker.wait_job(job_id, {"failed"}, timeout=15)
    assert "not resumed within 3 s" in job["error"]


async def test_resume_continues_from_the_acknowledged_frame(broker: Broker) -> None:
    pcm = tone(3.0)
    sent = packets(pcm)
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        job_id = json.loads(await ws.recv())["job_id"]
        for packet in sent[:20]:
            await ws.send(packet)
        acks: list[int] = []
        while not acks:
            message = json.loads(await ws.recv())
            if message["type"] == "ack":
                acks.append(message["frames"])
    broker.wait_job(job_id, {"interrupted"}, timeout=10)
    async with websockets.connect(broker.ws) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        accepted = json.loads(await ws.recv())
        assert accepted == {"type": "accepted", "job_id": job_id, "resume_from_frame": 20_000}
        for packet in sent[20:]:
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        reply = await read_all(ws, Reply())
    assert reply.last["type"] == "final"
    assert reply.last["duration"] == pytest.approx(3.0)
    assert broker.job(job_id)["status"] == "done"


async def test_events_stream_reports_job_and_farm_changes(broker: Broker) -> None:
    seen: list[str] = []
    frames: list[int] = []
    active: list[int] = []

    def collect() -> None:
        for event, data in sse_events(broker.http + "/v1/events", timeout=20):
            if event == "farm":
                active.append(data["streams"]["active"])
            elif event == "job":
                seen.append(data["status"])
                frames.append(data["frames"])
                if data["status"] == "done":
                    return

    listener = asyncio.create_task(asyncio.to_thread(collect))
    await asyncio.to_thread(wait_for, lambda: active, 10, "the farm snapshot")
    sent = packets(tone(3.0))
    async with websockets.connect(broker.ws) as ws:
        await ws.send(start_message())
        for packet in sent[:20]:
            await ws.send(packet)
        while json.loads(await ws.recv())["type"] != "ack":
            pass  # the first ack: its progress event is out before the rest is sent
        for packet in sent[20:]:
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        await read_all(ws, Reply())
    await asyncio.wait_for(listener, 20)
    assert seen[0] == "queued" and "streaming" in seen and seen[-1] == "done"
    assert any(0 < f <= 20_000 for f in frames), "upload progress is published"
    assert active[0] == 0 and 1 in active


def test_farm_and_readiness_report_the_worker(broker: Broker, null_worker: Worker) -> None:
    farm = broker.farm()
    assert farm["streams"] == {"active": 0, "limit": 10}
    [worker] = farm["workers"]
    assert worker["engine"] == "null" and worker["slots"] == 4 and worker["busy"] == 0
    assert broker.get("/readyz").status_code == 200
    null_worker.process.stop()
    wait_for(lambda: broker.get("/readyz").status_code == 503, 10, "readyz to drop")
    assert broker.farm()["workers"] == []
