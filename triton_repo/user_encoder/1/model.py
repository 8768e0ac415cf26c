"""Triton Python model `user_encoder`: a user's recent item vectors -> one user vector.

ITEM_VECTORS (FP32 [L, 256], oldest first, zero-padded), EVENT_WEIGHTS (FP32 [L], the
signed weight of the interaction; 0 marks padding) and AGES_SECONDS (FP32 [L], how long ago
each interaction happened) -> USER_VECTOR (FP32 [256]) =
L2-normalise(sum_i item_i * weight_i * 0.5 ** (age_i / half_life)).
Negative weights (dislikes, skips) push the vector away from those items. A row whose sum
is ~zero (no events, or everything decayed away) comes back as all zeros so the caller can
fall back. `half_life_seconds` is a config parameter.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT_VECTORS = "ITEM_VECTORS"
INPUT_WEIGHTS = "EVENT_WEIGHTS"
INPUT_AGES = "AGES_SECONDS"
OUTPUT_VECTOR = "USER_VECTOR"
DEFAULT_HALF_LIFE_S = 604800.0  # one week
# Below this norm the direction of the sum is noise: 20 half-lives of a single weight-1
# event is ~1e-6.
MIN_NORM = 1e-6


def user_vectors(
    items: np.ndarray, weights: np.ndarray, ages_s: np.ndarray, half_life_s: float
) -> np.ndarray:
    """[B, L, D], [B, L], [B, L] -> [B, D]."""
    # Clock skew can make an age slightly negative; such events count as brand new.
    decay = np.exp2(-np.maximum(ages_s, 0.0) / half_life_s)
    summed = np.einsum("bl,bld->bd", (weights * decay).astype(np.float32), items)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.where(norms > MIN_NORM, summed / np.maximum(norms, MIN_NORM), 0.0).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        half_life = parameters.get("half_life_seconds", {}).get("string_value")
        self.half_life_s = float(half_life) if half_life else DEFAULT_HALF_LIFE_S
        if not self.half_life_s > 0:
            raise pb_utils.TritonModelException(
                f"half_life_seconds must be > 0, got {self.half_life_s}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            items, weights, ages = (
                pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in (INPUT_VECTORS, INPUT_WEIGHTS, INPUT_AGES)
            )
            if weights.shape != items.shape[:2] or ages.shape != weights.shape:
                error = pb_utils.TritonError(
                    f"user_encoder: shapes disagree: {INPUT_VECTORS} {items.shape}, "
                    f"{INPUT_WEIGHTS} {weights.shape}, {INPUT_AGES} {ages.shape}"
                )
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            vectors = user_vectors(items, weights, ages, self.half_life_s)
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_VECTOR, vectors)])
            )
        return responses
