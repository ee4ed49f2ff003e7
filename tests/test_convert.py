"""CTranslate2 → openai-whisper checkpoint conversion (`workers.convert`).

The bundled tiny.en is converted once per module; the checkpoint must load strictly
into openai-whisper's `Whisper`, hold exactly CTranslate2's tensors (fused projections
split), and be cached. Small synthetic models cover the failure paths.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.worker_support import ROOT
from workers.convert import _StateDict, checkpoint_of, ensure_checkpoint
from workers.ct2_format import Ct2FormatError, read_model
from workers.models import resolve_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve_model("tiny.en", tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def converted(cache: Path) -> Path:
    return ensure_checkpoint("tiny.en", cache)


def test_reads_the_ct2_layout(tiny_dir: Path) -> None:
    model = read_model(tiny_dir / "model.bin")
    assert model.spec == "WhisperSpec" and model.revision >= 3
    assert model.get("decoder/embeddings/weight").shape == (51864, 384)
    # the output projection is an alias of the embeddings
    assert model.get("decoder/projection/weight") is model.get("decoder/embeddings/weight")


def test_checkpoint_loads_strictly_into_openai_whisper(converted: Path, tiny_dir: Path) -> None:
    from whisper.model import ModelDimensions, Whisper

    checkpoint = torch.load(converted, weights_only=True)
    assert checkpoint["dims"] == {
        "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
        "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384,
        "n_text_head": 6, "n_text_layer": 4,
    }  # fmt: skip
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    config = json.loads((tiny_dir / "config.json").read_text())
    assert checkpoint["alignment_heads"] == config["alignment_heads"]


def test_fused_projections_are_split_exactly(converted: Path, tiny_dir: Path) -> None:
    state = torch.load(converted, weights_only=True)["model_state_dict"]
    ct2 = read_model(tiny_dir / "model.bin")
    fused = ct2.get("decoder/layer_1/self_attention/linear_0/weight")
    q, k, v = (
        state[f"decoder.blocks.1.attn.{n}.weight"].numpy() for n in ("query", "key", "value")
    )
    assert np.array_equal(np.concatenate([q, k, v]), fused)
    kv = ct2.get("decoder/layer_2/attention/linear_1/weight")
    cross = [state[f"decoder.blocks.2.cross_attn.{n}.weight"].numpy() for n in ("key", "value")]
    assert np.array_equal(np.concatenate(cross), kv)
    assert "decoder.blocks.1.attn.key.bias" not in state  # openai-whisper's key has no bias
    assert state["decoder.token_embedding.weight"].dtype == torch.float16  # kept as stored


def test_converted_once_then_cached(converted: Path, cache: Path) -> None:
    assert converted == cache / "tiny.en.pt"
    before = converted.stat().st_mtime_ns
    assert ensure_checkpoint("tiny.en", cache) == converted
    assert converted.stat().st_mtime_ns == before
    # a checkpoint without a .source.json was pre-populated by someone: used as is
    official = cache / "small.pt"
    official.write_bytes(b"pretend")
    assert ensure_checkpoint("small", cache) == official


def test_stale_conversion_is_redone(converted: Path, cache: Path) -> None:
    sidecar = cache / "tiny.en.pt.source.json"
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "size": 1}))
    before = converted.stat().st_mtime_ns
    ensure_checkpoint("tiny.en", cache)
    assert converted.stat().st_mtime_ns != before
    assert json.loads(sidecar.read_text()) == data


def test_cli_converts_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    done = subprocess.run(
        [sys.executable, "-m", "whisperfarm", "convert-model", "tiny.en", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and out.is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "whisperfarm", "convert-model", "no-such-model",
         "--model-cache-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "not found" in missing.stderr and "Traceback" not in missing.stderr


# ---- synthetic models: the failure paths ---------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path: Path, variables: dict[str, np.ndarray], version: int = 6) -> Path:
    dtype_ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}
    body = struct.pack("<I", version) + _string("WhisperSpec") + struct.pack("<I", 3)
    body += struct.pack("<I", len(variables))
    for name, value in variables.items():
        body += _string(name) + struct.pack("<B", value.ndim)
        body += b"".join(struct.pack("<I", d) for d in value.shape)
        body += struct.pack("<BI", dtype_ids[value.dtype.name], value.nbytes) + value.tobytes()
    path.write_bytes(body + struct.pack("<I", 0))
    return path


def test_int8_weights_are_dequantized(tmp_path: Path) -> None:
    weight = np.array([[10, -20], [30, 40]], dtype=np.int8)
    scale = np.array([10.0, 20.0], dtype=np.float32)
    model = read_model(_write_ct2(tmp_path / "model.bin", {"w": weight, "w_scale": scale}))
    assert np.allclose(model.float32("w"), [[1.0, -2.0], [1.5, 2.0]])


def test_a_nonzero_key_bias_is_refused(tmp_path: Path) -> None:
    """openai-whisper's key projection has no bias: a real one cannot be dropped silently."""
    model = read_model(_write_ct2(tmp_path / "model.bin", {}))
    model.variables["decoder/embeddings/weight"] = np.zeros((1, 1), np.float32)
    model.variables["s/weight"] = np.ones((6, 2), dtype=np.float32)
    model.variables["s/bias"] = np.array([0, 0, 0.5, 0, 0, 0], dtype=np.float32)
    with pytest.raises(Ct2FormatError, match="key bias"):
        _StateDict(model).split(["a.query", "a.key", "a.value"], "s")


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(Ct2FormatError, match="binary version 99"):
        read_model(_write_ct2(tmp_path / "v.bin", {}, version=99))
    truncated = tmp_path / "t.bin"
    truncated.write_bytes(
        _write_ct2(tmp_path / "ok.bin", {"x": np.ones(4, np.float32)}).read_bytes()[:-10]
    )
    with pytest.raises(Ct2FormatError, match=r"truncated|size"):
        read_model(truncated)
    (tmp_path / "dir").mkdir()
    _write_ct2(tmp_path / "dir" / "model.bin", {"x": np.ones(4, np.float32)})
    with pytest.raises(Ct2FormatError, match="no variable"):
        checkpoint_of(tmp_path / "dir")
