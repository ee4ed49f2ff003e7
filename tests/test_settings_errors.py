"""A bad flag or setting ends every component with one line that names it, and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.farm import ROOT

INVALID_INTEGER = "Input should be a valid integer, unable to parse string as an integer"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (["broker", "--max-active", "abc"], f"whisperfarm-broker: --max-active: {INVALID_INTEGER}"),
        (["workers", "--slots", "abc"], f"whisperfarm-worker: --slots: {INVALID_INTEGER}"),
        (["gui", "--port", "abc"], f"whisperfarm-gui: --port: {INVALID_INTEGER}"),
        (
            ["source", "--retries", "abc", "a.wav"],
            f"whisperfarm-source: --retries: {INVALID_INTEGER}",
        ),
    ],
    ids=["broker", "worker", "gui", "source"],
)
def test_a_bad_flag_is_one_line_and_exit_2(command: list[str], line: str) -> None:
    result = run(*command)
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")


def test_every_bad_setting_gets_its_own_line() -> None:
    result = run("broker", "--max-active", "0", "--port", "99999")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "whisperfarm-broker: --port: Input should be less than or equal to 65535",
        "whisperfarm-broker: --max-active: Input should be greater than or equal to 1",
    ]


@pytest.mark.parametrize("rate", ["7999", "192001", "-1"])
def test_a_live_sample_rate_the_broker_would_refuse_is_refused_at_start(rate: str) -> None:
    result = run("gui", "--live-sample-rate", rate)
    assert (result.returncode, result.stderr) == (
        2,
        "whisperfarm-gui: --live-sample-rate: Value error, must be 0 or 8000–192000\n",
    )


def test_a_bad_environment_variable_reads_the_same() -> None:
    result = run("workers", env={"WHISPERFARM_WORKER_SLOTS": "many"})
    assert (result.returncode, result.stderr) == (
        2,
        f"whisperfarm-worker: --slots: {INVALID_INTEGER}\n",
    )


def test_whisperfarm_up_reports_a_bad_flag_without_a_traceback() -> None:
    """`up` is an argparse launcher: its own flags get argparse's error line, exit 2."""
    result = run("whisperfarm", "up", "--max-active", "abc")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "whisperfarm up: error: argument --max-active: invalid int value: 'abc'"
    )


def test_whisperfarm_up_passes_on_the_broker_line(tmp_path: Path) -> None:
    """A value argparse accepts but the broker refuses: the broker's one line, then `up`'s."""
    result = run("whisperfarm", "up", "--max-active", "0", "--no-gui", "--data-dir", str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "whisperfarm-broker: --max-active: Input should be greater than or equal to 1",
        "whisperfarm: the broker exited (2) before listening",
    ]
