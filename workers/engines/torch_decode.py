"""Batched openai-whisper decoding: many windows, each with its own prompt, in one pass.

openai-whisper's `DecodingTask` decodes a batch of mel windows with one shared prompt, and
its kv-cache lives in forward hooks on the shared model (two threads decoding at once
would mix their caches). Streams have different prompts (their own previous text), so
this module keeps everything of `DecodingTask` that decides *what* is decoded (beam
search, logit filters, ranking, results) and replaces *how* the decoder runs:

- prompts of different lengths are left-padded to one length, with an attention mask
  that hides the padding and positions that start at each row's first real token — so a
  row decodes exactly as it would alone (all rules count from `sample_begin`, which is
  the same for every row after padding);
- the kv-cache is plain tensors owned by the task (no hooks: thread-safe, and beams are
  reordered with one index per layer);
- cross-attention keys/values are computed once per window, not once per beam;
- logits are computed only where they are read: from `<|startoftranscript|>` on (its
  no-speech probability, then the last token's), not for every prompt token — a batch of
  8 windows × 5 beams with a 200-token prompt held 1.7 GB of logits no one looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from whisper.decoding import DecodingOptions, DecodingResult, DecodingTask, Inference
from whisper.model import AudioEncoder, MultiHeadAttention, Whisper
from whisper.utils import compression_ratio


def encode(encoder: AudioEncoder, mel: Tensor) -> Tensor:
    """`AudioEncoder.forward` for mel windows (windows, n_mels, frames) of any even number
    of frames up to 30 s, not only whole windows: a live step's audio is a few seconds, and
    the encoder's cost follows its input (`DecodeRequest.fit_window`). The positions are the
    window's first ones, as faster-whisper's CTranslate2 encoder takes them."""
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = (x + encoder.positional_embedding[: x.shape[1]]).to(x.dtype)
    for block in encoder.blocks:
        x = block(x)
    out: Tensor = encoder.ln_post(x)
    return out


@dataclass
class _LayerCache:
    """Self-attention keys/values so far (per row) and cross-attention ones (per window)."""

    self_k: Tensor | None = None
    self_v: Tensor | None = None
    cross_k: Tensor | None = None
    cross_v: Tensor | None = None


def _heads(x: Tensor, n_head: int) -> Tensor:
    """(batch, time, state) → (batch, heads, time, state / heads)."""
    return x.view(*x.shape[:2], n_head, -1).permute(0, 2, 1, 3)


def _merge(x: Tensor) -> Tensor:
    return x.permute(0, 2, 1, 3).flatten(start_dim=2)


class PaddedInference(Inference):  # type: ignore[misc]  # whisper is untyped
    """Decoder forward passes over left-padded rows with an explicit kv-cache.

    Rows are ordered window by window (`n_group` beams or samples each), which beam
    search keeps: it only reorders rows within a window.
    """

    def __init__(self, model: Whisper, pad: Tensor, n_group: int, first_read: int) -> None:
        self.model = model
        self.pad = pad  # (rows,) padding tokens in front of each row
        self.n_group = n_group
        self.first_read = first_read  # the first position whose logits are read
        self.cache = [_LayerCache() for _ in model.decoder.blocks]
        self.length = 0  # tokens already in the cache

    def logits(self, tokens: Tensor, audio_features: Tensor) -> Tensor:
        """Logits of the new positions from `first_read` on (see the module docstring)."""
        new = tokens[:, self.length :]
        decoder = self.model.decoder
        positions = torch.arange(self.length, tokens.shape[1], device=tokens.device)
        positions = (positions[None, :] - self.pad[:, None]).clamp(min=0)
        x = decoder.token_embedding(new) + decoder.positional_embedding[positions]
        x = x.to(audio_features.dtype)
        mask = self._mask(new.shape[1], tokens.shape[1], tokens.device)
        for block, cache in zip(decoder.blocks, self.cache, strict=True):
            x = x + self._self_attention(block.attn, block.attn_ln(x), mask, cache)
            assert block.cross_attn is not None and block.cross_attn_ln is not None
            x = x + self._cross_attention(
                block.cross_attn, block.cross_attn_ln(x), audio_features, cache
            )
            x = x + block.mlp(block.mlp_ln(x))
        read = max(self.first_read - self.length, 0)
        self.length = tokens.shape[1]
        x = decoder.ln(x[:, read:])
        logits: Tensor = (x @ decoder.token_embedding.weight.to(x.dtype).T).float()
        return logits

    def _mask(self, n_new: int, n_total: int, device: torch.device) -> Tensor:
        """(rows, 1, new, total) booleans, True where a query may attend.

        Causal, and padding hidden from real tokens; a padding token still sees itself,
        so no softmax is over nothing (NaNs would leak into the cache through `w @ v`).
        """
        query = torch.arange(n_total - n_new, n_total, device=device)[:, None]
        key = torch.arange(n_total, device=device)[None, :]
        causal = key <= query
        real_key = key[None] >= self.pad[:, None, None]
        allowed = causal[None] & (real_key | (key == query)[None])
        return allowed[:, None]

    def _self_attention(
        self, attn: MultiHeadAttention, x: Tensor, mask: Tensor, cache: _LayerCache
    ) -> Tensor:
        q, k, v = attn.query(x), attn.key(x), attn.value(x)
        if cache.self_k is not None and cache.self_v is not None:
            k = torch.cat([cache.self_k, k], dim=1)
            v = torch.cat([cache.self_v, v], dim=1)
        cache.self_k, cache.self_v = k, v
        n = attn.n_head
        out = F.scaled_dot_product_attention(_heads(q, n), _heads(k, n), _heads(v, n), mask)
        result: Tensor = attn.out(_merge(out))
        return result

    def _cross_attention(
        self, attn: MultiHeadAttention, x: Tensor, audio: Tensor, cache: _LayerCache
    ) -> Tensor:
        """Rows of one window share its keys: fold the window's rows into query time."""
        if cache.cross_k is None or cache.cross_v is None:
            cache.cross_k, cache.cross_v = attn.key(audio), attn.value(audio)
        windows, steps = audio.shape[0], x.shape[1]
        q = attn.query(x).reshape(windows, self.n_group * steps, x.shape[2])
        n = attn.n_head
        out = F.scaled_dot_product_attention(
            _heads(q, n), _heads(cache.cross_k, n), _heads(cache.cross_v, n)
        )
        result: Tensor = attn.out(_merge(out).reshape(x.shape))
        return result

    def rearrange_kv_cache(self, source_indices: list[int]) -> None:
        if source_indices == list(range(len(source_indices))):
            return
        index = torch.tensor(source_indices, device=self.pad.device)
        self.pad = self.pad[index]
        for cache in self.cache:
            assert cache.self_k is not None and cache.self_v is not None
            cache.self_k, cache.self_v = cache.self_k[index], cache.self_v[index]

    def cleanup_caching(self) -> None:
        self.cache = [_LayerCache() for _ in self.cache]
        self.length = 0


