"""`python -m whisperfarm` = the `whisperfarm` umbrella CLI."""

import sys

from whisperfarm.cli import main

sys.exit(main())
