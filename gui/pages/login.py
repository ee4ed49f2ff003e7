"""Login: when the GUI is given login tokens, every page asks for one first.

The tokens are the farm's API tokens (the same Secret as the broker's), checked here in
constant time; a browser that presented a valid one keeps a signed session marker, never
the token itself.
"""

from __future__ import annotations

import hashlib
import hmac

from nicegui import app, ui

from gui import head
from gui.components import language_switch
from gui.i18n import t
from gui.settings import GuiSettings
from whisperfarm.tokens import parse_token

SESSION_KEY = "login"


def fingerprint(token: str) -> str:
    """What a session keeps of the token it signed in with (and the person it names)."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def accepted(settings: GuiSettings, token: str) -> bool:
    """Whether `token` is one of the configured login tokens."""
    candidate = token.strip().encode()
    tokens = (parse_token(t)[1] for t in settings.login_token_list)
    return any(hmac.compare_digest(candidate, t.encode()) for t in tokens)


def logged_in(settings: GuiSettings) -> bool:
    """True when no login is configured, or this browser's session passed it."""
    if not settings.login_token_list:
        return True
    marker = app.storage.user.get(SESSION_KEY)
    return any(marker == fingerprint(parse_token(t)[1]) for t in settings.login_token_list)


def require(settings: GuiSettings, target: str) -> bool:
    """Send a browser that has not logged in to the login page; True if it may stay."""
    if logged_in(settings):
        return True
    ui.navigate.to(f"/login?next={target}")
    return False


def content(settings: GuiSettings, next_page: str) -> None:
    """The login card, with the language switch (the header is not shown here)."""
    head.set_up(t("login.page"))
    target = next_page if next_page.startswith("/") and not next_page.startswith("//") else "/"

    def submit() -> None:
        token = field.value or ""
        if not accepted(settings, token):
            error.set_text(t("login.invalid"))
            error.set_visibility(True)
            return
        app.storage.user[SESSION_KEY] = fingerprint(token.strip())
        ui.navigate.to(target)

    with ui.card().classes("w-full max-w-md mx-auto mt-16 p-6 gap-4"):
        with ui.row().classes("w-full items-center no-wrap"):
            ui.label(t("login.title")).classes("text-xl font-semibold grow")
            language_switch.create(color="primary")
        ui.label(t("login.hint")).classes("text-sm text-slate-500")
        field = ui.input(t("login.token"), password=True).props("outlined autofocus")
        field.classes("w-full").mark("login-token").on("keydown.enter", submit)
        error = ui.label().classes("text-negative text-sm").mark("login-error")
        error.set_visibility(False)
        ui.button(t("login.submit"), on_click=submit).props("unelevated").mark("login-submit")
