"""How one stream ends, for the person: saved, or one line saying why, and an exit status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from whisperfarm.streaming.errors import ExitCode, SourceError

log = logging.getLogger(__name__)


class Shown(Protocol):
    """Where a stream's outcome shows (`progress.FileProgress`, `live_view.LiveView`)."""

    def done(self, saved: list[str]) -> None: ...
    def failed(self, message: str) -> None: ...


async def settle(work: Awaitable[list[Path]], shown: Shown, what: object) -> ExitCode:
    """Await `work` (stream and save, returning the files written); never raises.

    An unexpected exception is a bug: it is logged with its traceback and fails this
    stream only, never the other files of the run.
    """
    try:
        saved = await work
    except SourceError as exc:
        shown.failed(exc.message)
        return exc.exit_code
    except Exception as exc:
        log.exception("unexpected failure streaming %s", what)
        shown.failed(f"internal error: {exc!r}")
        return ExitCode.FAILED
    shown.done([str(path) for path in saved])
    return ExitCode.OK
