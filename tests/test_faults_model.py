"""Faults with the real model: a worker SIGKILLed mid-decode loses nothing.

The null engine would make "correct transcript" trivially true, so these streams are
real speech through tiny.en: every client still gets its complete transcript, with no
segment missing or sent twice, from the worker that took over.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import wave
from pathlib import Path

import pytest

from tests.farm import ROOT, start_broker, start_worker, wait_for
from tests.speech import fixture_clips, word_error_rate

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _concatenate(clips: list[tuple[Path, str]], out: Path) -> tuple[Path, str]:
    """One ~30 s recording from the 16 kHz mono clips, so decoding takes a few seconds."""
    with wave.open(str(out), "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(16_000)
        for path, _ in clips:
            with wave.open(str(path)) as source:
                sink.writeframes(source.readframes(source.getnframes()))
    return out, " ".join(text for _, text in clips)


async def test_worker_killed_mid_decode_every_client_gets_its_whole_transcript(
    tmp_path: Path,
) -> None:
    clips = fixture_clips()
    files = [_concatenate(clips[i:] + clips[:i], tmp_path / f"talk{i}.wav") for i in range(3)]
    broker = start_broker(tmp_path, "--heartbeat-interval", "0.5")
    doomed = start_worker(tmp_path, broker.zmq, engine="faster-whisper", model="tiny.en")
    rescue = None
    try:
        broker.wait_workers(1, timeout=120)
        out = tmp_path / "out"
        source = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "source", "--url", broker.ws, "--out", str(out), "--quiet",
            "--retries", "5", *(str(path) for path, _ in files),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

        def transcribing() -> bool:
            jobs = broker.jobs()
            return len(jobs) == 3 and all(j["status"] == "transcribing" for j in jobs)

        await asyncio.to_thread(wait_for, transcribing, 60, "3 streams decoding")
        doomed.process.stop(signal.SIGKILL)
        rescue = start_worker(tmp_path, broker.zmq, engine="faster-whisper", model="tiny.en")
        _, stderr = await asyncio.wait_for(source.communicate(), 300)
        assert source.returncode == 0, stderr.decode()
        for path, reference in files:
            saved = json.loads((out / f"{path.stem}.json").read_text())
            assert word_error_rate(reference, saved["text"]) <= 0.15, saved["text"]
            assert [s["id"] for s in saved["segments"]] == list(range(len(saved["segments"])))
            job = broker.job(saved["job_id"])
            assert job["status"] == "done" and job["attempt"] == 2, "the kill hit this stream"
        assert broker.metric("whisperfarm_broker_redispatches_total") == 3
    finally:
        for worker in (doomed, rescue):
            if worker is not None:
                worker.process.stop()
        broker.process.stop()
