"""Entry point of `whisperfarm-source` and `python -m source`."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Sequence

from source.progress import PROG, Console
from source.runner import run
from source.settings import SourceSettings
from whisperfarm.settings import configure_logging

INTERRUPTED = 130
"""128 + SIGINT, what shells report for a Ctrl-C'd command."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), transcribe the files, return the exit status.

    A usage error raises SystemExit(2), which is also `ExitCode.UNREADABLE`."""
    if argv is None:  # this process is the CLI (tests call `main` with their own argv)
        # What the imports built (pydantic's schemas, PyAV, websockets) lives as long as
        # the process: frozen, it is not walked again by the run's collections nor by the
        # interpreter's last one, which was most of a short run's time after its final.
        gc.freeze()
    settings = SourceSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    configure_logging(settings.log_level)
    with Console.for_terminal(settings.quiet) as console:
        try:
            return int(asyncio.run(run(settings, console)))
        except KeyboardInterrupt:
            console.error("interrupted")
            return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
