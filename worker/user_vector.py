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

    Padding has weight 0. L is the longest of these histories in the batch (at least 1),
    not `window`: most users have short histories, and the padding was most of what went
    to Triton (51 KB per user at 50 x 256 floats) and most of the encoder's work. The cost:
    Triton's dynamic batcher only merges requests of equal L, which matters little when a
    worker sends one request per micro-batch. Ages count from the user's latest
    interaction, not from now: the output is L2-normalised, so a common decay factor
    cancels, and old histories (replays of historical data) would otherwise underflow.
    """
    knowns = [[i for i in state.history if i.item_id in item_vectors][-window:] for state in states]
    length = max([1, *(len(known) for known in knowns)])
    vecs = np.zeros((len(states), length, dim), dtype=np.float32)
    weights = np.zeros((len(states), length), dtype=np.float32)
    ages = np.zeros((len(states), length), dtype=np.float32)
    for row, known in enumerate(knowns):
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
