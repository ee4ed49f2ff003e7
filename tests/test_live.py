"""Live mode end to end: a real broker, a real worker, tiny.en, speech sent at real time.

What a live client sees: partials before the segments that commit them, segment ids that
only grow, a final that is exactly the committed segments, nothing for silence, a dropped
connection resumed without committed text changing — and the bad inputs refused, with
the farm serving the next stream as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.exposition import metric_sum
from tests.farm import Broker, Worker, tiny_farm
from tests.speech import FIXTURE_DIR, fixture_clips, word_error_rate
from tests.worker_support import read_wav
from tests.wsclient import LiveReply, packets, read_all, send_raw, start_message, stream_live
from tests.wsclient import stream_pcm as stream_file

pytestmark = [pytest.mark.model, pytest.mark.slow]

JFK = FIXTURE_DIR / "jfk.wav"
AUSTEN = FIXTURE_DIR / "sense_and_sensibility_01_austen_64kb-0870.wav"
REFERENCE = {path.name: text for path, text in fixture_clips()}


@pytest.fixture(scope="module")
def live_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Worker]]:
    yield from tiny_farm(tmp_path_factory.mktemp("live"))


def pcm_of(path: Path) -> bytes:
    pcm, audio = read_wav(path)
    assert (audio.sample_rate, audio.channels) == (16_000, 1)
    return pcm


def committed(reply: LiveReply) -> list[dict[str, Any]]:
    return reply.of("segment")


def check_final_is_the_commits(reply: LiveReply) -> dict[str, Any]:
    """The final's segments are the committed ones, ids strictly growing from 0."""
    final = reply.last
    assert final["type"] == "final", reply.messages[-3:]
    segments = committed(reply)
    keys = ("id", "start", "end", "text")
    assert [{k: s[k] for k in keys} for s in final["segments"]] == [
        {k: s[k] for k in keys} for s in segments
    ]
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert final["text"] == join_segments_of(segments)
    return final


def join_segments_of(segments: list[dict[str, Any]]) -> str:
    return " ".join(s["text"].strip() for s in segments if s["text"].strip())


def test_words_show_as_partials_then_commit(live_farm: tuple[Broker, Worker]) -> None:
    broker, worker = live_farm
    reply = asyncio.run(stream_live(broker.ws, pcm_of(JFK)))
    assert reply.close_code == 1000
    final = check_final_is_the_commits(reply)
    assert word_error_rate(REFERENCE[JFK.name], final["text"]) < 0.25, final["text"]
    kinds = [m["type"] for m in reply.messages if m["type"] in ("partial", "segment")]
    assert kinds.index("partial") < kinds.index("segment")
    shown = [m for m in reply.of("partial") if m["text"]]
    segments = committed(reply)
    assert len(shown) >= 3, "the text should grow step by step"
    # A partial is the tail after the last commit: it never starts before that commit ends.
    last_end = 0.0
    for message in reply.messages:
        if message["type"] == "segment":
            last_end = message["end"]
        elif message["type"] == "partial" and message["text"]:
            assert message["start"] >= last_end - 0.3, (message, last_end)
    job = broker.job(final["job_id"])
    assert job["status"] == "done" and job["live"] is True
    stored = broker.get(f"/v1/jobs/{final['job_id']}/transcript", format="json").json()
    assert join_segments_of(stored["segments"]) == final["text"]
    assert broker.metric("whisperfarm_broker_live_partial_lag_seconds_count") >= len(shown)
    assert broker.metric("whisperfarm_broker_live_commit_lag_seconds_count") >= len(segments)
    assert broker.metric("whisperfarm_broker_live_streams") == 0
    assert worker.metric("whisperfarm_worker_live_step_seconds_count") >= len(shown)


def test_silence_gives_no_words_and_costs_no_decode(live_farm: tuple[Broker, Worker]) -> None:
    broker, worker = live_farm
    decodes = worker.metric("whisperfarm_worker_inference_seconds_count")
    reply = asyncio.run(stream_live(broker.ws, bytes(16_000 * 2 * 20), speed=4.0))
    final = check_final_is_the_commits(reply)
    assert final["text"] == "" and final["segments"] == []
    assert not [m for m in reply.of("partial") if m["text"]]
    assert worker.metric("whisperfarm_worker_inference_seconds_count") == decodes


