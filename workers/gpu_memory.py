"""GPU memory this process holds, as the NVIDIA driver counts it (NVML).

For engines whose library keeps no allocator statistics of its own (CTranslate2). NVML
lists the processes holding memory on each GPU by their PID as the host sees it, so in a
container that does not share the host's PID namespace our own PID is not among them;
then, as without the driver's library or the `pynvml` bindings (`nvidia-ml-py`), the
figure is unknown (None) — never a made-up 0.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def _nvml() -> Any | None:
    """The initialised bindings, or None where NVML cannot be used (asked once)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def held_by_this_process() -> int | None:
    """Bytes of GPU memory held by this process on every GPU, or None when unknown."""
    nvml = _nvml()
    if nvml is None:
        return None
    pid = os.getpid()
    try:
        held: list[int | None] = [
            process.usedGpuMemory
            for index in range(nvml.nvmlDeviceGetCount())
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(
                nvml.nvmlDeviceGetHandleByIndex(index)
            )
            if process.pid == pid
        ]
    except nvml.NVMLError:
        return None
    if not held or None in held:  # not listed, or the driver cannot tell (Windows WDDM)
        return None
    return sum(h for h in held if h is not None)
