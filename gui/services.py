"""The GUI's long-lived objects, made once per process from `GuiSettings` and passed down."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nicegui import background_tasks

from gui.broker_api import BrokerApi
from gui.event_feed import EventFeed
from gui.live.page_socket import LivePages
from gui.live.relay import LiveRelay
from gui.rejected import RejectedStore
from gui.settings import GuiSettings
from gui.state import GuiState
from gui.uploads import Uploader
from whisperfarm.streaming.client import ClientOptions

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


def spawn(coro: Coroutine[Any, Any, None], name: str) -> object:
    """Run `coro` as a GUI-wide task: not tied to a page, cancelled when the GUI stops."""
    return background_tasks.create(coro, name=name)


@dataclass
class Services:
    settings: GuiSettings
    api: BrokerApi
    state: GuiState
    store: RejectedStore
    uploader: Uploader
    feed: EventFeed
    live: LivePages

    @classmethod
    def create(cls, settings: GuiSettings) -> Services:
        api = BrokerApi(settings.broker, settings.connect_timeout, settings.broker_bearer)
        state = GuiState(settings.broker)
        store = RejectedStore(settings.data_dir)
        options = ClientOptions(
            url=settings.stream_url,
            retries=settings.retries,
            connect_timeout=settings.connect_timeout,
            token=settings.broker_bearer,
        )
        uploader = Uploader(state, store, options, spawn)
        feed = EventFeed(api, state, spawn)
        return cls(settings, api, state, store, uploader, feed, LivePages(LiveRelay(settings)))

    async def start(self) -> None:
        """`app.on_startup`: load the rejected rows, then follow the broker."""
        self.store.load()
        self.store.remove_orphans(set(self.state.uploads))
        spawn(self.feed.run(), "event feed")
        log.info("following the broker at %s", self.settings.broker)

    async def stop(self) -> None:
        await self.api.close()
