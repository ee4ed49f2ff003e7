"""CTranslate2 Whisper model → openai-whisper checkpoint, offline, once per model.

The farm's bundled weights (`tiny.en`, `base`) ship in CTranslate2 format; the
openai-whisper engine needs a torch checkpoint (`{"dims", "model_state_dict"}`, what
`whisper.load_model()` reads). Both hold the same tensors under other names, with two
differences undone here: CTranslate2 fuses self-attention q/k/v into one matrix and
cross-attention k/v into another (split back; the key slice carries a bias that
openai-whisper's key has no place for, so it must be zero), and it ties the output
projection to the embeddings through an alias. Model dimensions follow from the shapes;
alignment heads come from `config.json`. Weights keep their stored dtype (float16 for the
bundled models), like openai's own checkpoints.

`python -m workers.convert MODEL [--out FILE]` (and `whisperfarm convert-model`) runs it
by hand; the engine calls `ensure_checkpoint()` on first use, caching the result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisperfarm.errors import EngineError
from whisperfarm.files import open_atomic, write_atomic
from workers.ct2_format import Array, Ct2FormatError, Ct2Model, read_model
from workers.engines import not_installed
from workers.models import resolve_model
from workers.settings import DEFAULT_MODEL_CACHE_DIR

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".pt"
"""`<cache>/<name>.pt`: the file name openai-whisper's own download root uses."""
SOURCE_SUFFIX = ".source.json"
"""Beside a converted checkpoint: which CTranslate2 model it came from (stale check)."""
ZERO_BIAS_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Dims:
    """openai-whisper's `ModelDimensions`, field for field."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


def _layer_count(model: Ct2Model, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    found = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    if found != set(range(len(found))) or not found:
        raise Ct2FormatError(f"{prefix} layers are missing or not numbered 0..n-1")
    return len(found)


def dims_of(model: Ct2Model) -> Dims:
    """Every dimension from tensor shapes (and the stored head counts)."""
    conv1 = model.get("encoder/conv1/weight")  # (n_audio_state, n_mels, 3)
    audio_pos = model.get("encoder/position_encodings/encodings")
    embeddings = model.get("decoder/embeddings/weight")
    text_pos = model.get("decoder/position_encodings/encodings")
    return Dims(
        n_mels=int(conv1.shape[1]),
        n_audio_ctx=int(audio_pos.shape[0]),
        n_audio_state=int(conv1.shape[0]),
        n_audio_head=int(model.get("encoder/num_heads")),
        n_audio_layer=_layer_count(model, "encoder"),
        n_vocab=int(embeddings.shape[0]),
        n_text_ctx=int(text_pos.shape[0]),
        n_text_state=int(embeddings.shape[1]),
        n_text_head=int(model.get("decoder/num_heads")),
        n_text_layer=_layer_count(model, "decoder"),
    )


class _StateDict:
    """Collects openai-whisper tensors, keeping CTranslate2's float dtype."""

    def __init__(self, model: Ct2Model) -> None:
        self.model = model
        self.tensors: dict[str, Array] = {}
        first = model.get("decoder/embeddings/weight")
        self.dtype = first.dtype if first.dtype in (np.float16, np.float32) else np.float32

    def put(self, name: str, value: Array) -> None:
        self.tensors[name] = np.ascontiguousarray(value.astype(self.dtype))

    def copy(self, target: str, source: str) -> None:
        self.put(target, self.model.float32(source))

    def linear(self, target: str, source: str, bias: bool = True) -> None:
        self.copy(f"{target}.weight", f"{source}/weight")
        if bias:
            self.copy(f"{target}.bias", f"{source}/bias")

    def layer_norm(self, target: str, source: str) -> None:
        self.copy(f"{target}.weight", f"{source}/gamma")
        self.copy(f"{target}.bias", f"{source}/beta")

    def split(self, targets: Sequence[str], source: str) -> None:
        """A fused projection → separate query/key/value; the key bias must be zero."""
        weight = self.model.float32(f"{source}/weight")
        bias = self.model.float32(f"{source}/bias")
        for i, target in enumerate(targets):
            rows = slice(
                i * weight.shape[0] // len(targets), (i + 1) * weight.shape[0] // len(targets)
            )
            self.put(f"{target}.weight", weight[rows])
            if target.endswith(".key"):
                if np.abs(bias[rows]).max(initial=0.0) > ZERO_BIAS_TOLERANCE:
                    raise Ct2FormatError(f"{source}: the key bias is not zero; cannot convert")
            else:
                self.put(f"{target}.bias", bias[rows])


