"""`whisperfarm-broker` / `python -m broker`: run the broker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence

import uvicorn
import zmq

from broker.farm import Farm
from broker.http_protocol import UpgradingHttpProtocol
from broker.settings import BrokerSettings
from broker.ws_compat import installed_versions, unsupported_versions
from whisperfarm.errors import WhisperfarmError
from whisperfarm.settings import configure_logging

log = logging.getLogger("broker")


def raise_open_file_limit() -> int:
    """Every stream is a socket plus a spool file: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def bind_http(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts so port 0 can be read back and announced."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve(settings: BrokerSettings) -> None:
    problem = unsupported_versions()
    if problem is not None:
        raise StartupError(problem)
    log.info(
        "WebSocket protocol on %s", ", ".join(" ".join(v) for v in installed_versions().items())
    )
    # Imported once the versions are known good: what extends uvicorn's internals would
    # otherwise end an unsupported install in an import traceback.
    from broker.app import create_app
    from broker.ws_protocol import PacketProtocol, quiet_connection_lines

    tune_gc()  # after the last import: what imports made is frozen with the rest
    quiet_connection_lines(settings.log_level)
    try:
        farm = Farm(settings)
    except (OSError, sqlite3.Error, zmq.ZMQError, WhisperfarmError) as exc:
        raise StartupError(
            f"cannot start with data dir {settings.data_dir} and ZeroMQ {settings.zmq}: {exc}"
        ) from None
    try:
        sock = bind_http(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(farm),
        log_level=settings.log_level.lower(),
        access_log=False,
        http=UpgradingHttpProtocol,  # no cycle left behind by an upgrade
        ws=PacketProtocol,  # packets skip the ASGI round trip: see broker.ws_protocol
        ws_max_size=16 * 1024 * 1024,
        ws_per_message_deflate=False,  # PCM barely compresses; deflate cost the broker CPU
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    # One machine-readable line: `whisperfarm up` and the tests read the ports from it.
    print(
        f"whisperfarm-broker listening http=http://{shown}:{port} zmq={farm.zmq_endpoint}",
        flush=True,
    )
    await server.serve(sockets=[sock])


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: its transports and callbacks cost about half of
    asyncio's per message, and a broker with a thousand streams is all messages."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop (Windows)
        return None
    return uvloop.new_event_loop


GC_THRESHOLDS = (50_000, 20, 20)
"""Young-generation size and the older generations' collection ratios (CPython's
default is 700, 10, 10)."""


def tune_gc() -> None:
    """Keep the garbage collector from stalling a busy event loop.

    At a thousand streams the broker makes objects fast (ASGI messages, frames) and holds
    many for seconds (each stream's protocol, tasks, queues). With CPython's default
    thresholds these are promoted constantly, and the full collections they trigger walk
    every stream's objects: pauses of tens to hundreds of milliseconds, during which
    nobody's packets are read. A larger young generation lets short-lived objects die before
    a collection sees them, so full collections become rare; `freeze` takes the import-time
    objects (modules, classes) out of every collection.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class StartupError(Exception):
    """A setting the broker cannot run with: one line for the operator, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    settings = BrokerSettings.from_cli(sys.argv[1:] if argv is None else argv, "whisperfarm-broker")
    configure_logging(settings.log_level)
    log.info("open-file limit %d", raise_open_file_limit())
    try:
        with (
            contextlib.suppress(KeyboardInterrupt),
            asyncio.Runner(loop_factory=loop_factory()) as runner,
        ):
            runner.run(serve(settings))
    except StartupError as exc:
        log.error("%s", exc)
        print(f"whisperfarm-broker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
