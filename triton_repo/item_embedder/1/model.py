"""Triton Python model `item_embedder`: the entry point for item micro-batches (BLS).

Inputs TEXT, IMAGE, AUDIO (TYPE_STRING [1] each: UTF-8 text, encoded image bytes, WAV
bytes; an empty string means "this item has no such modality"). For every modality the
rows that have it go to that modality's encoder model in one sub-request, the encoders
running concurrently; the embeddings (an image gives two: its features and its text-space
embedding) and a presence mask then go to `fusion`, whose latest version Triton serves.

Outputs ITEM_VECTOR (FP32 [256], L2-normalised) and ERROR (TYPE_STRING [1]): empty when
the row is fine, otherwise why it has no vector ("no content", an image or audio decode
error); such a row's vector is all zeros and the other rows are unaffected. A failing
sub-model (not a bad row) fails every request of the batch.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUT_VECTOR = "ITEM_VECTOR"
OUTPUT_ERROR = "ERROR"
FUSION_MODEL = "fusion"
FUSION_MASK = "MODALITY_MASK"
FUSED_DIM = 256


@dataclass(frozen=True)
class Modality:
    name: str  # used in error messages
    input: str  # this model's input, and the encoder's input of the same name
    encoder: str
    # The encoder's outputs passed on, each also fusion's input of the same name, with dims.
    embeddings: tuple[tuple[str, int], ...]
    reports_errors: bool  # whether the encoder has a per-row ERROR output


# Order matters: it is the column order of fusion's MODALITY_MASK.
MODALITIES = (
    Modality("text", "TEXT", "text_encoder", (("TEXT_EMBEDDING", 384),), False),
    Modality(
        "image",
        "IMAGE",
        "image_encoder",
        (("IMAGE_EMBEDDING", 1280), ("IMAGE_TEXT_EMBEDDING", 384)),
        True,
    ),
    Modality("audio", "AUDIO", "audio_encoder", (("AUDIO_EMBEDDING", 512),), True),
)


class SubModelError(RuntimeError):
    """A model this one calls returned an error for a whole sub-request."""


async def _infer(model: str, inputs: list[Any], outputs: list[str]) -> list[np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=outputs, inputs=inputs
    )
    response = await request.async_exec()
    if response.has_error():
        raise SubModelError(f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


async def _encode(modality: Modality, values: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Encode the non-empty `values` -> ([n, dim] per embedding, per-row error text)."""
    names = [name for name, _ in modality.embeddings]
    outputs = names + (["ERROR"] if modality.reports_errors else [])
    results = await _infer(
        modality.encoder, [pb_utils.Tensor(modality.input, values.reshape(-1, 1))], outputs
    )
    if not modality.reports_errors:
        return results, [""] * len(values)
    errors = [error.decode("utf-8", errors="replace") for error in results[-1].reshape(-1)]
    return results[: len(names)], errors


class TritonPythonModel:
    async def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: their rows go through the encoders
        # together, so each encoder sees one sub-request per execution.
        counts = [
            pb_utils.get_input_tensor_by_name(request, MODALITIES[0].input).as_numpy().shape[0]
            for request in requests
        ]
        try:
            vectors, errors = await self._embed(requests)
        except SubModelError as exc:
            error = pb_utils.TritonError(f"item_embedder: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        offsets = np.cumsum([0, *counts])
        for start, end in itertools.pairwise(offsets):
            outputs = [
                pb_utils.Tensor(OUTPUT_VECTOR, vectors[start:end]),
                pb_utils.Tensor(OUTPUT_ERROR, errors[start:end].reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    async def _embed(self, requests: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        columns = [
            np.concatenate(
                [
                    pb_utils.get_input_tensor_by_name(request, modality.input)
                    .as_numpy()
                    .reshape(-1)
                    for request in requests
                ]
            )
            for modality in MODALITIES
        ]
        rows = len(columns[0])
        mask = np.array([[len(value) > 0 for value in column] for column in columns]).T
        present = [np.flatnonzero(mask[:, m]) for m in range(len(MODALITIES))]
        jobs = [
            _encode(modality, column[rows_with])
            for modality, column, rows_with in zip(MODALITIES, columns, present, strict=True)
            if rows_with.size
        ]
        encoded = iter(await asyncio.gather(*jobs))

        errors = ["" if mask[row].any() else "no content" for row in range(rows)]
        features: dict[str, np.ndarray] = {}
        for modality, rows_with in zip(MODALITIES, present, strict=True):
            outputs, row_errors = next(encoded) if rows_with.size else ([], [])
            for slot, (name, dim) in enumerate(modality.embeddings):
                features[name] = np.zeros((rows, dim), dtype=np.float32)
                if outputs:
                    features[name][rows_with] = outputs[slot]
            for row, error in zip(rows_with, row_errors, strict=True):
                if error and not errors[row]:
                    errors[row] = f"{modality.name}: {error}"

        vectors = np.zeros((rows, FUSED_DIM), dtype=np.float32)
        ok = np.array([not error for error in errors], dtype=bool)
        if ok.any():
            inputs = [pb_utils.Tensor(name, feature[ok]) for name, feature in features.items()]
            inputs.append(pb_utils.Tensor(FUSION_MASK, mask[ok].astype(np.float32)))
            fused = await _infer(FUSION_MODEL, inputs, [OUTPUT_VECTOR])
            vectors[ok] = fused[0]
        return vectors, np.array([error.encode("utf-8") for error in errors], dtype=np.object_)
