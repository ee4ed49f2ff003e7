"""The broker's ASGI app: its edges (REST, WebSocket, OpenAI) around one `Farm`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import WebSocketRoute

from broker import openai_api, rest
from broker.farm import Farm
from broker.openai_api.realtime import PATH as REALTIME_PATH
from broker.openai_api.realtime import realtime_endpoint
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

    origins = [o.strip() for o in farm.settings.cors_origins.split(",") if o.strip()]
    middleware = (
        [
            Middleware(
                CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
            )
        ]
        if origins
        else []
    )
    app = Starlette(
        routes=[
            *rest.routes,
            *openai_api.routes,
            WebSocketRoute(STREAM_PATH, stream_endpoint),
            WebSocketRoute(REALTIME_PATH, realtime_endpoint),
        ],
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=rest.exception_handlers,  # type: ignore[arg-type]
    )
    app.state.farm = farm
    return app
