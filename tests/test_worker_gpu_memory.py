"""The GPU memory figure for engines without allocator statistics (faster-whisper)."""

from __future__ import annotations

from workers.gpu_memory import held_by_this_process


def test_a_process_the_driver_does_not_list_is_unknown_not_zero() -> None:
    """The test process holds no GPU memory: no GPU here, or NVML does not list it."""
    assert held_by_this_process() is None
