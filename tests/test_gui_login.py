"""GUI sign-in: with login tokens configured, no page is shown before a valid token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.farm import Broker, Worker
from tests.gui_conftest import gui_settings, simulate

pytestmark = pytest.mark.timeout(180)


async def test_pages_ask_for_a_token_and_refuse_a_wrong_one(
    tmp_path: Path, broker: Broker, null_worker: Worker
) -> None:
    settings = gui_settings(tmp_path, broker.http, login_tokens="alpha-123, beta-456")
    async with simulate(settings) as gui:
        user = gui.user
        await user.open("/jobs/some-job")
        await user.should_see("Sign in to whisperfarm")
        await user.should_not_see("Transcribe files")
        user.find(marker="login-token").type("wrong-token")
        user.find(marker="login-submit").click()
        await user.should_see("That token is not valid.")
        await user.should_not_see("Transcribe files")
        await user.open("/")
        await user.should_see("Sign in to whisperfarm")
        user.find(marker="login-token").type("beta-456")
        user.find(marker="login-submit").click()
        await user.should_see("Transcribe files")
        await user.open("/")  # the session remembers the sign-in
        await user.should_see("Transcribe files")
        assert (await user.http_client.get("/healthz")).status_code == 200


async def test_no_login_tokens_means_no_sign_in_page(
    tmp_path: Path, broker: Broker, null_worker: Worker
) -> None:
    async with simulate(gui_settings(tmp_path, broker.http)) as gui:
        await gui.user.open("/")
        await gui.user.should_see("Transcribe files")
        await gui.user.should_not_see("Sign in to whisperfarm")
