"""Process entry point: settings → logging → engine → metrics server → worker loop.

The model is loaded before connecting, so the broker only ever sees workers that can
decode; a model that cannot load is a clear error and exit code 2, not a crash loop of
half-started workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from whisperfarm.errors import WhisperfarmError
from whisperfarm.settings import configure_logging
from workers import engines, metrics
from workers.engines import Engine
from workers.http import MetricsServer
from workers.settings import WorkerSettings
from workers.worker import Worker

log = logging.getLogger("workers")
PROG = "whisperfarm-worker"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code."""
    try:
        settings = WorkerSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    except ValidationError as exc:
        print(f"{PROG}: {_describe(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        engine = engines.load(settings)
    except WhisperfarmError as exc:
        log.error("cannot start: %s", exc.detail)
        return 2
    try:
        server = MetricsServer(settings.metrics_host, settings.metrics_port, metrics.REGISTRY)
    except OSError as exc:
        log.error(
            "cannot serve metrics on %s:%d: %s", settings.metrics_host, settings.metrics_port, exc
        )
        return 2
    server.start()
    try:
        asyncio.run(serve(settings, engine, server.port))
    finally:
        server.stop()
    return 0


def _describe(exc: ValidationError) -> str:
    """`--slots: Input should be a valid integer` rather than a pydantic traceback."""
    parts = []
    for error in exc.errors():
        flag = "--" + "-".join(str(p) for p in error["loc"]).replace("_", "-")
        parts.append(f"{flag}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


async def serve(settings: WorkerSettings, engine: Engine, metrics_port: int) -> None:
    """Run the worker; the first SIGTERM/SIGINT stops it cleanly, a second one forces."""
    worker = Worker(settings, engine, metrics_port)
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: disconnecting from the broker", signal.Signals(signum).name)
        worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await worker.run()
