"""user_encoder on the real tritonserver, against a numpy recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from worker.triton import EMBEDDING_DIM, USER_MODEL, TritonClient

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "triton_repo" / USER_MODEL / "config.pbtxt"
HALF_LIFE_S = float(
    text_format.Parse(CONFIG.read_text(), pb.ModelConfig())
    .parameters["half_life_seconds"]
    .string_value
)


def unit_vectors(*shape: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((*shape, EMBEDDING_DIM))
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def expected_user_vectors(items: np.ndarray, weights: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """The decayed, signed-weighted mean, normalised (float64 for a clean reference)."""
    decay = 0.5 ** (ages.astype(np.float64) / HALF_LIFE_S)
    mean = (items * (weights * decay)[..., None]).sum(axis=1) / np.maximum(
        np.abs(weights).sum(axis=1, keepdims=True), 1e-12
    )
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return np.where(norms > 0, mean / np.where(norms > 0, norms, 1.0), 0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


async def test_matches_the_numpy_recomputation(triton_client: TritonClient) -> None:
    rng = np.random.default_rng(1)
    items = unit_vectors(5, 8)
    weights = rng.choice([0.3, 1.0, 2.0, 3.0, -0.5, -2.0], size=(5, 8)).astype(np.float32)
    weights[:, 6:] = 0.0  # padding
    weights[0, 0] = -2.0  # an old dislike
    ages = rng.uniform(0, 4 * HALF_LIFE_S, size=(5, 8)).astype(np.float32)
    got = await triton_client.encode_users(items, weights, ages)
    assert got.shape == (5, EMBEDDING_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected_user_vectors(items, weights, ages), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


async def test_a_dislike_moves_the_vector_away(triton_client: TritonClient) -> None:
    liked_a, liked_b, disliked = unit_vectors(3, seed=2)
    history = np.stack([liked_a, liked_b, disliked])[None]
    ages = np.zeros((1, 3), dtype=np.float32)
    without = await triton_client.encode_users(
        history, np.array([[2.0, 1.0, 0.0]], np.float32), ages
    )
    with_dislike = await triton_client.encode_users(
        history, np.array([[2.0, 1.0, -2.0]], np.float32), ages
    )
    assert cosine(with_dislike[0], disliked) < cosine(without[0], disliked)
    assert cosine(with_dislike[0], disliked) < 0


async def test_recent_events_count_more(triton_client: TritonClient) -> None:
    old, new = unit_vectors(2, seed=3)
    user = await triton_client.encode_users(
        np.stack([old, new])[None],
        np.ones((1, 2), np.float32),
        np.array([[2 * HALF_LIFE_S, 0.0]], np.float32),
    )
    assert cosine(user[0], new) > cosine(user[0], old)
    # Two half-lives: the old event has a quarter of the new one's weight.
    np.testing.assert_allclose(
        user[0],
        expected_user_vectors(
            np.stack([old, new])[None], np.ones((1, 2)), np.array([[2 * HALF_LIFE_S, 0.0]])
        )[0],
        atol=2e-5,
    )


async def test_rows_without_usable_history_are_zero(triton_client: TritonClient) -> None:
    item = unit_vectors(1, seed=4)[0]
    items = np.stack([np.zeros((2, EMBEDDING_DIM)), np.stack([item, item])]).astype(np.float32)
    weights = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)  # padding only; a like undone
    users = await triton_client.encode_users(items, weights, np.zeros((2, 2), np.float32))
    assert np.array_equal(users, np.zeros((2, EMBEDDING_DIM), np.float32))


async def test_batches_beyond_max_batch_size_are_split(triton_client: TritonClient) -> None:
    rows = 300  # above the configured max_batch_size of 128
    items = unit_vectors(rows, 4, seed=5)
    weights = np.random.default_rng(5).uniform(0.1, 3.0, size=(rows, 4)).astype(np.float32)
    ages = np.random.default_rng(6).uniform(0, HALF_LIFE_S, size=(rows, 4)).astype(np.float32)
    got = await triton_client.encode_users(items, weights, ages)
    np.testing.assert_allclose(got, expected_user_vectors(items, weights, ages), atol=2e-5)
