"""The `/live` page's Python side in NiceGUI's user simulation: sign-in, Start, messages.

The browser's part (capture, the socket, the text) is tested in real Chromium
(`test_gui_live_browser.py`); here, what the page decides: who may start, what Start
issues, and how each state the script reports is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gui.i18n import catalogue
from tests.farm import Broker
from tests.gui_conftest import gui_settings, simulate

pytestmark = pytest.mark.timeout(180)
EN = catalogue("en")


async def test_the_live_page_asks_for_sign_in_and_start_issues_one_ticket(
    tmp_path: Path, broker: Broker
) -> None:
    settings = gui_settings(tmp_path, broker.http, login_tokens="alpha-123")
    async with simulate(settings) as gui:
        user = gui.user
        await user.open("/")
        await user.should_see("Sign in to whisperfarm")
        await user.open("/live")
        await user.should_see("Sign in to whisperfarm")
        await user.should_not_see(EN["live.start"])
        assert len(gui.services.live.tickets) == 0
        user.find(marker="login-token").type("alpha-123")
        user.find(marker="login-submit").click()
        await user.should_see(EN["live.title"])
        user.find(marker="live-toggle").click()
        await user.should_see(EN["live.status.starting"])
        await user.should_see(EN["live.stop"])
        assert len(gui.services.live.tickets) == 1


@pytest.mark.parametrize(
    ("report", "shown", "retry"),
    [
        ({"state": "error", "kind": "permission"}, EN["live.error.permission"], False),
        ({"state": "error", "kind": "no_device"}, EN["live.error.no_device"], False),
        ({"state": "error", "kind": "overloaded", "retry_after": 5}, "Server overloaded, try later",
         True),
        ({"state": "error", "kind": "broker_down"}, EN["live.error.broker_down"], True),
        ({"state": "error", "kind": "failed", "detail": "boom"}, "The live session failed: boom",
         False),
        ({"state": "error", "kind": "made-up"}, "The live session failed: ", False),
    ],
    ids=["permission", "no-device", "overloaded", "broker-down", "failed", "unknown-kind"],
)  # fmt: skip
async def test_each_reported_error_is_shown_in_words_and_start_is_offered_again(
    tmp_path: Path, broker: Broker, report: dict[str, object], shown: str, retry: bool
) -> None:
    async with simulate(gui_settings(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/live")
        user.find(marker="live-toggle").click()
        await user.should_see(EN["live.stop"])
        _report(user, report)
        await user.should_see(shown)
        await user.should_see(EN["live.start"])
        if retry:
            await user.should_see(EN["live.retry"])
        else:
            await user.should_not_see(EN["live.retry"])


async def test_a_session_through_a_reconnect_to_done_links_the_job(
    tmp_path: Path, broker: Broker
) -> None:
    async with simulate(gui_settings(tmp_path, broker.http)) as gui:
        user = gui.user
        await user.open("/live")
        user.find(marker="live-toggle").click()
        _report(user, {"state": "live", "job_id": "abc"})
        await user.should_see(EN["live.status.live"])
        _report(user, {"state": "reconnecting"})
        await user.should_see(EN["live.status.reconnecting"])
        await user.should_see(EN["live.stop"])
        _report(user, {"state": "live"})
        await user.should_see(EN["live.status.live"])
        _report(user, {"state": "stopping"})
        await user.should_see(EN["live.status.stopping"])
        _report(user, {"state": "done", "job_id": "abc"})
        await user.should_see(EN["live.open_transcript"])
        await user.should_see(EN["live.start"])


def _report(user: Any, report: dict[str, object]) -> None:
    """What the page's script does with `emitEvent("whisperfarm_live", report)`."""
    from nicegui.testing.user_interaction import UserInteraction

    UserInteraction(user, {user.current_layout}, None).trigger("whisperfarm_live", report)
