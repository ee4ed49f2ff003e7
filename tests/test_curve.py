"""ZeroMQ CURVE: only workers holding an allowed key can join; streams work over it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.farm import ROOT, start_broker, start_worker, wait_for
from tests.wsclient import stream_pcm, tone


async def test_curve_admits_only_allowed_workers(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = subprocess.run([sys.executable, "-m", "whisperfarm", "curve-keys", str(keys)],
                          cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "broker.key_secret" in made.stdout
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "worker.key", allowed)
    broker = start_broker(tmp_path, "--curve-secret-key", str(keys / "broker.key_secret"),
                          "--curve-clients-dir", str(allowed))  # fmt: skip
    server_key = str(keys / "broker.key")
    plain = start_worker(tmp_path, broker.zmq, engine="null")
    stranger = start_worker(tmp_path, broker.zmq, "--curve-server-key", server_key, engine="null")
    secret = str(keys / "worker.key_secret")
    member = start_worker(
        tmp_path, broker.zmq, "--curve-server-key", server_key, "--curve-secret-key", secret,
        engine="null",
    )  # fmt: skip
    try:
        broker.wait_workers(1)
        reply = await stream_pcm(broker.ws, tone(1.0))
        assert reply.last["type"] == "final" and "1.0 s of audio" in reply.last["text"]
        wait_for(lambda: "connecting" in stranger.process.output(), 20, "the stranger to try")
        assert len(broker.farm()["workers"]) == 1, "plain and unknown-key workers stay out"
    finally:
        for worker in (plain, stranger, member):
            worker.process.stop()
        broker.process.stop()


def test_a_bad_key_file_stops_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "broker.key"
    bogus.write_text("not a certificate")
    result = subprocess.run(
        [sys.executable, "-m", "workers", "--engine", "null", "--curve-server-key", str(bogus)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "CURVE" in result.stderr + result.stdout
