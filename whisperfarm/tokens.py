"""API token roles and the person header, shared by the broker (which checks them) and
the GUI (which signs people in with the same tokens and names them to the broker)."""

from __future__ import annotations

from enum import StrEnum

USER_HEADER = "X-Whisperfarm-User"
"""The header a service token names the person it acts for with."""
MAX_PERSON = 128
"""The longest person name (characters) a service may send."""


class Role(StrEnum):
    USER = "user"
    SERVICE = "service"
    ADMIN = "admin"


def parse_token(entry: str) -> tuple[Role, str]:
    """`admin:t`, `service:t`, `user:t` or a plain `t` (a user token, as before roles)."""
    prefix, sep, rest = entry.partition(":")
    if sep and rest and prefix in Role.__members__.values():
        return Role(prefix), rest
    return Role.USER, entry


def person_headers(person: str | None) -> dict[str, str]:
    """The header naming `person` to the broker (none for None: the caller's own view)."""
    return {USER_HEADER: person} if person is not None else {}
