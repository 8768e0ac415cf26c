"""Synthetic catalogues for the store benchmarks: clustered unit vectors with a category
each, and the searches the events path makes over them (k = 50, seen items excluded, half
with a category filter)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.store import SearchRequest

DIM = 256
CLUSTERS = 100
CATEGORIES = 20
QUERIES = 200
K = 50
SEEN = 20
REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ITEMS = REPO_ROOT / "triton_repo/user_encoder/1/assets/reference_items.npy"


@dataclass(frozen=True)
class VectorShape:
    """How synthetic vectors are drawn: around `centres`, with noise of covariance
    `scale.T @ scale` (rows: directions times their standard deviation)."""

    centres: np.ndarray  # [clusters, DIM]
    scale: np.ndarray | None  # [DIM, DIM]; None: the identity
    spread: float  # item noise; queries get 4/3 of it

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        noise = rng.standard_normal((n, DIM)).astype(np.float32)
        return noise if self.scale is None else noise @ self.scale


def isotropic_shape(seed: int = 0) -> VectorShape:
    """100 random centres, noise alike in every direction: the hardest case for a graph
    index (a cluster's items have no lower-dimensional structure)."""
    centres = np.random.default_rng(seed).standard_normal((CLUSTERS, DIM)).astype(np.float32)
    return VectorShape(centres, None, 0.6)


def fusion_shape() -> VectorShape:
    """Shaped like the trained fusion's item vectors (`make install` exports them): its
    items are the centres and the noise has their covariance, so the spectrum is theirs
    (half the variance in 6 directions, 90% in 84) rather than flat."""
    if not REFERENCE_ITEMS.exists():
        raise SystemExit(f"{REFERENCE_ITEMS} is missing: run `make install` first")
    items = np.load(REFERENCE_ITEMS).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    centred = items - items.mean(axis=0)
    _, sigma, directions = np.linalg.svd(centred, full_matrices=False)
    scale = (sigma[:, None] / np.sqrt(len(items))) * directions
    return VectorShape(items, scale.astype(np.float32), 0.6)


def clustered(n: int, shape: VectorShape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (unit vectors [n, DIM], cluster per row)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(shape.centres), n)
    vectors = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded scratch memory at a million rows
        rows = labels[start : start + 100_000]
        vectors[start : start + len(rows)] = shape.centres[rows] + shape.spread * shape.noise(
            rng, len(rows)
        )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, labels


def queries(size: int, shape: VectorShape, seed: int = 1) -> list[SearchRequest]:
    rng = np.random.default_rng(seed)
    requests = []
    for n in range(QUERIES):
        cluster = int(rng.integers(0, len(shape.centres)))
        noise = shape.noise(rng, 1)[0]
        vector = shape.centres[cluster] + shape.spread * 4 / 3 * noise
        seen = [str(i) for i in rng.integers(0, size, SEEN)]
        categories = [f"c{cluster % CATEGORIES}"] if n % 2 else None
        unit = (vector / np.linalg.norm(vector)).astype(np.float32)
        requests.append(SearchRequest(unit, K, exclude_item_ids=seen, categories=categories))
    return requests
