"""The live feed: follow `/v1/events` into `GuiState`, reconnecting whenever it breaks.

One loop per GUI process (started in `app.on_startup`): open the event stream, and once
its first event (a farm snapshot) proves the subscription is live, load the job list
over REST so nothing that happened before is missed; then apply every event. When the
broker goes away the state says so (the pages show a banner) and the loop retries with
a backoff, or at once when someone presses Refresh.

Transcript previews for the table are fetched here too, a few at a time, once per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gui.broker_api import BrokerApi, BrokerUnavailable, TranscriptUnavailable
from gui.state import GuiState

log = logging.getLogger(__name__)

RETRY_MIN = 0.5
RETRY_MAX = 5.0
PREVIEWS_AT_ONCE = 3
FARM_REFRESH_DELAY = 0.5
"""After job events, `/v1/farm` is read again this much later (once for a burst): the
broker publishes `farm` events for worker changes, not for every admitted stream."""
PREVIEWS_ON_LOAD = 50
"""Done jobs whose previews a fresh listing fetches (newest first); older ones on demand."""

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class LiveFeed:
    def __init__(self, api: BrokerApi, state: GuiState, spawn: Spawn) -> None:
        self._api, self._state, self._spawn = api, state, spawn
        self._wake = asyncio.Event()
        self._previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)
        self._fetching: set[str] = set()
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
                log.error("the live feed failed; restarting it", exc_info=True)
                delay = RETRY_MAX
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _follow(self) -> None:
        loaded = False
        async for event, data in self._api.events():
            if event == "farm":
                self._state.set_farm(data)
            elif event == "job" and self._state.upsert_job(data):
                self._want_preview(data)
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
        jobs = await self._api.jobs()
        self._state.replace_jobs(jobs)
        done = [j for j in jobs if j.get("status") == "done"]
        done.sort(key=lambda j: float(j.get("created_at") or 0), reverse=True)
        for job in done[:PREVIEWS_ON_LOAD]:
            self._want_preview(job)

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

    def _want_preview(self, job: dict[str, Any]) -> None:
        job_id = str(job.get("id", ""))
        if job.get("status") != "done" or job_id in self._state.previews:
            return
        if job_id in self._fetching:
            return
        self._fetching.add(job_id)
        self._spawn(self._fetch_preview(job_id), f"preview {job_id}")

    async def _fetch_preview(self, job_id: str) -> None:
        try:
            async with self._previews:
                if job_id in self._state.previews:
                    return
                text = (await self._api.transcript(job_id, "txt")).decode("utf-8", "replace")
            self._state.set_preview(job_id, text)
        except (BrokerUnavailable, TranscriptUnavailable) as exc:
            log.info("no preview for job %s: %s", job_id, exc)
        finally:
            self._fetching.discard(job_id)
