"""Container HEALTHCHECK for the one whisperfarm image: probe the component this container runs.

The image runs one component, chosen by command (`python -m broker|workers|gui` or the console
scripts), so the probe looks at PID 1's command line to pick the URL:
  broker  http://127.0.0.1:$WHISPERFARM_BROKER_PORT/healthz   (default 8000)
  worker  http://127.0.0.1:$WHISPERFARM_WORKER_METRICS_PORT/healthz   (the image sets 9400)
  gui     http://127.0.0.1:$WHISPERFARM_GUI_PORT/   (default 8080)
WHISPERFARM_HEALTHCHECK_URL overrides the choice. Exit 0 when healthy, 1 otherwise.
Standard library only: it runs with the image's Python and nothing else.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

TIMEOUT_S = 4.0


def component(cmdline: Sequence[str]) -> str:
    """broker, worker or gui, from a command line such as `python -m workers --slots 2`."""
    args = list(cmdline)
    module = args[args.index("-m") + 1] if "-m" in args[:-1] else ""
    # `python -m NAME`, a console script, or `python /path/to/console-script`.
    programs = {module, *(Path(arg).name for arg in args[:2])}
    if programs & {"workers", "whisperfarm-worker"}:
        return "worker"
    if programs & {"gui", "whisperfarm-gui"}:
        return "gui"
    return "broker"


def target_url(cmdline: Sequence[str], env: Mapping[str, str]) -> str:
    if env.get("WHISPERFARM_HEALTHCHECK_URL"):
        return env["WHISPERFARM_HEALTHCHECK_URL"]
    kind = component(cmdline)
    if kind == "worker":
        return f"http://127.0.0.1:{env.get('WHISPERFARM_WORKER_METRICS_PORT', '9400')}/healthz"
    if kind == "gui":
        return f"http://127.0.0.1:{env.get('WHISPERFARM_GUI_PORT', '8080')}/"
    return f"http://127.0.0.1:{env.get('WHISPERFARM_BROKER_PORT', '8000')}/healthz"


def pid1_cmdline() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main() -> int:
    url = target_url(pid1_cmdline(), os.environ)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            healthy = 200 <= response.status < 300
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: {url}: HTTP {response.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
