"""`python -m broker.disk [SYNC_ROOT]`: the disk agent (`broker.disk.agent`)."""

import sys

from broker.disk.agent import main

sys.exit(main(sys.argv[1:]))
