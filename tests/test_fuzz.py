"""Coverage-guided fuzzing (atheris) of the WebSocket parser and the ZMQ frame decoder.

Both harnesses run side by side for FUZZ_SECONDS (60 under CI, 10 otherwise); a crash
fails the test and leaves its input under the test's tmp dir, to become a regression test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.farm import ROOT

HARNESSES = ["fuzz_ws_messages.py", "fuzz_zmq_frames.py"]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "60" if os.environ.get("CI") == "true" else "10"))

pytestmark = pytest.mark.slow


def test_fuzz_harnesses_find_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    runs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests/fuzz" / name),
                f"-max_total_time={SECONDS}",
                f"-artifact_prefix={tmp_path}/{name}-",
                "-rss_limit_mb=2048",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in HARNESSES
    }
    for name, proc in runs.items():
        output, _ = proc.communicate(timeout=SECONDS + 120)
        assert proc.returncode == 0, f"{name} crashed:\n{output[-3000:]}"
        assert "Done" in output, output[-2000:]
