"""Who is who: average-linkage agglomerative clustering of unit-length embeddings.

Each segment's embedding starts as its own cluster; the two most similar clusters (mean
cosine similarity over their members' pairs) merge, again and again, until the caller's
speaker count is reached or no pair is similar enough (`SAME_SPEAKER`). Then a cluster
heard for less than `min_weight` (seconds of audio, say) joins its most similar cluster:
a voice print from one short, half-silent segment is too weak to be a speaker of its own.

Agglomerative rather than spectral clustering because a file is often a handful of
segments, where an eigengap says little; a stream's segments number hundreds at most, so
the O(n²) matrix and its n merges are cheap in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SAME_SPEAKER = 0.6
"""Mean cosine similarity above which two clusters are one speaker: between what CAM++
gives one real speaker's segments and two different speakers' (the separation measured
is in bench/RESULTS.md, speaker labels)."""


def cluster(
    embeddings: npt.NDArray[np.float32],
    count: int | None = None,
    threshold: float = SAME_SPEAKER,
    weights: Sequence[float] | None = None,
    min_weight: float = 0.0,
) -> list[int]:
    """A cluster number per embedding (rows of unit length); `count` forces that many
    clusters (fewer only when there are fewer embeddings). `weights`: how much audio each
    embedding stands for (default 1 each), for `min_weight`."""
    n = len(embeddings)
    if n == 0:
        return []
    similarity = (embeddings @ embeddings.T).astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    sizes = np.ones(n)
    heard = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    target = 1 if count is None else max(1, count)
    while len(members) > target:
        a, b = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if count is None and similarity[a, b] < threshold:
            break
        _join(similarity, sizes, heard, members, int(a), int(b))
    while count is None and len(members) > 1:
        weakest = min(members, key=lambda c: heard[c])
        if heard[weakest] >= min_weight:
            break
        nearest = int(np.argmax(similarity[weakest]))
        _join(similarity, sizes, heard, members, nearest, weakest)
    labels = [0] * n
    for number, rows in enumerate(members.values()):
        for row in rows:
            labels[row] = number
    return labels


def _join(
    similarity: npt.NDArray[np.float64],
    sizes: npt.NDArray[np.float64],
    heard: npt.NDArray[np.float64],
    members: dict[int, list[int]],
    a: int,
    b: int,
) -> None:
    _merge(similarity, sizes, a, b)
    heard[a] += heard[b]
    members[a] += members.pop(b)


def _merge(
    similarity: npt.NDArray[np.float64], sizes: npt.NDArray[np.float64], a: int, b: int
) -> None:
    """Fold cluster `b` into `a`: average linkage's size-weighted mean of the two rows."""
    merged = (similarity[a] * sizes[a] + similarity[b] * sizes[b]) / (sizes[a] + sizes[b])
    similarity[a, :] = merged
    similarity[:, a] = merged
    similarity[a, a] = -np.inf
    similarity[b, :] = -np.inf
    similarity[:, b] = -np.inf
    sizes[a] += sizes[b]
