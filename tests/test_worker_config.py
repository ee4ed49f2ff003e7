"""Worker settings, engine selection, the null engine and the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.worker_support import ROOT
from whisperfarm.errors import EngineError
from workers.engines import ENGINES, DecodeRequest, DecodeResult, load
from workers.engines.faster_whisper import pick_compute_type, pick_device
from workers.main import main
from workers.runner import timed_transcribe
from workers.settings import WorkerSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHISPERFARM_WORKER_SLOTS", raising=False)
    settings = WorkerSettings.from_cli([], "whisperfarm-worker")
    assert settings.engine == "faster-whisper" and settings.model == "base"
    assert settings.broker == "tcp://127.0.0.1:5555" and settings.slots == 4
    assert settings.beam_size == 5 and settings.chunk_seconds == 60
    assert settings.max_batch == 8 and settings.batch_wait_ms == 20
    assert settings.model_cache_dir == Path.home() / ".cache/whisperfarm/models"


def test_flags_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPERFARM_WORKER_SLOTS", "7")
    monkeypatch.setenv("WHISPERFARM_WORKER_ENGINE", "null")
    settings = WorkerSettings.from_cli(["--slots", "2", "--metrics-port", "9100"], "w")
    assert (settings.slots, settings.engine, settings.metrics_port) == (2, "null", 9100)


def test_every_field_is_documented() -> None:
    missing = [n for n, f in WorkerSettings.model_fields.items() if not f.description]
    assert missing == []


def test_help_lists_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0
    for name in WorkerSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in out.stdout


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(
        EngineError, match=r"unknown engine 'whisper\.cpp'.*faster-whisper, null, openai-whisper"
    ):
        load(WorkerSettings(engine="whisper.cpp"))
    assert set(ENGINES) == {"faster-whisper", "null", "openai-whisper"}


def test_bad_model_exits_2_before_connecting(tmp_path: Path) -> None:
    assert main(["--model", "no-such-model", "--model-cache-dir", str(tmp_path)]) == 2


def test_bad_flag_value_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--slots", "many", "--device", "gpu"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--slots: Input should be a valid integer" in err and "--device:" in err
    assert "Traceback" not in err


def test_null_engine_marks_its_output() -> None:
    engine = load(WorkerSettings(engine="null", null_delay_per_second=0.1))
    assert (engine.name, engine.model) == ("null", "none")
    audio = np.zeros(16_000 * 2, dtype=np.float32)
    started = time.perf_counter()
    [result, empty] = engine.transcribe([DecodeRequest(audio, "de"), DecodeRequest(audio[:0])])
    assert time.perf_counter() - started >= 0.2
    assert [s.text for s in result.segments] == ["[null engine] 2.0 s of audio"]
    assert result.language == "de" and empty.segments == []


def test_null_engine_never_makes_the_float32_copy() -> None:
    """A window arrives as the stream buffer's int16; only an engine that reads `audio`
    pays for the float32 copy (in a load test, the workers share the broker's CPUs)."""
    pcm = (np.arange(16_000 * 3) % 2000 - 1000).astype(np.int16)
    request = DecodeRequest(pcm, "en")
    [result] = load(WorkerSettings(engine="null")).transcribe([request])
    assert [s.text for s in result.segments] == ["[null engine] 3.0 s of audio"]
    assert "_audio" not in vars(request)  # never converted
    assert request.audio.dtype == np.float32
    assert np.array_equal(request.audio, pcm.astype(np.float32) / 32768.0)
    assert request.audio is request.audio  # converted once


def test_device_and_compute_type() -> None:
    assert pick_device("cpu") == "cpu" and pick_device("auto") in ("cpu", "cuda")
    assert pick_compute_type("auto", "cpu") == "int8"
    assert pick_compute_type("auto", "cuda") == "float16"
    assert pick_compute_type("int8_float16", "cuda") == "int8_float16"


def test_engine_returning_the_wrong_count_is_an_engine_error() -> None:
    class Broken:
        name, model, device = "broken", "none", "cpu"

        def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
            return []

    with pytest.raises(EngineError, match="0 results for 1 requests"):
        timed_transcribe(Broken(), [DecodeRequest(np.zeros(10, dtype=np.float32))])
