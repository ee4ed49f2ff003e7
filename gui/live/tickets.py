"""Short-lived tickets: how a signed-in page earns one live socket.

The `/live` page is built behind the GUI's sign-in; its WebSocket is a plain route that
cannot read the session. So the page's Start button asks for a ticket (the sign-in is
checked there), the page opens `/live/ws?ticket=…` at once, and the socket redeems it:
once, within `TICKET_SECONDS`. A ticket carries the `LiveGrant` — what the stream may
be — so nothing the browser sends later can widen it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TICKET_SECONDS = 30.0
"""Start to socket takes a round trip; a ticket older than this was not used by its page."""


@dataclass(frozen=True)
class LiveGrant:
    """What a ticket allows: one live stream with these options."""

    language: str | None
    person: str | None = None
    """Who the stream is for (`gui.identity.person`, read when the page asked)."""


class Tickets:
    """Issued tickets until redeemed or expired; expired ones are purged as new ones come."""

    def __init__(
        self, lifetime: float = TICKET_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lifetime, self._clock = lifetime, clock
        self._issued: dict[str, tuple[float, LiveGrant]] = {}

    def issue(self, grant: LiveGrant) -> str:
        now = self._clock()
        self._issued = {k: v for k, v in self._issued.items() if v[0] > now}
        ticket = secrets.token_urlsafe(24)
        self._issued[ticket] = (now + self._lifetime, grant)
        return ticket

    def __len__(self) -> int:
        """Tickets issued and not redeemed yet (expired ones included until the next issue)."""
        return len(self._issued)

    def redeem(self, ticket: str) -> LiveGrant | None:
        """The grant of a valid ticket, which is then spent; None for any other string."""
        entry = self._issued.pop(ticket, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
