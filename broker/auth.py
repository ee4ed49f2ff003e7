"""Optional bearer-token authentication for REST and WebSocket, and who the caller is.

Off when no token is configured (the local default). With tokens, every request but
the probes and /metrics must carry one, as `Authorization: Bearer …` or, for browsers
that cannot set WebSocket headers, `?token=…`. A token has a role, written before it:

- `user:<token>` (or a plain token): its own person; it sees only its own jobs;
- `service:<token>` (the GUI): acts for the person it names in `X-Whisperfarm-User`,
  who sees only their own jobs; without the header it sees every job (the GUI's
  admin view);
- `admin:<token>`: sees every job.

A job belongs to its owner (a token's hash, never the token, or `person:<name>`), and
another owner's job is answered as if it did not exist (404, never 403).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from whisperfarm.errors import BadUser, Unauthorized
from whisperfarm.jobs import Job
from whisperfarm.tokens import MAX_PERSON, USER_HEADER, Role, parse_token


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for: the owner its new jobs get, and which jobs it sees."""

    owner: str | None
    """Stored on the jobs it creates (None: nobody in particular)."""
    person: str | None = None
    """The person a service acts for (shown on their jobs)."""
    admin: bool = False
    """Sees every job."""

    def sees(self, job: Job) -> bool:
        return self.admin or job.owner == self.owner

    @property
    def scope(self) -> str | None:
        """The owner whose jobs it sees; None: every job."""
        return None if self.admin else self.owner


ANYONE = Identity(None, admin=True)
"""The caller when tokens are off and nobody says who they are: sees every job."""


def owner_of(token: str) -> str:
    """A stable, non-reversible owner id for a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def load_tokens(inline: str, path: Path | None) -> list[str]:
    """Tokens from a comma/newline-separated setting and/or a file (a mounted Secret)."""
    text = inline + "\n" + (path.read_text() if path is not None else "")
    return [t.strip() for t in text.replace(",", "\n").splitlines() if t.strip()]


class Authenticator:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens: dict[str, tuple[str, Role]] = {}
        for entry in tokens:
            role, token = parse_token(entry)
            self._tokens[owner_of(token)] = (token, role)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identity(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Identity:
        """Who the caller is; raises `Unauthorized` (no or a wrong token) or `BadUser`."""
        person = _person(headers)
        if not self.enabled:  # anyone may say who they are; nobody is checked
            if person is None:
                return Identity(None, admin=True)
            return Identity(f"person:{person}", person)
        token = _bearer(headers.get("authorization", "")) or query.get("token", "")
        if not token:
            raise Unauthorized("an API token is required (Authorization: Bearer <token>)")
        owner = owner_of(token)
        known = self._tokens.get(owner)
        if known is None or not hmac.compare_digest(known[0], token):
            raise Unauthorized("the API token is not valid")
        role = known[1]
        if person is not None and role is not Role.SERVICE:
            raise BadUser("only a service token may act for a person (X-Whisperfarm-User)")
        if role is Role.SERVICE:
            if person is None:
                return Identity(owner, admin=True)
            return Identity(f"person:{person}", person)
        return Identity(owner, admin=role is Role.ADMIN)


def _person(headers: Mapping[str, str]) -> str | None:
    """The person named in `X-Whisperfarm-User` (None: no header); `BadUser` if malformed."""
    value = headers.get(USER_HEADER.lower())
    if value is None:
        return None
    if not value.strip():
        raise BadUser("X-Whisperfarm-User is empty")
    if len(value) > MAX_PERSON:
        raise BadUser(f"X-Whisperfarm-User is longer than {MAX_PERSON} characters")
    if any(not ch.isprintable() for ch in value):
        raise BadUser("X-Whisperfarm-User has control characters")
    return value.strip()


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