def _block(state: _StateDict, target: str, source: str, cross: bool) -> None:
    """One residual attention block (`encoder.blocks.N` / `decoder.blocks.N`)."""
    attn = f"{target}.attn"
    state.split(
        [f"{attn}.query", f"{attn}.key", f"{attn}.value"], f"{source}/self_attention/linear_0"
    )
    state.linear(f"{attn}.out", f"{source}/self_attention/linear_1")
    state.layer_norm(f"{target}.attn_ln", f"{source}/self_attention/layer_norm")
    if cross:
        cross_attn = f"{target}.cross_attn"
        state.linear(f"{cross_attn}.query", f"{source}/attention/linear_0")
        state.split([f"{cross_attn}.key", f"{cross_attn}.value"], f"{source}/attention/linear_1")
        state.linear(f"{cross_attn}.out", f"{source}/attention/linear_2")
        state.layer_norm(f"{target}.cross_attn_ln", f"{source}/attention/layer_norm")
    state.linear(f"{target}.mlp.0", f"{source}/ffn/linear_0")
    state.linear(f"{target}.mlp.2", f"{source}/ffn/linear_1")
    state.layer_norm(f"{target}.mlp_ln", f"{source}/ffn/layer_norm")


def state_dict_of(model: Ct2Model, dims: Dims) -> dict[str, Array]:
    """openai-whisper's `Whisper.state_dict()` names → numpy arrays."""
    state = _StateDict(model)
    state.linear("encoder.conv1", "encoder/conv1")
    state.linear("encoder.conv2", "encoder/conv2")
    state.copy("encoder.positional_embedding", "encoder/position_encodings/encodings")
    for i in range(dims.n_audio_layer):
        _block(state, f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    state.layer_norm("encoder.ln_post", "encoder/layer_norm")
    state.copy("decoder.token_embedding.weight", "decoder/embeddings/weight")
    state.copy("decoder.positional_embedding", "decoder/position_encodings/encodings")
    for i in range(dims.n_text_layer):
        _block(state, f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    state.layer_norm("decoder.ln", "decoder/layer_norm")
    _check_tied_projection(model)
    return state.tensors


def _check_tied_projection(model: Ct2Model) -> None:
    """openai-whisper computes logits with the embedding matrix: the projection must be it."""
    projection = model.variables.get("decoder/projection/weight")
    embeddings = model.get("decoder/embeddings/weight")
    if projection is not None and not np.array_equal(projection, embeddings):
        raise Ct2FormatError("the output projection is not tied to the embeddings")
    if "decoder/projection/bias" in model.variables:
        raise Ct2FormatError("the output projection has a bias openai-whisper cannot hold")


def alignment_heads_of(config: dict[str, Any], dims: Dims) -> list[list[int]]:
    """`config.json`'s heads, or openai-whisper's default (every head of the last half)."""
    heads = config.get("alignment_heads")
    if heads:
        return [[int(layer), int(head)] for layer, head in heads]
    return [
        [layer, head]
        for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
        for head in range(dims.n_text_head)
    ]


def checkpoint_of(model_dir: Path) -> dict[str, Any]:
    """The openai-whisper checkpoint of a CTranslate2 Whisper model directory."""
    model = read_model(model_dir / "model.bin")
    if model.spec != "WhisperSpec":
        raise Ct2FormatError(f"{model_dir} holds a {model.spec}, not a Whisper model")
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    dims = dims_of(model)
    return {
        "dims": asdict(dims),
        "model_state_dict": state_dict_of(model, dims),
        "alignment_heads": alignment_heads_of(config, dims),
    }


# ---- files ---------------------------------------------------------------------------------


def write_checkpoint(model_dir: Path, out: Path) -> Path:
    """Convert `model_dir` into `out` atomically (temp file + rename): readers never see
    half a checkpoint, and two workers converting at once both end with a whole one."""
    try:
        import torch  # the converter alone should not pay for torch at import time
    except ModuleNotFoundError as exc:
        raise not_installed("openai-whisper", exc) from None

    checkpoint = checkpoint_of(model_dir)
    checkpoint["model_state_dict"] = {
        name: torch.from_numpy(array) for name, array in checkpoint["model_state_dict"].items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(out) as file:
        torch.save(checkpoint, file)
    fingerprint = out.with_name(out.name + SOURCE_SUFFIX)
    write_atomic(fingerprint, json.dumps(_fingerprint(model_dir)))
    return out


def _fingerprint(model_dir: Path) -> dict[str, Any]:
    """What identifies the source weights cheaply: path, size and mtime of `model.bin`."""
    stat = (model_dir / "model.bin").stat()
    return {"source": str(model_dir.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _is_current(checkpoint: Path, model_dir: Path | None) -> bool:
    """A cached checkpoint is reused unless it was converted from other weights.

    A checkpoint without a `.source.json` was put there by someone else (a cluster
    pre-populating the cache with openai's own files): it is used as is.
    """
    if not checkpoint.is_file():
        return False
    sidecar = checkpoint.with_name(checkpoint.name + SOURCE_SUFFIX)
    if model_dir is None or not sidecar.is_file():
        return True
    try:
        return bool(json.loads(sidecar.read_text()) == _fingerprint(model_dir))
    except (OSError, ValueError):
        return False


def cached_checkpoint_path(name_or_path: str, cache_dir: Path) -> Path:
    """Where the checkpoint for a model name or CTranslate2 directory lives in the cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():  # a directory given by path: name it after the directory
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return cache_dir / f"{path.resolve().name}-{digest}{CHECKPOINT_SUFFIX}"
    return cache_dir / f"{name_or_path}{CHECKPOINT_SUFFIX}"


def ensure_checkpoint(name_or_path: str, cache_dir: Path, force: bool = False) -> Path:
    """The openai-whisper checkpoint for a model; converts (once) when there is none.

    An existing file is a checkpoint used as is; `<cache>/<name>.pt` is used when present
    (pre-populated or converted earlier); otherwise the CTranslate2 model the name resolves
    to (bundled, assembled or in the cache) is converted into `<cache>/<name>.pt`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    target = cached_checkpoint_path(name_or_path, cache_dir)
    if (
        not force
        and target.is_file()
        and not target.with_name(target.name + SOURCE_SUFFIX).is_file()
    ):
        return target
    model_dir = resolve_model(name_or_path, cache_dir)
    if not (model_dir / "model.bin").is_file():
        raise EngineError(f"{model_dir} is neither a checkpoint file nor a CTranslate2 model")
    if not force and _is_current(target, model_dir):
        return target
    log.info(
        "converting %s (%s) to an openai-whisper checkpoint at %s (once)",
        name_or_path,
        model_dir,
        target,
    )
    return write_checkpoint(model_dir, target)


# ---- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisperfarm convert-model",
        description="Convert a CTranslate2 Whisper model (a bundled name such as tiny.en or "
        "base, a name in the model cache dir, or a directory) to an openai-whisper checkpoint.",
    )
    parser.add_argument("model", help="tiny.en, base, a name in the cache dir, or a directory")
    parser.add_argument(
        "--model-cache-dir",
        type=Path,
        default=Path(os.environ.get("WHISPERFARM_WORKER_MODEL_CACHE_DIR", DEFAULT_MODEL_CACHE_DIR)),
        help="where converted checkpoints are cached (the worker's --model-cache-dir)",
    )
    parser.add_argument("--out", type=Path, help="write here instead of <cache>/<name>.pt")
    parser.add_argument("--force", action="store_true", help="convert even if a cached one exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Convert and print the checkpoint's path; exit 2 with a reason when it cannot."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    cache_dir = args.model_cache_dir.expanduser()
    try:
        if args.out is not None:
            out = write_checkpoint(resolve_model(args.model, cache_dir), args.out)
        else:
            out = ensure_checkpoint(args.model, cache_dir, force=args.force)
    except (EngineError, OSError) as exc:
        detail = exc.detail if isinstance(exc, EngineError) else str(exc)
        print(f"whisperfarm convert-model: {detail}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
