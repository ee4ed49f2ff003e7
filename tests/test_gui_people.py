"""Each person sees their own jobs in the GUI: two people in two Chromium contexts.

With sign-in on, the GUI holds a `service:` token and names each signed-in person to
the broker; an admin's sign-in sees every job. With sign-in off, each browser (its
session cookie) is its own person.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.farm import Broker, start_broker, start_worker
from tests.gui_conftest import CHROMIUM_ARGS, require_chromium, start_gui, wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GUI, ALICE, BOB, ADMIN = "gui-service-1", "alice-token-2", "bob-token-3", "admin-token-4"


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def _page(browser: Any) -> Any:
    """A page in a context of its own: its own cookies, so its own session."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    return context.new_page()


def _upload(page: Any, tmp_path: Path, name: str) -> None:
    from playwright.sync_api import expect

    path = tmp_path / name
    path.write_bytes(wav_bytes(1.0))
    page.locator("[data-testid=upload] input[type=file]").set_input_files([path])
    row = _row(page, name)
    expect(row.get_by_test_id("cell-status")).to_contain_text("Done", timeout=60_000)


def _row(page: Any, name: str) -> Any:
    cell = page.locator("[data-testid=cell-name]", has_text=name)
    return page.locator("[data-testid=jobs] tbody tr").filter(has=cell)


def _sign_in(page: Any, url: str, token: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.locator("input[type=password]").fill(token)
    page.locator("input[type=password]").press("Enter")
    expect(page.get_by_test_id("upload")).to_be_visible()


def _only_theirs(page: Any, mine: str, theirs: str, url: str, broker: Broker) -> None:
    """`page` shows `mine`, not `theirs`, even after a reload, nor `theirs`'s transcript."""
    from playwright.sync_api import expect

    page.reload()
    expect(_row(page, mine)).to_have_count(1)
    expect(_row(page, theirs)).to_have_count(0)
    other = next(j["id"] for j in broker.jobs() if j["name"] == theirs)
    page.goto(f"{url}/jobs/{other}")
    expect(page.get_by_text("No such job")).to_be_visible()


def test_signed_in_people_see_only_their_own_jobs(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    broker = start_broker(tmp_path, "--api-tokens", f"service:{GUI},{ALICE},{BOB},admin:{ADMIN}")
    broker.token = ADMIN
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    gui = start_gui(tmp_path, broker.http, "--broker-token", f"service:{GUI}",
                    "--login-tokens", f"{ALICE},{BOB},admin:{ADMIN}")  # fmt: skip
    try:
        broker.wait_workers(1)
        alice, bob = _page(browser), _page(browser)
        _sign_in(alice, gui.url, ALICE)
        _sign_in(bob, gui.url, BOB)
        _upload(alice, tmp_path, "alice.wav")
        _upload(bob, tmp_path, "bob.wav")
        people = {j["name"]: j["person"] for j in broker.jobs()}
        assert people["alice.wav"] and people["bob.wav"]
        assert people["alice.wav"] != people["bob.wav"]
        _only_theirs(alice, "alice.wav", "bob.wav", gui.url, broker)
        _only_theirs(bob, "bob.wav", "alice.wav", gui.url, broker)

        admin = _page(browser)
        _sign_in(admin, gui.url, ADMIN)
        expect(_row(admin, "alice.wav")).to_have_count(1)
        expect(_row(admin, "bob.wav")).to_have_count(1)
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()


def test_without_sign_in_each_browser_is_its_own_person(tmp_path: Path, browser: Any) -> None:
    broker = start_broker(tmp_path)
    worker = start_worker(tmp_path, broker.zmq, engine="null")
    gui = start_gui(tmp_path, broker.http)
    try:
        broker.wait_workers(1)
        first, second = _page(browser), _page(browser)
        first.goto(gui.url)
        second.goto(gui.url)
        _upload(first, tmp_path, "first.wav")
        _upload(second, tmp_path, "second.wav")
        people = {j["name"]: j["person"] for j in broker.jobs()}
        assert people["first.wav"].startswith("browser:")
        assert people["first.wav"] != people["second.wav"]
        _only_theirs(first, "first.wav", "second.wav", gui.url, broker)
        _only_theirs(second, "second.wav", "first.wav", gui.url, broker)
    finally:
        gui.process.stop()
        worker.process.stop()
        broker.process.stop()
