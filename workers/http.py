"""A tiny HTTP server for `/metrics` and `/healthz`, on a background thread.

The stdlib server is enough for two read-only endpoints and keeps the worker free of a
web framework; running it on its own thread means a scrape never waits for the event
loop (or the other way round).
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

SHUTDOWN_POLL_S = 0.05
"""How often the server loop checks for shutdown (the stdlib default, 0.5 s, slows exit)."""


def _handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok")
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class MetricsServer:
    """`/metrics` + `/healthz` on host:port (port 0: the OS picks one, see `.port`)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(registry))
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="metrics-http",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on %s", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
