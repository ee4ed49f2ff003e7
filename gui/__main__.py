"""`whisperfarm-gui` / `python -m gui`: serve the web UI until SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from gui.settings import GuiSettings
from whisperfarm.settings import configure_logging

PROG = "whisperfarm-gui"
USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = GuiSettings.from_cli(sys.argv[1:] if argv is None else argv, PROG)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "input"
            print(f"{PROG}: --{field.replace('_', '-')}: {error['msg']}", file=sys.stderr)
        return USAGE_ERROR
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from gui.app import run  # NiceGUI is heavy to import: not for --help or a usage error

    with contextlib.suppress(KeyboardInterrupt):
        run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
