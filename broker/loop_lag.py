"""How late the broker's event loop runs: a timer's delay, sampled ten times a second.

Every stream's packets, acks and finals wait for the one event loop, so whatever holds
it — a long callback, a garbage collection, the process waiting for a CPU on a busy
host — delays all of them at once. A timer that should fire every `INTERVAL_S` fires
late by that wait, at moments unrelated to the load: the histogram of its delays
(`whisperfarm_broker_event_loop_lag_seconds`) is the floor under every latency the
broker adds, and the first thing to look at when job latency or acks slow down while
the workers keep up.
"""

from __future__ import annotations

import asyncio
import time

from broker import metrics

INTERVAL_S = 0.1
"""Between samples: ten a second cost nothing next to thousands of packets."""


async def watch_event_loop(interval: float = INTERVAL_S) -> None:
    """Until cancelled: sleep `interval`, record how much later than that it woke."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, time.perf_counter() - started - interval))
