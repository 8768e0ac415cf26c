"""Many vectors (store items', users') as the rows of one array, and ragged rows laid end
to end: the ranking gathers a batch's candidates this way several times per micro-batch
(pure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_F32 = np.dtype(np.float32)


def stacked(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """[n, dim] float32, a read-only copy of the vectors in order (all of one dimension).

    Their bytes joined and read back: for 1,000 rows of 256 floats, 0.19 ms against 0.71
    for np.array (which inspects every element as a possible sequence) and 1.47 for
    np.stack (measured). The store's vectors are contiguous float32 rows; anything else
    (another dtype, a strided view) is caught by the byte count or refused by the join,
    and goes the general way."""
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    dim = len(vectors[0])
    try:
        joined = b"".join(vectors)  # type: ignore[arg-type]  # ndarrays are buffers
    except (TypeError, BufferError):
        joined = b""
    if len(joined) == len(vectors) * dim * _F32.itemsize and vectors[0].dtype == _F32:
        return np.frombuffer(joined, dtype=np.float32).reshape(len(vectors), dim)
    return np.array(vectors, dtype=np.float32)


def padded(rows: Sequence[Sequence[np.ndarray | None]], width: int, dim: int) -> np.ndarray:
    """[len(rows), width, dim] float32 (read-only): each row's vectors in order, zeros for
    None and after its last. Stacked with the padding in place, already in shape, rather
    than scattered into a zeroed array: 0.85 against 1.33 ms for 34 rows of 30 (measured)."""
    zero = np.zeros(dim, dtype=np.float32)
    flat: list[np.ndarray] = []
    for vectors in rows:
        flat += [zero if v is None else v for v in vectors]
        flat += [zero] * (width - len(vectors))
    if not flat:
        return np.zeros((len(rows), width, dim), dtype=np.float32)
    return stacked(flat).reshape(len(rows), width, dim)


def segment_cells(lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every element of ragged rows of these lengths, laid end to end."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, cols
