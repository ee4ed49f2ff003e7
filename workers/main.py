"""Process entry point: settings → logging → engine → metrics server → worker loop.

The model is loaded before connecting, so the broker only ever sees workers that can
decode; a model that cannot load is a clear error and exit code 2, not a crash loop of
half-started workers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence

from whisperfarm.curve import CurveClient
from whisperfarm.errors import WhisperfarmError
from whisperfarm.settings import configure_logging
from workers import engines, metrics
from workers.engines import Engine
from workers.http import MetricsServer
from workers.malloc import tune_malloc
from workers.settings import WorkerSettings
from workers.worker import Worker

log = logging.getLogger("workers")
PROG = "whisperfarm-worker"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code."""
    settings = WorkerSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    configure_logging(settings.log_level)
    quiet_libraries(settings.log_level)
    tune_malloc()  # before any decoding thread exists
    try:
        if settings.curve_server_key is not None:  # fail before the slow model load
            CurveClient.load(settings.curve_server_key, settings.curve_secret_key)
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
    gpu_memory = getattr(engine, "gpu_memory_bytes", None)
    if gpu_memory is not None:
        metrics.GPU_MEMORY_BYTES.set_function(lambda: _known_or_nan(gpu_memory()))
    try:
        forced = asyncio.run(serve(settings, engine, server.port))
    finally:
        server.stop()
    if forced:  # do not wait for a decode still running in a pool thread
        logging.shutdown()
        os._exit(1)
    return 0


CHATTY_LIBRARIES = ("faster_whisper",)
"""Loggers that write a line per decode at INFO (faster-whisper: "Processing audio with
duration …" for every window), which would bury the worker's own lines."""


def quiet_libraries(level: str) -> None:
    """Keep the chatty libraries to warnings, unless the worker logs at DEBUG."""
    if level.upper() != "DEBUG":
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


def _known_or_nan(value: int | None) -> float:
    """A gauge's sample: NaN, Prometheus' "no figure", when the engine cannot measure."""
    return math.nan if value is None else value


async def serve(settings: WorkerSettings, engine: Engine, metrics_port: int) -> bool:
    """Run the worker until it has left; returns True when a second signal forced it.

    The first SIGTERM/SIGINT drains (finish the current streams, take no new ones, up to
    `--drain-timeout`), the second leaves at once, a third exits without a goodbye.
    """
    worker = Worker(settings, engine, metrics_port)
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("%s: draining (a second one stops at once)", name)
            worker.drain(settings.drain_timeout)
        elif signals_seen == 2:
            log.warning("second %s: leaving now, unfinished streams go back to the broker", name)
            worker.stop()
        else:
            os._exit(1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await worker.run()
    return signals_seen > 1
