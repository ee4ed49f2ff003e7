"""Helpers for tests of the broker's disk agent."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from broker.disk import Disk


@contextlib.contextmanager
def agent_stopped(disk: Disk) -> Iterator[None]:
    """The disk agent frozen (SIGSTOP): requests wait in the pipe, as behind a slow disk."""
    pid = disk.agent_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