def test_clear_drops_what_was_not_committed(live_farm: tuple[Broker, Worker]) -> None:
    """JFK's first words, cleared before any could be committed, then Austen's sentence:
    only Austen's words are transcribed."""
    broker, _ = live_farm
    jfk = pcm_of(JFK)[: 16_000 * 2 * 2]  # "And so my fellow Americans", no pause yet
    first = len(packets(jfk)) - 1
    reply = asyncio.run(
        stream_live(broker.ws, jfk + pcm_of(AUSTEN), speed=8.0, controls={first: "clear"})
    )
    final = check_final_is_the_commits(reply)
    assert "americans" not in final["text"].lower()
    assert word_error_rate(REFERENCE[AUSTEN.name], final["text"]) < 0.3, final["text"]


def test_file_streams_get_no_partials(live_farm: tuple[Broker, Worker]) -> None:
    broker, _ = live_farm
    reply = asyncio.run(stream_file(broker.ws, pcm_of(JFK)))
    assert reply.last["type"] == "final"
    assert not reply.of("partial")


async def _live_then_drop(url: str, pcm: bytes, segments_first: int) -> tuple[str, LiveReply]:
    """Send at real time until `segments_first` segments are committed, then drop."""
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(start_message(live=True))
        accepted = json.loads(await ws.recv())
        reply = LiveReply([accepted], arrived=[0.0])
        for packet in packets(pcm):
            await ws.send(packet)
            await asyncio.sleep(1000 / 16_000)
            while True:
                try:
                    reply.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.001)))
                except TimeoutError:
                    break
            if len(reply.of("segment")) >= segments_first:
                break
    return accepted["job_id"], reply


async def _resume_live(url: str, job_id: str, pcm: bytes) -> LiveReply:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "resume", "job_id": job_id}))
        accepted = json.loads(await ws.recv())
        assert accepted["type"] == "accepted", accepted
        start = accepted["resume_from_frame"] * 2
        for packet in packets(pcm[start:]):
            await ws.send(packet)
        await ws.send(json.dumps({"type": "end"}))
        reply = LiveReply([accepted])
        await read_all(ws, reply)
        return reply


def test_a_dropped_live_stream_resumes_without_changing_its_commits(
    live_farm: tuple[Broker, Worker],
) -> None:
    broker, _ = live_farm
    pcm = pcm_of(JFK)
    job_id, before = asyncio.run(_live_then_drop(broker.ws, pcm, segments_first=2))
    sent = committed(before)
    assert len(sent) >= 2
    broker.wait_job(job_id, {"interrupted"})
    after = asyncio.run(_resume_live(broker.ws, job_id, pcm))
    final = after.last
    assert final["type"] == "final", after.messages[-3:]
    keys = ("id", "start", "end", "text")
    assert [{k: s[k] for k in keys} for s in final["segments"][: len(sent)]] == [
        {k: s[k] for k in keys} for s in sent
    ]
    ids = [s["id"] for s in final["segments"]]
    assert ids == list(range(len(ids)))
    resent = [s["id"] for s in committed(after)]
    assert resent == ids[ids.index(resent[0]) :] and resent[0] >= len(sent)
    assert word_error_rate(REFERENCE[JFK.name], final["text"]) < 0.3, final["text"]
    assert broker.job(job_id)["attempt"] >= 2


@pytest.mark.parametrize(
    "field, value",
    [("live", "yes"), ("live", 1), ("vad", 1), ("word_timestamps", "true"), ("vad_pause_ms", 5)],
)
def test_bad_live_options_are_refused(
    live_farm: tuple[Broker, Worker], field: str, value: object
) -> None:
    broker, _ = live_farm
    reply = asyncio.run(send_raw(broker.ws, start_message(**{field: value})))
    assert reply.last["type"] == "error" and reply.last["code"] == "bad_message"
    assert field in reply.last["detail"]
    assert reply.close_code == 1003


@pytest.mark.parametrize("kind", ["commit", "clear"])
def test_commit_and_clear_are_refused_on_a_file_stream(
    live_farm: tuple[Broker, Worker], kind: str
) -> None:
    broker, _ = live_farm
    frames: list[str | bytes] = [
        start_message(),
        *packets(pcm_of(JFK))[:5],
        json.dumps({"type": kind}),
    ]
    reply = asyncio.run(send_raw(broker.ws, *frames))
    assert reply.last["type"] == "error" and reply.last["code"] == "bad_message"
    assert "live" in reply.last["detail"]
    assert reply.close_code == 1003
    # The farm goes on serving live streams.
    again = asyncio.run(stream_live(broker.ws, pcm_of(AUSTEN), speed=4.0))
    assert word_error_rate(REFERENCE[AUSTEN.name], check_final_is_the_commits(again)["text"]) < 0.3
    assert metric_sum(broker.get("/metrics").text, "whisperfarm_broker_streams_active") == 0
