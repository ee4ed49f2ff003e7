"""`/metrics` and `/healthz` on a background thread: prometheus_client's WSGI app and server.

`/metrics` is prometheus_client's own app (content negotiation, OpenMetrics, gzip,
`name[]` filters); its `start_http_server` is not used as is because it answers the
exposition on every path, while probes need `/healthz`, and it polls for shutdown only
every 0.5 s. So one small WSGI router puts the two paths on prometheus_client's threading
server. On its own thread a scrape never waits for the event loop (or the other way round).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)

SHUTDOWN_POLL_S = 0.05
"""How often the server loop checks for shutdown (the stdlib default, 0.5 s, slows exit)."""
TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def metrics_and_health(registry: CollectorRegistry) -> WSGIApplication:
    """`/metrics` from `registry`, `/healthz` answering `ok`, 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if path == "/healthz":
            start_response("200 OK", TEXT)
            return [b"ok"]
        start_response("404 Not Found", TEXT)
        return [b"not found"]

    return app


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """`/metrics` + `/healthz` on host:port (port 0: the OS picks one, see `.port`)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._server = make_server(
            host, port, metrics_and_health(registry), ThreadingWSGIServer, _Handler
        )
        self.host = host
        self.port: int = self._server.server_port
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
