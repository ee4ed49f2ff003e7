"""`python -m workers` and the `whisperfarm-worker` console script (`workers.__main__:main`)."""

from __future__ import annotations

import sys

from workers.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
