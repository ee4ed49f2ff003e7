"""The broker's file work, done by a child process: the disk agent.

- `client` — `Disk`, the broker's side: requests out on a pipe, answers to futures;
- `agent` — the child process (`python -m broker.disk`) that makes the system calls;
- `wire` — the frames between them.

The broker needs only `Disk` and `DiskAgentGone`, exported here. They are imported on
first use, not with the package: the agent's process imports this package too, and the
client's imports (asyncio, the broker's metrics) would slow every agent's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.disk.client import Disk, DiskAgentGone

__all__ = ["Disk", "DiskAgentGone"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from broker.disk import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
