"""Keep glibc's malloc from growing the worker's RSS with the number of streams.

glibc's malloc gives each thread that allocates under contention its own arena (up to
8 × cores of them) and rarely hands their freed memory back. In a worker, the thread that
runs a batched forward pass changes from batch to batch, so over time every decoding
thread's arena grows to the size of a forward pass's scratch memory, RSS held for
nothing. Two arenas keep the cost flat without serializing allocations.

Second, glibc raises its mmap threshold each time a large mmap'd block is freed, so later
large tensors (mel spectrograms, encoder activations) come from the heap, where freed
space fragments instead of going back to the system. A fixed 1 MB threshold keeps every
large block mmap'd and returned on free. (What each saves: `bench/RESULTS.md`, design measurements.)
Both must be set before the threads start; a no-op where malloc is not glibc's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
"""`mallopt` parameter numbers (glibc's malloc.h)."""
ARENAS = 2
MMAP_THRESHOLD = 1 << 20


def tune_malloc(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Cap glibc's arenas and fix its mmap threshold; returns whether both took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    log.debug("malloc: %d arenas, mmap threshold %d: %s", arenas, mmap_threshold, done)
    return done
