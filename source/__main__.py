"""Entry point of `whisperfarm-source` and `python -m source`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from source.progress import PROG, Console
from source.runner import run
from source.settings import SourceSettings
from whisperfarm.settings import configure_logging
from whisperfarm.streaming.errors import ExitCode

INTERRUPTED = 130
"""128 + SIGINT, what shells report for a Ctrl-C'd command."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), transcribe the files, return the exit status."""
    try:
        settings = SourceSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.UNREADABLE
    except ValidationError as exc:
        for line in describe_invalid(exc):
            print(f"{PROG}: {line}", file=sys.stderr)
        return ExitCode.UNREADABLE
    configure_logging(settings.log_level)
    console = Console.for_terminal(settings.quiet)
    try:
        return int(asyncio.run(run(settings, console)))
    except KeyboardInterrupt:
        console.error("interrupted")
        return INTERRUPTED


def describe_invalid(exc: ValidationError) -> list[str]:
    """Pydantic's report as flag-named one-liners (`--retries: ...`), not a model dump."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        flag = f"--{field.replace('_', '-')}" if field and field != "files" else field or "input"
        lines.append(f"{flag}: {error['msg']}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
