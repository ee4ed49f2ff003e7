"""`whisperfarm` umbrella CLI: `whisperfarm up` runs a whole farm on one machine.

It starts every component as a child process (never imports them), waits until the
broker reports ready, prints the URLs, and on Ctrl-C / SIGTERM stops the workers and
then the broker, each given a grace period before being killed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from whisperfarm import __version__

BROKER_LISTENING = re.compile(r"whisperfarm-broker listening http=(\S+) zmq=(\S+)")
GUI_LISTENING = re.compile(r"whisperfarm-gui listening http=(\S+)")
STOP_GRACE_S = 75.0
"""Above the workers' default drain timeout (60 s): they finish their streams first."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperfarm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"whisperfarm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run broker + workers locally until Ctrl-C")
    up.add_argument("--host", default="127.0.0.1", help="broker HTTP/WebSocket address")
    up.add_argument("--port", type=int, default=8000, help="broker HTTP/WebSocket port")
    up.add_argument("--zmq", default="tcp://127.0.0.1:5555", help="broker ZeroMQ endpoint")
    up.add_argument("--data-dir", default="data", help="job store, spools and transcripts")
    up.add_argument("--max-active", type=int, default=10, help="streams admitted at once")
    up.add_argument("--workers", type=int, default=1, help="worker processes to start")
    up.add_argument(
        "--engine", default="faster-whisper", help="faster-whisper | openai-whisper | null"
    )
    up.add_argument("--model", default="base", help="model name (tiny.en, base, …) or path")
    up.add_argument("--slots", type=int, default=4, help="streams per worker")
    up.add_argument("--device", default="auto", help="auto | cpu | cuda")
    up.add_argument("--gui-port", type=int, default=8080, help="web GUI port (0 = pick one)")
    up.add_argument("--no-gui", action="store_true", help="do not start the web GUI")
    up.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for ready")
    convert = commands.add_parser(
        "convert-model",
        help="convert a CTranslate2 Whisper model to an openai-whisper checkpoint (cached)",
    )
    convert.add_argument("model", help="tiny.en, base, a name in the cache dir, or a directory")
    convert.add_argument("--model-cache-dir", help="the worker's --model-cache-dir")
    convert.add_argument("--out", help="write here instead of <cache>/<name>.pt")
    convert.add_argument("--force", action="store_true", help="convert even if cached")
    keys = commands.add_parser(
        "curve-keys", help="write ZeroMQ CURVE certificates for broker and workers"
    )
    keys.add_argument("directory", help="where to write broker.key[_secret], worker.key[_secret]")
    return parser


def curve_keys(args: argparse.Namespace) -> int:
    from whisperfarm.curve import create_keys

    for path in create_keys(Path(args.directory)):
        print(path)
    return 0


def convert_model(args: argparse.Namespace) -> int:
    """Run the worker's converter as a process (the launcher never imports components)."""
    cmd = [sys.executable, "-m", "workers.convert", args.model]
    if args.model_cache_dir:
        cmd += ["--model-cache-dir", args.model_cache_dir]
    if args.out:
        cmd += ["--out", args.out]
    if args.force:
        cmd.append("--force")
    return subprocess.call(cmd)


class UpProcesses:
    """The child processes of one `whisperfarm up`."""

    def __init__(self) -> None:
        self.broker: subprocess.Popen[str] | None = None
        self.workers: list[subprocess.Popen[str]] = []
        self.gui: subprocess.Popen[str] | None = None

    def start_broker(self, args: argparse.Namespace) -> tuple[str, str]:
        cmd = [
            sys.executable, "-m", "broker", "--host", args.host, "--port", str(args.port),
            "--zmq", args.zmq, "--data-dir", args.data_dir, "--max-active", str(args.max_active),
        ]  # fmt: skip
        self.broker = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        match = _await_line(self.broker, BROKER_LISTENING, "the broker")
        return match.group(1), match.group(2)

    def start_gui(self, args: argparse.Namespace, http_url: str) -> str:
        cmd = [
            sys.executable, "-m", "gui", "--host", args.host, "--port", str(args.gui_port),
            "--broker", http_url, "--data-dir", str(Path(args.data_dir) / "gui"),
        ]  # fmt: skip
        self.gui = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        return _await_line(self.gui, GUI_LISTENING, "the GUI").group(1)

    def start_workers(self, args: argparse.Namespace, zmq_endpoint: str) -> None:
        for n in range(args.workers):
            cmd = [
                sys.executable, "-m", "workers", "--broker", zmq_endpoint,
                "--engine", args.engine, "--model", args.model, "--slots", str(args.slots),
                "--device", args.device, "--name", f"worker-{n + 1}",
            ]  # fmt: skip
            self.workers.append(subprocess.Popen(cmd, text=True))

    def alive(self) -> bool:
        procs = [self.broker, *self.workers, *([self.gui] if self.gui else [])]
        return all(p is not None and p.poll() is None for p in procs)

    def stop(self) -> None:
        """GUI first, then workers (they hand their streams back), then the broker."""
        gui = [self.gui] if self.gui else []
        for group in (gui, self.workers, [self.broker] if self.broker else []):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _await_line(proc: subprocess.Popen[str], pattern: re.Pattern[str], what: str) -> re.Match[str]:
    """Echo a child's output until its machine-readable "listening" line, then keep echoing."""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        match = pattern.search(line)
        if match:
            threading.Thread(target=_echo, args=(proc.stdout,), daemon=True).start()
            return match
    raise SystemExit(f"whisperfarm: {what} exited ({proc.wait()}) before listening")


def _echo(stream: object) -> None:
    for line in stream:  # type: ignore[attr-defined]
        print(line, end="", flush=True)


def wait_ready(url: str, farm: UpProcesses, timeout: float) -> bool:
    """Poll a probe URL (a child process, so there is no event to wait on) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and farm.alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def up(args: argparse.Namespace) -> int:
    farm = UpProcesses()
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        http_url, zmq_endpoint = farm.start_broker(args)
        farm.start_workers(args, zmq_endpoint)
        if not wait_ready(f"{http_url}/readyz", farm, args.ready_timeout):
            print("whisperfarm: the farm did not become ready", file=sys.stderr)
            return 1
        gui_url = "" if args.no_gui else farm.start_gui(args, http_url)
        if gui_url and not wait_ready(f"{gui_url}/healthz", farm, args.ready_timeout):
            print("whisperfarm: the GUI did not become ready", file=sys.stderr)
            return 1
        ws_url = http_url.replace("http://", "ws://", 1) + "/v1/stream"
        print(
            f"\nwhisperfarm is up: {args.workers} worker(s), engine {args.engine}, "
            f"model {args.model}\n"
            + (f"  gui     {gui_url}\n" if gui_url else "")
            + f"  broker  {http_url}  (jobs: {http_url}/v1/jobs)\n"
            f"  stream  {ws_url}\n  try:    whisperfarm-source --url {ws_url} FILE\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while not stopping.wait(1.0):
            if not farm.alive():
                print("whisperfarm: a component exited; stopping", file=sys.stderr)
                return 1
        return 0
    finally:
        farm.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.command == "up":
        return up(args)
    if args.command == "convert-model":
        return convert_model(args)
    if args.command == "curve-keys":
        return curve_keys(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
