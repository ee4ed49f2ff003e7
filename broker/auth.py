"""Optional bearer-token authentication for REST and WebSocket.

Off when no token is configured (the local default). With tokens, every request but
the probes and /metrics must carry one, as `Authorization: Bearer …` or, for browsers
that cannot set WebSocket headers, `?token=…`. A job belongs to the token that created
it (stored as a hash, never the token), and one token never sees another's jobs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path

from whisperfarm.errors import Unauthorized


def owner_of(token: str) -> str:
    """A stable, non-reversible owner id for a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def load_tokens(inline: str, path: Path | None) -> list[str]:
    """Tokens from a comma/newline-separated setting and/or a file (a mounted Secret)."""
    text = inline + "\n" + (path.read_text() if path is not None else "")
    return [t.strip() for t in text.replace(",", "\n").splitlines() if t.strip()]


class Authenticator:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._owners = {owner_of(t): t for t in tokens}

    @property
    def enabled(self) -> bool:
        return bool(self._owners)

    def owner(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The owner id of the presented token; None when auth is off; else `Unauthorized`."""
        if not self.enabled:
            return None
        token = _bearer(headers.get("authorization", "")) or query.get("token", "")
        if not token:
            raise Unauthorized("an API token is required (Authorization: Bearer <token>)")
        candidate = owner_of(token)
        known = self._owners.get(candidate)
        if known is None or not hmac.compare_digest(known, token):
            raise Unauthorized("the API token is not valid")
        return candidate


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
