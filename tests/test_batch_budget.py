"""The batch memory budget: one window's estimate from the model's dimensions, and the cap
it puts on `--max-batch` (unit tests, and the real tiny.en through both engines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers import engines
from workers.batch_budget import (
    CPU_BUDGET_MB,
    CPU_PARALLEL_BATCHES,
    GPU_FALLBACK_MB,
    MB,
    DecoderShape,
    budget_bytes,
    effective_batch,
    parallel_batches,
    plan_batch,
    threads_per_batch,
)
from workers.settings import WorkerSettings

TINY_CPU = DecoderShape(layers=4, width=384, bytes_per_value=4)
"""tiny.en with float32 activations."""


def test_one_window_is_cross_attention_kv_plus_encoder_output() -> None:
    assert TINY_CPU.window_bytes() == (4 * 2 + 1) * 1500 * 384 * 4 == 20_736_000
    large_v3_gpu = DecoderShape(layers=32, width=1280, bytes_per_value=2)
    assert large_v3_gpu.window_bytes() == 65 * 1500 * 1280 * 2  # ~250 MB


def test_effective_batch_is_max_batch_capped_by_the_budget_and_at_least_one() -> None:
    per_window = TINY_CPU.window_bytes()
    assert effective_batch(8, 64 * MB, per_window) == 3
    assert effective_batch(2, 64 * MB, per_window) == 2  # --max-batch still rules
    assert effective_batch(8, 1 * MB, per_window) == 1  # one window always fits
    assert effective_batch(8, 10_000 * MB, per_window) == 8


def test_parallel_passes_share_the_budget() -> None:
    per_window = TINY_CPU.window_bytes()
    assert effective_batch(8, 64 * MB, per_window, parallel=1) == 3
    assert effective_batch(8, 64 * MB, per_window, parallel=2) == 1  # 32 MiB each
    assert effective_batch(8, 1 * MB, per_window, parallel=4) == 1  # still one window


def test_parallel_batches_auto_is_per_device_and_never_above_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 16)
    assert parallel_batches(3, "cpu") == 3  # a setting wins
    assert parallel_batches(0, "cpu") == CPU_PARALLEL_BATCHES == 2
    assert parallel_batches(0, "cuda") == 1
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 1)
    assert parallel_batches(0, "cpu") == 1  # one per core at most


def test_more_parallel_batches_than_cores_is_allowed_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 2)
    caplog.set_level("WARNING", logger="workers.batch_budget")
    assert parallel_batches(2, "cpu") == 2
    assert not caplog.records
    assert parallel_batches(4, "cpu") == 4
    assert "--parallel-batches 4 on 2 CPU cores" in caplog.text
    caplog.clear()
    assert parallel_batches(4, "cuda") == 4  # a GPU's passes do not run on the cores
    assert not caplog.records


def test_parallel_passes_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 16)
    assert threads_per_batch(0, 2) == 8
    assert threads_per_batch(0, 1) == 0  # one pass: the library's own default
    assert threads_per_batch(3, 2) == 3  # a setting wins
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 2)
    assert threads_per_batch(0, 4) == 1


def test_budget_setting_or_auto_per_device() -> None:
    def no_gpu() -> int | None:
        return None

    assert budget_bytes(100, "cuda", lambda: 8 << 30) == 100 * MB  # a setting wins
    assert budget_bytes(0, "cpu", lambda: 8 << 30) == CPU_BUDGET_MB * MB
    assert budget_bytes(0, "cuda", lambda: 8 << 30) == 4 << 30  # half the free memory
    assert budget_bytes(0, "cuda", no_gpu) == GPU_FALLBACK_MB * MB


def test_the_engines_overhead_multiplies_the_estimate() -> None:
    measured = DecoderShape(layers=4, width=384, bytes_per_value=4, overhead=1.5)
    assert measured.window_bytes() == int(TINY_CPU.window_bytes() * 1.5)


def test_plan_logs_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="workers.batch_budget")
    assert plan_batch(8, 0, "cpu", TINY_CPU, parallel=2) == 2  # 96 MiB / 2 / 19.8 MiB
    assert "at most 2 windows per forward pass, 2 pass(es) at once" in caplog.text


def test_the_setting_is_a_flag_and_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().batch_memory_mb == 0
    assert WorkerSettings.from_cli(["--batch-memory-mb", "128"], "w").batch_memory_mb == 128
    monkeypatch.setenv("WHISPERFARM_WORKER_BATCH_MEMORY_MB", "32")
    assert WorkerSettings().batch_memory_mb == 32


class SetNumThreadsCalls:
    """Stands in for `torch.set_num_threads`: records the calls instead of changing this
    test process's threads."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, threads: int) -> None:
        self.calls.append(threads)


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "budget_mb", "parallel", "batch", "passes"),
    [
        ("faster-whisper", 0, 0, 1, 2),  # auto: 2 passes; 96 MiB / 2 / (19.8 MiB × 1.3)
        ("faster-whisper", 0, 1, 3, 1),  # one pass: 96 MiB / (19.8 MiB × 1.3)
        ("faster-whisper", 20, 1, 1, 1),
        ("faster-whisper", 120, 2, 2, 2),
        ("faster-whisper", 1000, 2, 8, 2),
        ("openai-whisper", 0, 0, 1, 2),
        ("openai-whisper", 0, 1, 3, 1),  # 96 MiB / (19.8 MiB × 1.5)
        ("openai-whisper", 60, 1, 2, 1),
        ("openai-whisper", 1000, 1, 8, 1),
    ],
)
def test_engines_take_the_budgeted_batch_from_the_loaded_model(
    name: str,
    budget_mb: int,
    parallel: int,
    batch: int,
    passes: int,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tiny.en on a 2-core CPU: ~19.8 MiB per window, read from the model itself, times
    the engine's measured overhead, with the budget shared by the parallel passes."""
    monkeypatch.setattr("workers.batch_budget.usable_cpus", lambda: 2)
    if name == "openai-whisper":  # two passes set torch's threads: give them back after
        import torch

        monkeypatch.setattr(torch, "set_num_threads", SetNumThreadsCalls())
    cache: Path = tmp_path_factory.getbasetemp() / "budget-models"
    settings = WorkerSettings(
        engine=name,
        model="tiny.en",
        model_cache_dir=cache,
        device="cpu",
        max_batch=8,
        batch_memory_mb=budget_mb,
        parallel_batches=parallel,
    )
    engine = engines.load(settings)
    assert engine.max_batch == batch  # type: ignore[attr-defined]
    assert engine.parallel_batches == passes  # type: ignore[attr-defined]
    gate = engine.gated.gate if hasattr(engine, "gated") else engine.gate  # type: ignore[attr-defined]
    assert (gate.max_batch, gate.parallel) == (batch, passes)
    if name == "faster-whisper":  # a CTranslate2 replica per pass
        assert engine.gated.num_workers == passes  # type: ignore[attr-defined]
    if name == "openai-whisper":
        import torch

        assert torch.set_num_threads.calls == ([1] if passes == 2 else [])  # type: ignore[attr-defined]  # 2 cores
    running = passes * batch
    following = running if name == "faster-whisper" else 1  # see useful_concurrency
    assert engine.concurrency == running + following  # type: ignore[attr-defined]
