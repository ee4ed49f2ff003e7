"""Helpers for the GUI tests: NiceGUI's user simulation, a real GUI process, Chromium.

`simulate(settings)` runs the GUI in the test's event loop with NiceGUI's `User` (no
browser, no server socket), against a real broker on loopback. `start_gui()` runs
`python -m gui` as a process for the headless Chromium tests, which drive it through
Playwright pointed at Debian's `/usr/bin/chromium`.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import os
import re
import shutil
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gui.settings import GuiSettings
from tests.farm import ROOT, Process, wait_for

GUI_LISTENING = re.compile(r"whisperfarm-gui listening http=(\S+)")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TEST_OUTPUT = ROOT / "test-output"


# ---- audio ---------------------------------------------------------------------------


def wav_bytes(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    """A short sine tone as a WAV file (the null engine does not care what it hears)."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


# ---- user simulation -----------------------------------------------------------------


def then_silence(wav: Path, copy: Path) -> Path:
    """`wav` followed by a second of zeros, written to `copy`: once Chromium's fake
    microphone has played a file (`%noloop`), it repeats the file's last 10 ms forever,
    so a recording ending in speech would go on as a buzz, not fall silent."""
    with wave.open(str(wav), "rb") as source, wave.open(str(copy), "wb") as out:
        out.setparams(source.getparams())
        out.writeframes(source.readframes(source.getnframes()))
        second = source.getframerate() * source.getsampwidth() * source.getnchannels()
        out.writeframes(bytes(second))
    return copy


def gui_settings(tmp_path: Path, broker_http: str, **overrides: Any) -> GuiSettings:
    values: dict[str, Any] = {
        "broker": broker_http,
        "data_dir": tmp_path / "gui-data",
        "connect_timeout": 3.0,
        "retries": 1,
        **overrides,
    }
    return GuiSettings(**values)


@dataclass
class SimulatedGui:
    user: Any
    """NiceGUI's `nicegui.testing.User`."""
    services: Any
    """The GUI's `gui.services.Services`: its state, uploader, store."""


@asynccontextmanager
async def simulate(settings: GuiSettings) -> AsyncIterator[SimulatedGui]:
    """The GUI built for `settings` inside NiceGUI's user simulation.

    NiceGUI's own `user` fixture runs a main file; the GUI is configured by settings
    instead, so this does what that fixture does around `gui.app.build(settings)`.
    NiceGUI drops the page modules from `sys.modules` after each run (to reset their
    globals), so `gui.app` is imported afresh here every time.
    """
    from nicegui import core, ui
    from nicegui.functions.download import download
    from nicegui.functions.navigate import Navigate
    from nicegui.functions.notify import notify
    from nicegui.testing.general import nicegui_reset_globals, prepare_simulation
    from nicegui.testing.user import User

    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"
        try:
            services = importlib.import_module("gui.app").build(settings)
            prepare_simulation()
            ui.run(storage_secret="simulated secret")
            failure: Exception | None = None
            async with core.app.router.lifespan_context(core.app):
                transport = httpx.ASGITransport(core.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                    try:
                        yield SimulatedGui(User(http), services)
                    except Exception as exc:  # shut NiceGUI down first, or the next test
                        failure = exc  # finds it "already started"
                await _close_pages()
            if failure is not None:
                raise failure
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)
            ui.navigate = Navigate()
            ui.notify = notify
            ui.download = download


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Await until `check()` is truthy (state changes come from background tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.05)


async def _close_pages() -> None:
    """Close the simulated pages before NiceGUI shuts down.

    Otherwise shutdown cancels their outbox loops mid-`wait_for`, which on Python 3.11 can
    swallow the cancellation: NiceGUI then waits 2 s and logs "Could not cancel tasks".
    """
    from nicegui import Client, background_tasks

    for client in list(Client.instances.values()):
        client.delete()
    loops = [t for t in background_tasks.running_tasks if t.get_name().startswith("outbox")]
    if loops:
        await asyncio.wait(loops, timeout=5)


def table_rows(user: Any) -> list[dict[str, Any]]:
    """The job table's rows as pushed to the browser."""
    from nicegui import ui

    tables = [t for t in user.find(marker="jobs").elements if isinstance(t, ui.table)]
    return list(tables[0].rows) if tables else []


def row_named(user: Any, name: str) -> dict[str, Any] | None:
    return next((r for r in table_rows(user) if r["name"] == name), None)


def fail_on_error_logs(caplog: pytest.LogCaptureFixture, allowed: tuple[str, ...] = ()) -> None:
    """What NiceGUI's `user` fixture checks: nothing may have been logged at ERROR."""
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and not any(a in r.getMessage() for a in allowed)
    ]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}", pytrace=False)


# ---- a real GUI process and a real browser ----------------------------------------------


@dataclass
class GuiProcess:
    process: Process
    url: str
    data_dir: Path


def start_gui(tmp_path: Path, broker_http: str, *args: str) -> GuiProcess:
    """`python -m gui --port 0 [args]` against `broker_http`; waits for its listening line."""
    import subprocess

    data_dir = tmp_path / "gui-data"
    log = tmp_path / f"gui-{time.monotonic_ns()}.log"
    # NiceGUI takes PYTEST_CURRENT_TEST to mean "inside pytest" and changes how it runs.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gui", "--port", "0", "--broker", broker_http,
             "--data-dir", str(data_dir), *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    process = Process(popen, log)

    def listening() -> re.Match[str] | None:
        if popen.poll() is not None:
            raise RuntimeError(f"the GUI exited:\n{process.output()}")
        return GUI_LISTENING.search(log.read_text(errors="replace"))

    url = wait_for(listening, 60, "the GUI to listen", log).group(1)
    wait_for(lambda: _answers(url), 60, "the GUI to answer", log)
    return GuiProcess(process, url, data_dir)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def require_chromium() -> str:
    """Chromium and Playwright, or end the test: a failure on CI, a skip elsewhere."""
    reason = ""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            importlib.import_module("playwright.sync_api")
        except ImportError:
            reason = "the playwright package is not installed (pip install playwright)"
    if not reason:
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium_page(locale: str = "en-US") -> Iterator[Any]:
    """A fresh headless Chromium page (1400×900, `locale` its language) driven by
    Playwright; fails the test if the page logged a JS error."""
    executable = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # 2 slow cores, a model and a browser at once
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900}, locale=locale)
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if _is_error(m) else None)
        try:
            yield page
        finally:
            context.close()
            browser.close()
        assert errors == [], "the page logged errors in the browser"


def _is_error(message: Any) -> bool:
    """A console error, except the page retrying while a test restarts the GUI process."""
    restarting = "socket.io" in message.text or "ERR_CONNECTION_REFUSED" in message.text
    return bool(message.type == "error" and not restarting)


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Screenshot into the test's tmp dir and a copy into test-output/ (gitignored)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    TEST_OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, TEST_OUTPUT / name)
    return path