class BatchedDecodingTask(DecodingTask):  # type: ignore[misc]
    """`DecodingTask` for windows that each have their own prompt (see module docstring).

    `options.prompt` must be None; `options.language` must be set (the worker detects
    the language once per stream, before its first window).
    """

    def __init__(self, model: Whisper, options: DecodingOptions, prompts: Sequence[Sequence[int]]):
        super().__init__(model, replace(options, prompt=None))
        rows = [self._with_prompt(list(p)) for p in prompts]
        width = max(len(r) for r in rows)
        pad_token = self.tokenizer.sot_prev  # never looked at: masked, and before sample_begin
        self.rows = torch.tensor([[pad_token] * (width - len(r)) + r for r in rows])
        self.pad = torch.tensor([width - len(r) for r in rows])
        self.sample_begin = width
        self.first_read = width - len(self.sot_sequence)
        self.sot_index = 0  # in the first logits, which start at `first_read`
        for logit_filter in self.logit_filters:
            if hasattr(logit_filter, "sample_begin"):
                logit_filter.sample_begin = width

    def _with_prompt(self, prompt: list[int]) -> list[int]:
        """`DecodingTask._get_initial_tokens` for one row's prompt."""
        if not prompt:
            return list(self.sot_sequence)
        kept = prompt[-(self.n_ctx // 2 - 1) :]
        return [self.tokenizer.sot_prev, *kept, *self.sot_sequence]

    def _get_audio_features(self, mel: Tensor) -> Tensor:
        """The base class encodes anything not 1500 positions long; a fitted window's
        encoder output is shorter (`encode`), so the caller always encodes first."""
        return mel

    @torch.no_grad()
    def run(self, features: Tensor) -> list[DecodingResult]:
        """Decode encoder output (windows, positions, state) (`encode`)."""
        self.decoder.reset()
        audio_features = self._get_audio_features(features)
        device = audio_features.device
        inference = PaddedInference(
            self.model,
            self.pad.repeat_interleave(self.n_group).to(device),
            self.n_group,
            self.first_read,
        )
        self.inference = inference
        if hasattr(self.decoder, "inference"):
            self.decoder.inference = inference
        tokens = self.rows.repeat_interleave(self.n_group, dim=0).to(device)
        tokens, sum_logprobs, no_speech_probs = self._main_loop(audio_features, tokens)
        return self._results(audio_features, tokens, sum_logprobs, no_speech_probs[:: self.n_group])

    def _results(
        self, audio_features: Tensor, tokens: Tensor, sum_logprobs: Tensor, no_speech: list[float]
    ) -> list[DecodingResult]:
        """The tail of `DecodingTask.run`: pick each window's best candidate."""
        n_audio = audio_features.shape[0]
        grouped, logprobs = self.decoder.finalize(
            tokens.reshape(n_audio, self.n_group, -1), sum_logprobs.reshape(n_audio, self.n_group)
        )
        eot = self.tokenizer.eot
        candidates = [
            [t[self.sample_begin : (t == eot).nonzero()[0, 0]] for t in s] for s in grouped
        ]
        selected = self.sequence_ranker.rank(candidates, logprobs)
        results = []
        for i, best in enumerate(selected):
            chosen = candidates[i][best].tolist()
            text = self.tokenizer.decode(chosen).strip()
            results.append(
                DecodingResult(
                    audio_features=audio_features[i],
                    language=self.options.language or "en",
                    tokens=chosen,
                    text=text,
                    avg_logprob=logprobs[i][best] / (len(chosen) + 1),
                    no_speech_prob=no_speech[i],
                    temperature=self.options.temperature,
                    compression_ratio=compression_ratio(text),
                )
            )
        return results
