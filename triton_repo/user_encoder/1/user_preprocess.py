"""Pure numpy parts of `user_encoder`, shared with training (models/train_user_encoder.py
imports this file) so the served model sees exactly the inputs it was trained on.

- `decayed_mean`: the recency-decayed, signed-weighted mean of the item vectors (the
  fallback encoder and the content-only baseline).
- `anchored`, `anchor_weights`, `max_similarity`: the sequence encoder's vector pulled
  toward that mean, the more so the less the user's items resemble the items it was trained
  on (a model that never saw anything like them has nothing to add to their content).
- `vector_keys`: a cache key per item vector (the served model remembers each item's
  familiarity).
- `sequence_inputs`: the sequence encoder's inputs: each row's real interactions (weight
  != 0), the most recent `max_len` of them, left-aligned, with the time gap to the previous
  interaction.
"""

from __future__ import annotations

import numpy as np

# Below this norm the direction of the sum is noise: 20 half-lives of a single weight-1
# event is ~1e-6.
MIN_NORM = 1e-6


def decayed_mean(
    items: np.ndarray, weights: np.ndarray, ages_s: np.ndarray, half_life_s: float
) -> np.ndarray:
    """[B, L, D], [B, L], [B, L] -> [B, D]:
    L2-normalise(sum_i item_i * weight_i * 0.5 ** (age_i / half_life)); all-zero rows when
    the sum is ~zero. Negative weights (dislikes, skips) push the vector away."""
    # Clock skew can make an age slightly negative; such events count as brand new.
    decay = np.exp2(-np.maximum(ages_s, 0.0) / half_life_s)
    summed = np.einsum("bl,bld->bd", (weights * decay).astype(np.float32), items)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.where(norms > MIN_NORM, summed / np.maximum(norms, MIN_NORM), 0.0).astype(np.float32)


def max_similarity(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[n, D], [m, D] -> [n]: each vector's cosine to its nearest reference vector."""
    if len(vectors) == 0 or len(reference) == 0:
        return np.zeros(len(vectors), dtype=np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), MIN_NORM)
    return np.einsum("nd,md->nm", unit, reference).max(axis=1).astype(np.float32)


def vector_keys(vectors: np.ndarray) -> list[bytes]:
    """[n, D] unit-scale vectors -> n byte strings, the same for vectors equal to 3 decimals.
    Each row of thousandths (int16) is viewed as one opaque numpy scalar, so the keys come
    out of one C loop (~0.5 ms per 2,500 vectors; float16 rounding and a `tobytes()` per
    vector took ~5 ms)."""
    thousandths = np.ascontiguousarray(np.rint(vectors * 1000.0).astype(np.int16))
    rows = thousandths.view(np.dtype((np.void, thousandths.shape[1] * 2))).ravel()
    keys: list[bytes] = rows.tolist()
    return keys


def anchor_weights(
    familiarity: np.ndarray, content_weight: float, familiar_at: float, unfamiliar_at: float
) -> np.ndarray:
    """[B] mean nearest-training-item cosine of each user's items -> [B] content weight:
    0 from `familiar_at` up, the full `content_weight` from `unfamiliar_at` down, linear
    in between."""
    share = (familiar_at - familiarity) / (familiar_at - unfamiliar_at)
    return (content_weight * np.clip(share, 0.0, 1.0)).astype(np.float32)


def anchored(sequence: np.ndarray, mean: np.ndarray, content_weight: np.ndarray) -> np.ndarray:
    """[B, D] unit (or zero) rows of both, [B] weights ->
    L2-normalise(sequence + content_weight * mean); zero rows stay zero."""
    summed = sequence + content_weight[:, None] * mean
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.where(norms > MIN_NORM, summed / np.maximum(norms, MIN_NORM), 0.0).astype(np.float32)


def sequence_inputs(
    items: np.ndarray, weights: np.ndarray, ages_s: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[B, L, D], [B, L], [B, L] (oldest first; weight 0 = padding) ->
    vectors [B, T, D], weights [B, T], gaps_s [B, T], lengths [B], with T the longest
    kept history (at most max_len, at least 1).

    T is no longer than needed: attention is causal and the output is read at each row's
    last real position, so tail padding never changes it, and it is most of the compute for
    short histories.
    gaps_s[b, t] is the time since the previous kept interaction (0 for the first): the
    ages count from different "nows" in training and serving, their differences do not.
    """
    batch, _, dim = items.shape
    kept = [np.flatnonzero(weights[row] != 0)[-max_len:] for row in range(batch)]
    length = max([1, *(len(real) for real in kept)])
    vectors = np.zeros((batch, length, dim), dtype=np.float32)
    kept_weights = np.zeros((batch, length), dtype=np.float32)
    gaps = np.zeros((batch, length), dtype=np.float32)
    lengths = np.zeros(batch, dtype=np.int64)
    for row, real in enumerate(kept):
        n = len(real)
        lengths[row] = n
        if n == 0:
            continue
        vectors[row, :n] = items[row, real]
        kept_weights[row, :n] = weights[row, real]
        gaps[row, :n] = gaps_from_ages(ages_s[row, real])
    return vectors, kept_weights, gaps, lengths


def gaps_from_ages(ages_s: np.ndarray) -> np.ndarray:
    """Ages (oldest first) -> seconds since the previous interaction, 0 for the first."""
    ages = ages_s.astype(np.float64)
    gaps = np.zeros(len(ages), dtype=np.float32)
    # Ages fall as interactions get newer; a negative gap is clock skew.
    gaps[1:] = np.maximum(ages[:-1] - ages[1:], 0.0)
    return gaps
