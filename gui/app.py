"""Wire the GUI together: pages, startup/shutdown, storage, and `ui.run`.

`build()` registers everything on NiceGUI's app and returns the `Services`; `run()` binds
the socket (so `--port 0` can be read back and announced), then serves until SIGTERM.
Tests call `build()` inside NiceGUI's user simulation instead of `run()`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from nicegui import app, ui
from nicegui.storage import Storage

from gui import theme
from gui.i18n import t
from gui.live import page_socket
from gui.pages import jobs, live, login, transcript
from gui.services import Services
from gui.settings import GuiSettings

log = logging.getLogger("gui")
STATIC_DIR = Path(__file__).with_name("static")

TITLE = "whisperfarm"
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    '<rect width="24" height="24" rx="5" fill="#4f46e5"/>'
    '<path d="M5 10v4M8.5 7v10M12 4v16M15.5 8v8M19 10.5v3" stroke="white" '
    'stroke-width="2" stroke-linecap="round"/></svg>'
)


def build(settings: GuiSettings) -> Services:
    """Register pages and lifecycle hooks for `settings`; call once per process."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Storage.path = (settings.data_dir / "sessions").resolve()
    app.storage = Storage()  # picks up the path: per-browser settings live in the data dir
    services = Services.create(settings)

    @ui.page("/", title=TITLE)
    def index_page() -> None:
        if not login.require(settings, "/"):
            return
        with theme.frame(services, t("jobs.page")):
            jobs.content(services)

    @ui.page("/jobs/{job_id}", title=TITLE)
    def job_page(job_id: str) -> None:
        if not login.require(settings, f"/jobs/{job_id}"):
            return
        with theme.frame(services, t("transcript.page")):
            transcript.content(services, job_id)

    # A page whose connection drops for longer than NiceGUI's 3 s default is rebuilt,
    # which would end its recording: it waits as long as its live stream does.
    @ui.page("/live", title=TITLE, reconnect_timeout=page_socket.RESUME_SECONDS)
    def live_page() -> None:
        if not login.require(settings, "/live"):
            return
        with theme.frame(services, t("live.title")):
            live.content(services)

    @ui.page("/login", title=TITLE)
    def login_page(next: str = "/") -> None:
        login.content(settings, next)

    app.websocket(page_socket.PATH)(services.live.serve)
    app.add_static_files(live.STATIC, STATIC_DIR)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        """Liveness for orchestrators: the GUI serves pages whether the broker is up or not."""
        return {"status": "ok", "broker": "up" if services.state.connection.up else "down"}

    app.on_startup(services.start)
    app.on_shutdown(services.stop)
    app.on_page_exception(theme.error_page)
    return services


def storage_secret(settings: GuiSettings) -> str:
    """The configured secret, or one made once and kept (0600) in the data dir."""
    if settings.storage_secret:
        return settings.storage_secret
    path = settings.data_dir / "session-secret"
    try:
        return path.read_text().strip() or _new_secret(path)
    except FileNotFoundError:
        return _new_secret(path)


def _new_secret(path: Path) -> str:
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    return secret


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving so port 0 can be read back and announced."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn serves a socket given by fd without setting TCP_NODELAY on each connection;
    # on Linux accepted sockets inherit it from the listener.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def run(settings: GuiSettings) -> None:
    """Serve until SIGTERM; a port or data dir that cannot be used ends it with one line."""
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        raise SystemExit(
            f"whisperfarm-gui: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}"
        ) from None
    try:
        build(settings)
        secret = storage_secret(settings)
    except OSError as exc:
        raise SystemExit(
            f"whisperfarm-gui: cannot use --data-dir {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # One machine-readable line, like the broker's: tests and launchers read the port from it.
    print(f"whisperfarm-gui listening http=http://{shown}:{port} broker={settings.broker}",
          flush=True)  # fmt: skip
    ui.run(
        host=settings.host,
        port=port,
        fd=sock.fileno(),
        title=TITLE,
        favicon=FAVICON,
        reload=False,
        show=False,
        show_welcome_message=False,
        storage_secret=secret,
        uvicorn_logging_level="warning",  # its per-connection lines drown the GUI's own
        access_log=False,
        timeout_graceful_shutdown=5,
    )
