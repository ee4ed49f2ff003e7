"""The event feed: follow `/v1/events` into `GuiState`, reconnecting whenever it breaks.

One loop per GUI process (started in `app.on_startup`): open the event stream, and once
its first event (a farm snapshot) proves the subscription is live, load the job list
over REST so nothing that happened before is missed; then apply every event. When the
broker goes away the state says so (the pages show a banner) and the loop retries with
a backoff, or at once when someone presses Refresh. A done job carries its transcript's
first words (`Job.preview`), so the table never downloads transcripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gui.broker_api import BrokerApi, BrokerUnavailable
from gui.state import GuiState
from whisperfarm.farm_view import FarmView

log = logging.getLogger(__name__)

RETRY_MIN = 0.5
RETRY_MAX = 5.0
FARM_REFRESH_DELAY = 0.5
"""After job events, `/v1/farm` is read again this much later (once for a burst): the
broker publishes `farm` events for worker changes, not for every admitted stream."""

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class EventFeed:
    def __init__(self, api: BrokerApi, state: GuiState, spawn: Spawn) -> None:
        self._api, self._state, self._spawn = api, state, spawn
        self._wake = asyncio.Event()
        self._farm_due = False

    async def run(self) -> None:
        """Follow the broker forever (cancelled when the GUI stops)."""
        delay = RETRY_MIN
        while True:
            try:
                await self._follow()
                delay = RETRY_MIN  # a clean end (broker restarting): come back quickly
            except BrokerUnavailable as exc:
                self._state.set_down(exc.reason)
                delay = min(delay * 2, RETRY_MAX)
            except Exception:
                log.error("the event feed failed; restarting it", exc_info=True)
                delay = RETRY_MAX
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _follow(self) -> None:
        loaded = False
        async for change in self._api.events():
            if isinstance(change, FarmView):
                self._state.set_farm(change)
            elif self._state.upsert_job(change):
                self._want_farm()
            if not loaded:
                await self._load_jobs()
                self._state.set_up()
                loaded = True

    async def refresh(self) -> bool:
        """Reload jobs and farm now (the Refresh button); False if the broker is down."""
        try:
            self._state.set_farm(await self._api.farm())
            await self._load_jobs()
        except BrokerUnavailable as exc:
            self._state.set_down(exc.reason)
            self._wake.set()  # and let the feed retry at once
            return False
        self._state.set_up()
        return True

    async def _load_jobs(self) -> None:
        self._state.replace_jobs(await self._api.jobs())

    def _want_farm(self) -> None:
        if not self._farm_due:
            self._farm_due = True
            self._spawn(self._fetch_farm(), "farm view")

    async def _fetch_farm(self) -> None:
        await asyncio.sleep(FARM_REFRESH_DELAY)
        self._farm_due = False
        try:
            self._state.set_farm(await self._api.farm())
        except BrokerUnavailable as exc:
            log.info("farm view not refreshed: %s", exc.reason)
