"""The broker's ASGI app: REST + WebSocket routes around one `Farm`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from broker import rest
from broker.farm import Farm
from broker.stream import stream_endpoint
from whisperfarm.protocol import STREAM_PATH


def create_app(farm: Farm) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await farm.start()
        try:
            yield
        finally:
            await farm.stop()

    app = Starlette(
        routes=[*rest.routes, WebSocketRoute(STREAM_PATH, stream_endpoint)],
        lifespan=lifespan,
        exception_handlers=rest.exception_handlers,  # type: ignore[arg-type]
    )
    app.state.farm = farm
    return app
