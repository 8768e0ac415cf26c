"""Triton Python model `user_encoder`: a user's recent item vectors -> one user vector.

ITEM_VECTORS (FP32 [L, 256], oldest first, zero-padded), EVENT_WEIGHTS (FP32 [L], the
signed weight of the interaction; 0 marks padding) and AGES_SECONDS (FP32 [L], how long ago
each interaction happened) -> USER_VECTOR (FP32 [256], unit length, in the item space).
A row with nothing to go on comes back as all zeros so the caller can fall back.

The `encoder` config parameter picks the model:
- "sequence": the trained SASRec-style transformer (models/user_model.py), run with
  onnxruntime from `model.onnx` (built by `python -m models.export`), anchored to content
  where it is out of its depth: L2-normalise(sequence vector + w * mean vector), where w
  grows from 0 to `content_weight` as the user's items get less like the items the model
  was trained on (mean cosine to the nearest one, from `familiar_similarity` down to
  `unfamiliar_similarity`; the training items' vectors ship with it). A model trained on
  one catalogue's behaviour says little about items unlike any it saw, so for those the
  recommendations follow what the user consumed. It needs model.onnx and its assets and says
  so at load time when they are missing.
- "mean": L2-normalise(sum_i item_i * weight_i * 0.5 ** (age_i / half_life)), with
  `half_life_seconds` from the config: no training, no file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from user_preprocess import (
    anchor_weights,
    anchored,
    decayed_mean,
    max_similarity,
    sequence_inputs,
    vector_keys,
)

INPUT_VECTORS = "ITEM_VECTORS"
INPUT_WEIGHTS = "EVENT_WEIGHTS"
INPUT_AGES = "AGES_SECONDS"
OUTPUT_VECTOR = "USER_VECTOR"
DEFAULT_HALF_LIFE_S = 604800.0  # one week
ONNX_FILE = "model.onnx"
MANIFEST_FILE = Path("assets") / "export.json"
REFERENCE_FILE = Path("assets") / "reference_items.npy"
# Item familiarity is computed once per distinct item vector and kept (bounded).
FAMILIARITY_CACHE_SIZE = 200_000
# Tensor names of the exported graph (models/export_user.py).
GRAPH_INPUTS = ("vectors", "weights", "gaps_s", "lengths")


def _parameter(args: dict[str, Any], name: str, default: str) -> str:
    parameters = json.loads(args["model_config"]).get("parameters", {})
    return str(parameters.get(name, {}).get("string_value", default))


def _onnx_session(path: Path, args: dict[str, Any]) -> ort.InferenceSession:
    """CUDA when this onnxruntime build and machine have it, CPU otherwise."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(_parameter(args, "intra_op_threads", "1"))
    options.inter_op_num_threads = 1
    # Spinning idle threads steal the cores the other models' instances need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        device = {"device_id": int(args.get("model_instance_device_id", "0"))}
        providers.insert(0, ("CUDAExecutionProvider", device))
    return ort.InferenceSession(str(path), options, providers=providers)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.half_life_s = float(_parameter(args, "half_life_seconds", str(DEFAULT_HALF_LIFE_S)))
        if not self.half_life_s > 0:
            raise pb_utils.TritonModelException(
                f"half_life_seconds must be > 0, got {self.half_life_s}"
            )
        self.content_weight = float(_parameter(args, "content_weight", "0"))
        self.familiar_at = float(_parameter(args, "familiar_similarity", "0.9"))
        self.unfamiliar_at = float(_parameter(args, "unfamiliar_similarity", "0.6"))
        if not self.unfamiliar_at < self.familiar_at:
            raise pb_utils.TritonModelException(
                "unfamiliar_similarity must be below familiar_similarity"
            )
        self.familiarity_cache: dict[bytes, float] = {}
        self.encoder = _parameter(args, "encoder", "sequence")
        self.session: ort.InferenceSession | None = None
        if self.encoder == "mean":
            return
        if self.encoder != "sequence":
            raise pb_utils.TritonModelException(
                f"encoder must be 'sequence' or 'mean', got {self.encoder!r}"
            )
        version_dir = Path(args["model_repository"]) / args["model_version"]
        if not (version_dir / ONNX_FILE).is_file():
            raise pb_utils.TritonModelException(
                f"{version_dir / ONNX_FILE} is missing: build it with `python -m models.export` "
                "(or set the config parameter encoder to 'mean')"
            )
        self.max_len = int(json.loads((version_dir / MANIFEST_FILE).read_text())["max_len"])
        self.reference = np.load(version_dir / REFERENCE_FILE).astype(np.float32)
        self.session = _onnx_session(version_dir / ONNX_FILE, args)

    def familiarity(self, vectors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[B, T, D], [B] -> [B] mean cosine of each user's items to their nearest training
        item (1 for an empty row); each distinct vector is compared with the reference once."""
        cache = self.familiarity_cache
        real = np.arange(vectors.shape[1])[None, :] < lengths[:, None]  # [B, T]
        flat = vectors[real]  # row-major: every user's items in turn
        keys = vector_keys(flat)
        new = {key: row for row, key in enumerate(keys) if key not in cache}
        if new:
            if len(cache) + len(new) > FAMILIARITY_CACHE_SIZE:
                cache.clear()
            scores = max_similarity(flat[list(new.values())], self.reference)
            cache.update(zip(new, scores.tolist(), strict=True))
        owners = np.repeat(np.arange(len(lengths)), lengths)
        sums = np.bincount(owners, [cache[key] for key in keys], minlength=len(lengths))
        return np.where(lengths > 0, sums / np.maximum(lengths, 1), 1.0).astype(np.float32)

    def encode(self, items: np.ndarray, weights: np.ndarray, ages: np.ndarray) -> np.ndarray:
        mean = decayed_mean(items, weights, ages, self.half_life_s)
        if self.session is None:
            return mean
        feeds = dict(
            zip(GRAPH_INPUTS, sequence_inputs(items, weights, ages, self.max_len), strict=True)
        )
        sequence = self.session.run(None, feeds)[0].astype(np.float32)
        weights_per_row = anchor_weights(
            self.familiarity(feeds["vectors"], feeds["lengths"]),
            self.content_weight,
            self.familiar_at,
            self.unfamiliar_at,
        )
        return anchored(sequence, mean, weights_per_row)

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
            vectors = self.encode(items, weights, ages)
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_VECTOR, vectors)])
            )
        return responses
