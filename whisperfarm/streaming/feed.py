"""Packets for the event loop, decoded in a worker thread.

Decoding is CPU work; done on the loop it would stall every other stream of the run and
the WebSocket keepalive pings. Handing one packet at a time to a thread would cost a
thread hop per 1000 frames, so packets travel in batches of about a second of audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

from whisperfarm.streaming.decode import AudioInfo, iter_packets

PACKETS_PER_BATCH = 48
"""About 1 s of audio at 48 kHz; at most ~770 KB in flight for 8-channel audio."""


async def packets_off_loop(
    path: Path, info: AudioInfo, start_frame: int = 0, batch: int = PACKETS_PER_BATCH
) -> AsyncGenerator[bytes, None]:
    """Yield `iter_packets(path, info, start_frame)` without decoding on the event loop."""
    packets = iter_packets(path, info, start_frame)
    try:
        while chunk := await asyncio.to_thread(_take, packets, batch):
            for packet in chunk:
                yield packet
    finally:
        # A cancelled `to_thread` leaves its thread running, and closing a running generator
        # raises ValueError; then the thread's last reference closes the file when it ends.
        with contextlib.suppress(ValueError):
            packets.close()


def _take(packets: Iterator[bytes], n: int) -> list[bytes]:
    return list(itertools.islice(packets, n))
