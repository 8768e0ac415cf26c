"""Tokenisation for the MiniLM text encoder.

Imported by this model's `model.py` inside Triton and by `models.reference` in-process, so
both paths feed the network identical token ids. Keep it free of project imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

MAX_TOKENS = 128
EMBEDDING_DIM = 384
RUN_ROWS = 32
# Relative to the model version directory; written by `python -m models.export`.
TOKENIZER_FILE = Path("assets") / "tokenizer.json"


def load_tokenizer(path: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    # Pad to the longest row of the batch instead of the file's fixed 128: padded positions
    # are masked out of attention and pooling, so only the compute changes.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (input_ids, attention_mask), both int64 [B, T]."""
    encodings = tokenizer.encode_batch(list(texts))
    input_ids = np.asarray([encoding.ids for encoding in encodings], dtype=np.int64)
    attention_mask = np.asarray([encoding.attention_mask for encoding in encodings], dtype=np.int64)
    return input_ids, attention_mask


def embed(
    run: Callable[[dict[str, np.ndarray]], np.ndarray], tokenizer: Tokenizer, texts: Sequence[str]
) -> np.ndarray:
    """Texts -> [n, EMBEDDING_DIM], `run` being the ONNX graph (feeds -> text_embedding).

    Runs of similar-length rows, each cut to its own longest row: one long text no longer
    pads every short one in the batch to MAX_TOKENS."""
    input_ids, attention_mask = tokenize(tokenizer, texts)
    lengths = attention_mask.sum(axis=1)
    embeddings = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), RUN_ROWS):
        rows = order[start : start + RUN_ROWS]
        width = int(lengths[rows].max())
        feeds = {
            "input_ids": input_ids[rows, :width],
            "attention_mask": attention_mask[rows, :width],
        }
        embeddings[rows] = run(feeds)
    return embeddings
