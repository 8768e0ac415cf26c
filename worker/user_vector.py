"""Where the user vector is made: Triton's user_encoder over the recent item vectors.

`encoder_inputs` is the pure part (padding, weights, ages); `make_user_vectors` does the one
batched Triton call per micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.store import UserState
from worker.triton import TritonClient


def encoder_inputs(
    states: Sequence[UserState],
    item_vectors: dict[str, np.ndarray],
    *,
    window: int,
    dim: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad each user's last `window` known interactions into [B, L, D], [B, L], [B, L].

    Padding has weight 0. L is always `window`, so requests from different batches have the
    same shape and Triton's dynamic batcher can merge them. Ages count from the user's latest
    interaction, not from now: the output is L2-normalised, so a common decay factor cancels,
    and old histories (replays of historical data) would otherwise underflow to zero.
    """
    vecs = np.zeros((len(states), window, dim), dtype=np.float32)
    weights = np.zeros((len(states), window), dtype=np.float32)
    ages = np.zeros((len(states), window), dtype=np.float32)
    for row, state in enumerate(states):
        known = [i for i in state.history if i.item_id in item_vectors][-window:]
        latest = max((i.ts for i in known), default=0.0)
        for col, interaction in enumerate(known):
            vecs[row, col] = item_vectors[interaction.item_id]
            weights[row, col] = interaction.weight
            ages[row, col] = latest - interaction.ts
    return vecs, weights, ages


async def make_user_vectors(
    triton: TritonClient,
    states: Sequence[UserState],
    item_vectors: dict[str, np.ndarray],
    *,
    window: int,
) -> list[np.ndarray | None]:
    """One Triton call for the batch; None for users with no usable history."""
    if not states:
        return []
    vecs, weights, ages = encoder_inputs(states, item_vectors, window=window, dim=triton.dim)
    out = await triton.encode_users(vecs, weights, ages)
    result: list[np.ndarray | None] = []
    for row in out:
        norm = float(np.linalg.norm(row))
        result.append(row.astype(np.float32) if np.isfinite(norm) and norm > 0.5 else None)
    return result
