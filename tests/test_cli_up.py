"""`whisperfarm up`: starts broker + workers, reports ready, stops them all on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.farm import spawn, wait_for
from tests.wsclient import stream_pcm, tone


async def test_up_runs_a_farm_and_stops_it_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    up = spawn(
        ["-m", "whisperfarm", "up", "--port", "0", "--zmq", "tcp://127.0.0.1:*",
         "--data-dir", str(tmp_path / "data"), "--engine", "null", "--workers", "2",
         "--gui-port", "0"],
        log,
    )  # fmt: skip
    try:
        match = wait_for(
            lambda: re.search(r"broker\s+(http://\S+)", up.output())
            if "whisperfarm is up" in up.output() else None,
            120, "whisperfarm up to be ready", log,
        )  # fmt: skip
        http = match.group(1)
        farm = httpx.get(f"{http}/v1/farm").json()
        assert sorted(w["name"] for w in farm["workers"]) == ["worker-1", "worker-2"]
        reply = await stream_pcm(http.replace("http", "ws", 1) + "/v1/stream", tone(1.0))
        assert reply.last["type"] == "final"
        children = subprocess.run(
            ["pgrep", "-P", str(up.popen.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 4  # broker, two workers, GUI
        gui = re.search(r"gui\s+(http://\S+)", up.output())
        assert gui, up.output()
        assert _status(f"{gui.group(1)}/healthz") == 200, "up waits for the GUI too"
    finally:
        code = up.stop(signal.SIGTERM, timeout=30)
    assert code == 0, up.output()[-3000:]
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0
