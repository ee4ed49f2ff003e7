"""`whisperfarm-gui` / `python -m gui`: serve the web UI until SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence

from gui.settings import GuiSettings
from whisperfarm.settings import configure_logging

PROG = "whisperfarm-gui"


def main(argv: Sequence[str] | None = None) -> int:
    settings = GuiSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from gui.app import run  # NiceGUI is heavy to import: not for --help or a usage error

    with contextlib.suppress(KeyboardInterrupt):
        run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
