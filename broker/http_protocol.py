"""uvicorn's httptools protocol, letting go of its parser once the connection is a WebSocket.

An upgrade hands the transport to the WebSocket protocol and leaves the HTTP protocol behind
with its parser, which calls back into it: a reference cycle holding the transport, the flow
control and the request's objects, freed only by the garbage collector. With streams
starting and ending all the time, those cycles would be most of what every young-generation
collection walks, with the event loop stopped meanwhile. Dropping the parser after the
upgrade, as uvicorn does when a connection is lost, lets reference counting free it all at
once.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class UpgradingHttpProtocol(HttpToolsProtocol):
    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]  # nothing more comes this way
