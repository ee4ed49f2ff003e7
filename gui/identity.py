"""Who a browser is to the broker: the person the GUI names in `X-Whisperfarm-User`.

The GUI holds one `service:` token (`--broker-token service:TOKEN`, or none with the
broker's tokens off) and acts for each person with it, so each sees only
their own jobs. With sign-in on, a person is the token they signed in with (by its
fingerprint, never the token); one signed in with an `admin:` token is named as nobody
and sees every job. With sign-in off, each browser is its own person: a random id kept
in its signed NiceGUI session cookie.

Call `person` inside a page or socket handler (it reads the browser's session); the
live relay calls it when a page opens its socket.
"""

from __future__ import annotations

import secrets

from nicegui import app

from gui.pages.login import SESSION_KEY, fingerprint
from gui.settings import GuiSettings
from whisperfarm.tokens import Role, parse_token

BROWSER_KEY = "person"
"""Where a browser's own id is kept in its session when sign-in is off."""


def person(settings: GuiSettings) -> str | None:
    """The person this browser acts as (None: every job the GUI's token sees — an
    admin's sign-in, or a GUI whose broker token is not a `service:` one)."""
    if not settings.per_person:
        return None
    if not settings.login_token_list:
        browser = app.storage.user.get(BROWSER_KEY)
        if not isinstance(browser, str):
            browser = secrets.token_hex(12)
            app.storage.user[BROWSER_KEY] = browser
        return f"browser:{browser}"
    return person_of_login(settings, app.storage.user.get(SESSION_KEY))


def person_of_login(settings: GuiSettings, marker: object) -> str | None:
    """The person behind a session's login marker; None for an admin token's."""
    for entry in settings.login_token_list:
        role, token = parse_token(entry)
        if marker == fingerprint(token):
            return None if role is Role.ADMIN else f"login:{marker}"
    raise PermissionError("this browser has not signed in")
