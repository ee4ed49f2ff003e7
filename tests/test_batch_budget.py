"""The batch memory budget: one window's estimate from the model's dimensions, and the cap
it puts on `--max-batch` (unit tests, and the real tiny.en through both engines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers import engines
from workers.batch_budget import (
    CPU_BUDGET_MB,
    GPU_FALLBACK_MB,
    MB,
    DecoderShape,
    budget_bytes,
    effective_batch,
    plan_batch,
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
    assert plan_batch(8, 0, "cpu", TINY_CPU) == 4  # 96 MiB / 19.8 MiB
    assert "at most 4 windows per forward pass" in caplog.text


def test_the_setting_is_a_flag_and_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().batch_memory_mb == 0
    assert WorkerSettings.from_cli(["--batch-memory-mb", "128"], "w").batch_memory_mb == 128
    monkeypatch.setenv("WHISPERFARM_WORKER_BATCH_MEMORY_MB", "32")
    assert WorkerSettings().batch_memory_mb == 32


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "budget_mb", "batch"),
    [
        ("faster-whisper", 0, 3),  # 96 MiB / (19.8 MiB × 1.3)
        ("faster-whisper", 20, 1),
        ("faster-whisper", 60, 2),
        ("faster-whisper", 1000, 8),
        ("openai-whisper", 0, 3),  # 96 MiB / (19.8 MiB × 1.5)
        ("openai-whisper", 60, 2),
        ("openai-whisper", 1000, 8),
    ],
)
def test_engines_take_the_budgeted_batch_from_the_loaded_model(
    name: str, budget_mb: int, batch: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """tiny.en on CPU: ~19.8 MiB per window, read from the model itself, times the
    engine's measured overhead."""
    cache: Path = tmp_path_factory.getbasetemp() / "budget-models"
    settings = WorkerSettings(
        engine=name,
        model="tiny.en",
        model_cache_dir=cache,
        device="cpu",
        max_batch=8,
        batch_memory_mb=budget_mb,
    )
    engine = engines.load(settings)
    assert engine.max_batch == batch  # type: ignore[attr-defined]
    gate = engine.gated.gate if hasattr(engine, "gated") else engine.gate  # type: ignore[attr-defined]
    assert gate.max_batch == batch
    wanted = 2 * batch if name == "faster-whisper" else batch + 1  # see useful_concurrency
    assert engine.concurrency == wanted  # type: ignore[attr-defined]
